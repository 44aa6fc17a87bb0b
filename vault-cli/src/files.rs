//! The file commands: ls, du, quota, put, get, rm, mv, mkdir, versions, restore, trash,
//! import-legacy. Each opens the saved session, does its work through
//! `vault_client::files`, and prints text (or JSON with `--json`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::json;
use vault_client::files::download::Downloaded;
use vault_client::files::plan::{plan_get, plan_put};
use vault_client::files::progress::RateLimit;
use vault_client::files::remote::{Detail, Listed};
use vault_client::files::transfer::{
    GetReport, MAX_IN_FLIGHT, NotFetched, Options, get_all, put_all,
};
use vault_client::files::upload::{Storing, Uploaded};
use vault_client::files::{Files, RemotePath, legacy, pipe};
use vault_client::state::StateDir;
use vault_core::format::{LegacyMode, parse_des_key};
use vault_core::proto::NsRef;
use vault_core::units::{format_size, parse_size};

use crate::args::{Command, LegacyModeArg, TransferArgs, TrashCommand};
use crate::escape::{shown, shown_path};
use crate::listing::{self, Totals, plural};
use crate::out::outln;
use crate::progress;

fn remote(text: &str) -> anyhow::Result<RemotePath> {
    Ok(RemotePath::parse(text)?)
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    let state = StateDir::from_env()?;
    // Paths are checked before connecting, so a typo fails fast and offline.
    check_paths(&command)?;
    let files = Files::open(&state).await?;
    let files = Arc::new(files);
    let result = dispatch(&files, &state, command).await;
    crate::warnings::defer(files.take_warnings());
    files.close();
    result
}

/// The space a command names: `@GROUP` (or `/`, the personal space); none is the personal
/// space.
fn space(text: Option<&str>) -> anyhow::Result<NsRef> {
    let Some(text) = text else {
        return Ok(NsRef::Personal);
    };
    let path = remote(text)?;
    if !path.is_root() {
        bail!("{text:?} is a path; name a space: @GROUP, or / for your personal space");
    }
    Ok(path.ns)
}

/// How a space is named in messages.
fn space_name(ns: &NsRef) -> String {
    match ns {
        NsRef::Personal => "your personal space".into(),
        NsRef::Group { name } => format!("@{name}"),
    }
}

/// Parses every remote path the command names.
fn check_paths(command: &Command) -> anyhow::Result<()> {
    let texts: Vec<&str> = match command {
        Command::Ls { path, .. } | Command::Du { path, .. } => {
            path.iter().map(String::as_str).collect()
        }
        Command::Put { paths, .. } => paths.last().map(String::as_str).into_iter().collect(),
        Command::Get { paths, .. } => paths[..paths.len().saturating_sub(1)]
            .iter()
            .map(String::as_str)
            .collect(),
        Command::Rm { path, .. }
        | Command::Cat { path, .. }
        | Command::Mkdir { path }
        | Command::Versions { path, .. }
        | Command::Restore { path, .. }
        | Command::Trash {
            command: TrashCommand::Restore {
                path: Some(path), ..
            },
        } => vec![path.as_str()],
        Command::Mv { src, dst } => vec![src.as_str(), dst.as_str()],
        Command::ImportLegacy { remote, .. } => vec![remote.as_str()],
        Command::Quota { space: s, .. }
        | Command::Trash {
            command: TrashCommand::Ls { space: s, .. } | TrashCommand::Empty { space: s, .. },
        } => {
            space(s.as_deref())?;
            Vec::new()
        }
        _ => Vec::new(),
    };
    for text in texts {
        remote(text)?;
    }
    Ok(())
}

async fn dispatch(files: &Arc<Files>, state: &StateDir, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Ls {
            path,
            long,
            recursive,
            json,
        } => {
            let path = remote(path.as_deref().unwrap_or("/"))?;
            // Sizes, times and versions only where they are shown.
            let detail = if long || json {
                Detail::Full
            } else {
                Detail::Names
            };
            let (entries, depth) = match files.list_or_file(&path, recursive, detail).await? {
                Listed::Dir(entries) => (entries, path.segments.len()),
                Listed::File(entry) => (vec![*entry], path.segments.len().saturating_sub(1)),
            };
            if json {
                let list: Vec<_> = entries.iter().map(listing::entry_json).collect();
                outln!("{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                listing::print_ls(&entries, depth, long)?;
            }
            // The process ends with this command: freeing a long listing entry by entry
            // (several allocations each) is work the exit does at once.
            std::mem::forget(entries);
        }
        Command::Du { path, json } => {
            let path = remote(path.as_deref().unwrap_or("/"))?;
            let entry = files.stat_existing(&path).await?;
            let totals = if entry.is_dir() {
                Totals::of(&files.list(&path, true).await?)
            } else {
                Totals::of(&[entry])
            };
            listing::print_du(&path.to_string(), &totals, json)?;
        }
        Command::Quota { space: s, json } => {
            let usage = files.usage(&space(s.as_deref())?).await?;
            listing::print_quota(&usage, json)?;
        }
        Command::Put {
            paths,
            transfer,
            whole_file,
        } => {
            let storing = if whole_file {
                Storing::Whole
            } else {
                Storing::Chunked
            };
            if paths.first().is_some_and(|p| p == "-") {
                put_stdin(files, paths, &transfer, storing).await?
            } else {
                put(files, paths, (&transfer, storing)).await?
            }
        }
        Command::Get { paths, transfer } if paths.last().is_some_and(|p| p == "-") => {
            get_stdout(files, paths, &transfer).await?
        }
        Command::Get { paths, transfer } => get(files, paths, &transfer).await?,
        Command::Cat { path, bwlimit } => {
            let transfer = TransferArgs {
                bwlimit,
                ..TransferArgs::default()
            };
            get_stdout(files, vec![path, "-".into()], &transfer).await?
        }
        Command::Rm { path, recursive } => {
            let path = remote(&path)?;
            if path.is_root() {
                bail!("refusing to remove the root; remove what is in it instead");
            }
            let entry = files.stat_existing(&path).await?;
            if entry.is_dir() && !recursive {
                bail!("{path} is a directory: use rm -r to remove it and everything in it");
            }
            let n = files.remove(&path, recursive).await?;
            let what = if n == 1 {
                String::new()
            } else {
                format!(" ({n} entries)")
            };
            let path = shown(&path.to_string()).into_owned();
            outln!("Moved {path} to the trash{what}; `vault trash restore {path}` undoes it.")?;
        }
        Command::Mv { src, dst } => {
            let src = remote(&src)?;
            let dst = remote(&dst)?;
            if src.is_root() {
                bail!("the root can't be moved");
            }
            let entry = files.stat_existing(&src).await?;
            let dest = match files.stat(&dst).await? {
                Some(d) if d.is_dir() => dst.join(src.name().unwrap_or_default())?,
                Some(_) if dst.dir_hint => bail!("{dst} is a file, not a directory"),
                Some(_) => bail!("{dst} already exists; remove it first or choose another name"),
                None if dst.dir_hint => bail!("{dst}: no such directory"),
                None => dst,
            };
            if files.stat(&dest).await?.is_some() {
                bail!("{dest} already exists; remove it first or choose another name");
            }
            files.rename(&entry, &dest).await?;
            outln!(
                "Moved {} to {}.",
                shown(&src.to_string()),
                shown(&dest.to_string())
            )?;
        }
        Command::Mkdir { path } => {
            let path = remote(&path)?;
            if let Some(e) = files.stat(&path).await?
                && !e.is_dir()
            {
                bail!("{path} exists and is a file");
            }
            files.mkdir(&path).await?;
            outln!("Created {}.", shown(&path.to_string()))?;
        }
        Command::Versions { path, json } => {
            let path = remote(&path)?;
            let versions = files.versions(&path).await?;
            listing::print_versions(&path.to_string(), &versions, json)?;
        }
        Command::Restore { path, version } => {
            let path = remote(&path)?;
            let versions = files.versions(&path).await?;
            let target = match version {
                Some(n) => {
                    if !versions.versions.iter().any(|(v, _)| v.version == n) {
                        let kept: Vec<String> = versions
                            .versions
                            .iter()
                            .map(|(v, _)| v.version.to_string())
                            .collect();
                        bail!(
                            "{path} has no version {n}; kept versions: {} (see `vault versions {path}`)",
                            kept.join(", ")
                        );
                    }
                    n
                }
                None => versions
                    .versions
                    .iter()
                    .map(|(v, _)| v.version)
                    .filter(|&v| v < versions.current)
                    .max()
                    .with_context(|| {
                        format!(
                            "{path} has no version older than the current one (v{})",
                            versions.current
                        )
                    })?,
            };
            files.restore(&path, target).await?;
            outln!("{} is now at version {target}.", shown(&path.to_string()))?;
        }
        Command::Trash { command } => trash(files, command).await?,
        Command::ImportLegacy {
            des_key,
            mode,
            local,
            remote: target,
            json,
        } => {
            let key = zeroize::Zeroizing::new(parse_des_key(&des_key)?);
            let mode = match mode {
                LegacyModeArg::Cbc => LegacyMode::Cbc,
                LegacyModeArg::Ecb => LegacyMode::Ecb,
            };
            let target = remote(&target)?;
            let source = PathBuf::from(&local);
            let dest = match files.stat(&target).await? {
                Some(e) if e.is_dir() => target.join(
                    source
                        .file_name()
                        .and_then(|n| n.to_str())
                        .context("the local file has no usable name; name the remote file")?,
                )?,
                Some(_) if target.dir_hint => bail!("{target} is a file, not a directory"),
                _ if target.dir_hint => target.join(
                    source
                        .file_name()
                        .and_then(|n| n.to_str())
                        .context("the local file has no usable name; name the remote file")?,
                )?,
                _ => target,
            };
            let plain = legacy::decrypt_to_temp(state, &source, &key, mode)?;
            let size = plain.as_file().metadata()?.len();
            let plan = vault_client::files::plan::PutPlan {
                files: vec![vault_client::files::plan::PutItem {
                    local: plain.path().to_path_buf(),
                    remote: dest.clone(),
                    size,
                    current: None,
                }],
                ..Default::default()
            };
            let done = put_all(Arc::clone(files), plan, options(None, Storing::Chunked)?).await?;
            drop(plain);
            if json {
                outln!("{}", serde_json::to_string_pretty(&put_json(&done))?)?;
            } else {
                outln!(
                    "Imported {} as {} ({}).",
                    shown(&local),
                    shown(&dest.to_string()),
                    format_size(size)
                )?;
            }
        }
        other => bail!("not a file command: {other:?}"),
    }
    Ok(())
}

/// The `--bwlimit` of a command, if it has one.
fn rate_limit(bwlimit: Option<&str>) -> anyhow::Result<Option<Arc<RateLimit>>> {
    Ok(bwlimit
        .map(|t| parse_size(t).map_err(anyhow::Error::msg))
        .transpose()?
        .map(|n| Arc::new(RateLimit::new(n))))
}

fn options(bwlimit: Option<&str>, storing: Storing) -> anyhow::Result<Options> {
    Ok(Options {
        progress: progress::for_transfer(),
        limit: rate_limit(bwlimit)?,
        in_flight: MAX_IN_FLIGHT,
        storing,
    })
}

fn put_json(done: &[Uploaded]) -> serde_json::Value {
    let items: Vec<_> = done
        .iter()
        .map(|u| {
            json!({
                "remote": u.remote.to_string(), "bytes": u.bytes,
                "version": u.version, "resumed_at": u.resumed_at,
                "reused": u.reused, "unchanged": u.unchanged,
            })
        })
        .collect();
    let unchanged = done.iter().filter(|u| u.unchanged).count();
    json!({
        "files": done.len(),
        "bytes": done.iter().map(|u| u.bytes).sum::<u64>(),
        "uploaded": done.len() - unchanged,
        "unchanged": unchanged,
        "reused_bytes": done.iter().map(|u| u.reused).sum::<u64>(),
        "items": items,
    })
}

/// `; N already stored, not sent` (or fetched) when chunks of format 2 were reused.
fn reused_note(reused: u64, what: &str) -> String {
    if reused == 0 {
        String::new()
    } else {
        format!("; {} {what}", format_size(reused))
    }
}

/// `; N unchanged, skipped` when some were, for the summary line of a transfer.
fn unchanged_note(unchanged: usize) -> String {
    if unchanged == 0 {
        String::new()
    } else {
        format!("; {unchanged} unchanged, skipped")
    }
}

async fn put(
    files: &Arc<Files>,
    mut paths: Vec<String>,
    (args, storing): (&TransferArgs, Storing),
) -> anyhow::Result<()> {
    let target = remote(&paths.pop().context("put needs LOCAL… REMOTE")?)?;
    let sources: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    let one_file = matches!(sources.as_slice(), [one] if one.is_file());
    let plan = plan_put(files, &sources, &target, args.recursive).await?;
    for skipped in &plan.skipped {
        eprintln!(
            "skipped {} (not a regular file or directory)",
            shown_path(skipped)
        );
    }
    let dirs = plan.dirs.len();
    let options = options(args.bwlimit.as_deref(), storing)?;
    let done = put_all(Arc::clone(files), plan, options).await?;
    if args.json {
        let mut value = put_json(&done);
        value["dirs"] = json!(dirs);
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    let (unchanged, sent): (Vec<&Uploaded>, Vec<&Uploaded>) =
        done.iter().partition(|u| u.unchanged);
    let resumed = sent.iter().filter(|u| u.resumed_at > 0).count();
    let mut note = if resumed > 0 {
        format!(" ({resumed} resumed)")
    } else {
        String::new()
    };
    note.push_str(&reused_note(
        sent.iter().map(|u| u.reused).sum(),
        "already stored, not sent",
    ));
    match done.as_slice() {
        [one] if one_file && one.unchanged => outln!(
            "{} is unchanged (version {}), skipped.",
            shown(&one.remote.to_string()),
            one.version
        )?,
        [one] if one_file => outln!(
            "Uploaded {} as {} (version {}){note}.",
            format_size(one.bytes),
            shown(&one.remote.to_string()),
            one.version
        )?,
        _ if sent.is_empty() && !unchanged.is_empty() => outln!(
            "Nothing to upload to {}: {} unchanged, skipped.",
            shown(&target.to_string()),
            plural(unchanged.len() as u64, "file", "files"),
        )?,
        _ => outln!(
            "Uploaded {}, {}{note}, to {}{}.",
            plural(sent.len() as u64, "file", "files"),
            format_size(sent.iter().map(|u| u.bytes).sum()),
            shown(&target.to_string()),
            unchanged_note(unchanged.len())
        )?,
    }
    Ok(())
}

/// `put - REMOTE`: standard input, to its end, as the file REMOTE.
async fn put_stdin(
    files: &Arc<Files>,
    paths: Vec<String>,
    args: &TransferArgs,
    storing: Storing,
) -> anyhow::Result<()> {
    let [_, target] = paths.as_slice() else {
        bail!("- (standard input) is the only source of put when it is one: put - REMOTE");
    };
    if args.recursive {
        bail!("-r does not go with - (standard input): put - REMOTE stores one file");
    }
    if storing == Storing::Whole {
        bail!(
            "--whole-file does not go with - (standard input): a file of unknown length is \
             stored as chunks"
        );
    }
    if target.ends_with('/') {
        bail!("put - needs the remote file's path, such as /backups/db.sql: {target} is a folder");
    }
    let target = remote(target)?;
    if target.is_root() {
        bail!("put - needs the remote file's path, such as /backups/db.sql: {target} is a folder");
    }
    if let Some(entry) = files.stat(&target).await?
        && entry.is_dir()
    {
        bail!("{target} is a folder: put - needs the remote file's path, such as {target}/name");
    }
    let limit = rate_limit(args.bwlimit.as_deref())?;
    let progress = progress::for_pipe_input();
    let stdin = std::io::stdin();
    let done = pipe::upload_from(files, stdin, &target, progress.as_ref(), limit.as_deref()).await;
    drop(progress);
    let done = done?;
    if args.json {
        let value = json!({
            "remote": done.remote.to_string(), "bytes": done.bytes,
            "version": done.version, "reused": done.reused,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    outln!(
        "Uploaded {} from standard input as {} (version {}){}.",
        format_size(done.bytes),
        shown(&done.remote.to_string()),
        done.version,
        reused_note(done.reused, "already stored, not sent")
    )?;
    Ok(())
}

/// `get REMOTE -` and `cat REMOTE`: the file to standard output.
async fn get_stdout(
    files: &Arc<Files>,
    paths: Vec<String>,
    args: &TransferArgs,
) -> anyhow::Result<()> {
    let [source, _] = paths.as_slice() else {
        bail!("get REMOTE - writes one file to standard output: name one remote file");
    };
    if args.recursive {
        bail!("-r does not go with - (standard output): get REMOTE - writes one file");
    }
    if args.json {
        bail!("--json does not go with - (standard output): the file is what is printed");
    }
    let source = remote(source)?;
    if let Some(entry) = files.stat(&source).await?
        && entry.is_dir()
    {
        bail!("{source} is a folder: get REMOTE - writes one file to standard output");
    }
    let limit = rate_limit(args.bwlimit.as_deref())?;
    // As curl does: a bar on stderr only when the file is not shown on the same terminal.
    let progress: Arc<dyn vault_client::files::progress::Progress> =
        if std::io::stdout().is_terminal() {
            Arc::new(vault_client::files::progress::NoProgress)
        } else {
            progress::for_transfer()
        };
    let done = pipe::download_to(
        files,
        &source,
        std::io::stdout(),
        progress.as_ref(),
        limit.as_deref(),
    )
    .await;
    drop(progress);
    done?;
    Ok(())
}

/// A file of `get` that did not arrive, for `--json`.
fn not_fetched_json(file: &NotFetched) -> serde_json::Value {
    let mut value = json!({
        "remote": file.remote.to_string(),
        "local": file.local.display().to_string(),
    });
    if let Some(error) = &file.error {
        value["error"] = json!(failure_text(file, error));
        if let Some(code) = error.api_code() {
            value["code"] = json!(code);
        }
    }
    value
}

fn get_json(done: &[Downloaded]) -> serde_json::Value {
    let items: Vec<_> = done
        .iter()
        .map(|d| {
            json!({
                "local": d.local.display().to_string(), "bytes": d.bytes,
                "version": d.version, "resumed_at": d.resumed_at,
                "reused": d.reused, "unchanged": d.unchanged,
            })
        })
        .collect();
    let unchanged = done.iter().filter(|d| d.unchanged).count();
    json!({
        "files": done.len(),
        "bytes": done.iter().map(|d| d.bytes).sum::<u64>(),
        "downloaded": done.len() - unchanged,
        "unchanged": unchanged,
        "reused_bytes": done.iter().map(|d| d.reused).sum::<u64>(),
        "items": items,
    })
}

async fn get(
    files: &Arc<Files>,
    mut paths: Vec<String>,
    args: &TransferArgs,
) -> anyhow::Result<()> {
    let target_text = paths.pop().context("get needs REMOTE… LOCAL")?;
    let sources = paths
        .iter()
        .map(|p| remote(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let target = Path::new(&target_text);
    let plan = plan_get(
        files,
        &sources,
        target,
        target_text.ends_with('/'),
        args.recursive,
    )
    .await?;
    let single = plan.files.len() == 1 && !args.recursive;
    let options = options(args.bwlimit.as_deref(), Storing::Chunked)?;
    let mut report = get_all(Arc::clone(files), plan, options).await?;
    if single && let Some(failed) = report.failed.pop() {
        // One file asked for: its error is the command's.
        return Err(failed.error.map_or_else(
            || anyhow::anyhow!("{} was not downloaded", failed.remote),
            anyhow::Error::from,
        ));
    }
    let done = &report.done;
    if args.json {
        let mut value = get_json(done);
        value["failed"] = report.failed.iter().map(not_fetched_json).collect();
        value["skipped"] = report.skipped.iter().map(not_fetched_json).collect();
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    } else if !done.is_empty() || report.failed.is_empty() && report.skipped.is_empty() {
        say_what_get_did(done, args.recursive, target)?;
    }
    fetch_failures(&report)
}

/// Why a file of `get` failed, without the remote path the error may begin with (the
/// line that shows it names the file already).
fn failure_text(file: &NotFetched, error: &vault_client::files::FilesError) -> String {
    let text = error.to_string();
    let path = format!("{}: ", file.remote);
    text.strip_prefix(&path).map_or(text.clone(), str::to_owned)
}

/// Lists on stderr every file of `get` that failed (with why) and every one not tried,
/// then makes the command fail if there were any.
fn fetch_failures(report: &GetReport) -> anyhow::Result<()> {
    for file in &report.failed {
        if let Some(error) = &file.error {
            let why = failure_text(file, error);
            eprintln!("failed: {}: {why}", shown(&file.remote.to_string()));
        }
    }
    for file in &report.skipped {
        eprintln!("skipped: {} (not tried)", shown(&file.remote.to_string()));
    }
    if report.failed.is_empty() && report.skipped.is_empty() {
        return Ok(());
    }
    let stopped = if report.skipped.is_empty() {
        String::new()
    } else {
        format!(
            "; the error above stopped the transfer, {} not tried",
            plural(report.skipped.len() as u64, "file was", "files were")
        )
    };
    bail!(
        "{} of {} did not download{stopped}. Nothing was written for them; once the cause is \
         dealt with, the same command fetches only what is missing (what arrived is skipped \
         as unchanged)",
        plural(
            (report.failed.len() + report.skipped.len()) as u64,
            "file",
            "files"
        ),
        report.done.len() + report.failed.len() + report.skipped.len()
    )
}

/// The summary line of `get` for what arrived.
fn say_what_get_did(done: &[Downloaded], recursive: bool, target: &Path) -> anyhow::Result<()> {
    let (unchanged, fetched): (Vec<&Downloaded>, Vec<&Downloaded>) =
        done.iter().partition(|d| d.unchanged);
    let note = reused_note(
        fetched.iter().map(|d| d.reused).sum(),
        "already here, not fetched",
    );
    match done {
        [one] if !recursive && one.unchanged => outln!(
            "{} is unchanged (version {}), skipped.",
            shown_path(&one.local),
            one.version
        )?,
        [one] if !recursive => outln!(
            "Downloaded {} to {} (version {}){note}.",
            format_size(one.bytes),
            shown_path(&one.local),
            one.version
        )?,
        _ if fetched.is_empty() && !unchanged.is_empty() => outln!(
            "Nothing to download to {}: {} unchanged, skipped.",
            shown_path(target),
            plural(unchanged.len() as u64, "file", "files"),
        )?,
        _ => outln!(
            "Downloaded {}, {}{note}, to {}{}.",
            plural(fetched.len() as u64, "file", "files"),
            format_size(fetched.iter().map(|d| d.bytes).sum()),
            shown_path(target),
            unchanged_note(unchanged.len())
        )?,
    }
    Ok(())
}

async fn trash(files: &Arc<Files>, command: TrashCommand) -> anyhow::Result<()> {
    match command {
        TrashCommand::Ls { space: s, json } => {
            let items = files.trash(&space(s.as_deref())?).await?;
            listing::print_trash(&items, json)?;
        }
        TrashCommand::Restore { path, id } => {
            let path = remote(path.as_deref().unwrap_or("/"))?;
            let items = files.trash(&path.ns).await?;
            let item = match id {
                Some(id) => {
                    let item = items.iter().find(|t| t.item.trash_id == id).with_context(|| {
                        format!(
                            "no deletion with id {id} in the trash of {} (see `vault trash ls`)",
                            space_name(&path.ns)
                        )
                    })?;
                    if !path.is_root() && item.path.segments != path.segments {
                        bail!(
                            "deletion {id} is of {}, not {path}: check the id in `vault trash ls`",
                            shown(&item.path.to_string())
                        );
                    }
                    item
                }
                // Newest first: the latest deletion of that path comes back.
                None => items
                    .iter()
                    .find(|t| t.path.segments == path.segments)
                    .with_context(|| {
                        format!("{path} is not in the trash (see `vault trash ls`)")
                    })?,
            };
            files.trash_restore(&path.ns, item.item.trash_id).await?;
            let others = items
                .iter()
                .filter(|t| t.path.segments == item.path.segments)
                .count()
                - 1;
            let note = if id.is_none() && others > 0 {
                format!(
                    " (the newest of its {} deletions; `vault trash restore --id N` picks another)",
                    others + 1
                )
            } else {
                String::new()
            };
            outln!(
                "Restored {} from the trash{note}.",
                shown(&item.path.to_string())
            )?;
        }
        TrashCommand::Empty { space: s, yes } => {
            let ns = space(s.as_deref())?;
            if !yes {
                if !std::io::stdin().is_terminal() {
                    bail!("emptying the trash deletes its files for good: pass --yes to confirm");
                }
                eprint!(
                    "Delete everything in the trash of {} for good? [y/N] ",
                    space_name(&ns)
                );
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    outln!("Left the trash as it was.")?;
                    return Ok(());
                }
            }
            let (items, bytes) = files.trash_empty(&ns).await?;
            outln!(
                "Emptied the trash: {}, {} freed.",
                plural(items, "deletion", "deletions"),
                format_size(bytes)
            )?;
        }
    }
    Ok(())
}
