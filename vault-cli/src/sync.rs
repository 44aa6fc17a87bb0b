//! `vault sync`, `vault push` and `vault pull`: resolve the arguments, run
//! `vault_client::sync`, and print one line per change (or, with `--dry-run`, per planned
//! change) and a summary, or a JSON summary with `--json`. Exit 1 when any file failed.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use serde_json::json;
use vault_client::files::{Files, RemotePath};
use vault_client::state::StateDir;
use vault_client::sync::apply::Outcome;
use vault_client::sync::plan::{Action, Mode};
use vault_client::sync::watch::{Cause, WatchEvent, WatchOptions};
use vault_client::sync::{self as client_sync, Done, Failed, Options, Summary};
use vault_core::units::format_size;

use crate::args::{Command, SyncArgs};
use crate::escape::{shown, shown_path};
use crate::listing::plural;
use crate::out::outln;
use crate::progress;

pub async fn run(command: Command) -> anyhow::Result<()> {
    let (local, remote, mode, args) = match command {
        Command::Sync {
            local,
            remote,
            sync,
        } => (local, remote, Mode::Sync, sync),
        Command::Push {
            local,
            remote,
            delete,
            sync,
        } => (local, remote, Mode::Push { delete }, sync),
        Command::Pull {
            remote,
            local,
            delete,
            sync,
        } => (local, remote, Mode::Pull { delete }, sync),
        _ => bail!("not a sync command"),
    };
    let remote = RemotePath::parse(&remote)?;
    let local = PathBuf::from(local);
    let state = StateDir::from_env()?;
    let files = Arc::new(Files::open(&state).await?);
    let opts = Options {
        mode,
        dry_run: args.dry_run,
        excludes: args.exclude.clone(),
    };
    if args.watch {
        let result = watch(Arc::clone(&files), (&local, &remote), &opts, &args).await;
        crate::warnings::defer(files.take_warnings());
        files.close();
        return result;
    }
    let progress = if args.dry_run {
        Arc::new(vault_client::files::progress::NoProgress)
    } else {
        progress::for_transfer()
    };
    let result = client_sync::run(Arc::clone(&files), &local, &remote, &opts, progress).await;
    crate::warnings::defer(files.take_warnings());
    files.close();
    let summary = result?;
    report(&summary, &args, mode)?;
    if let Some(first) = summary.failed.first() {
        bail!(
            "{} failed, first {}: {}; run the same command again to finish",
            plural(summary.failed.len() as u64, "file", "files"),
            shown(&first.path),
            first.error
        );
    }
    Ok(())
}

/// `--watch`: rounds until Ctrl-C or SIGTERM, each reported as it ends (a round that
/// changed nothing says nothing, except with `--json`). On a terminal, a status line
/// between the rounds' lines.
async fn watch(
    files: Arc<Files>,
    (local, remote): (&PathBuf, &RemotePath),
    opts: &Options,
    args: &SyncArgs,
) -> anyhow::Result<()> {
    let mode = opts.mode;
    let status = if args.json {
        None
    } else {
        progress::StatusLine::on_terminal()
    };
    let progress: Arc<dyn vault_client::files::progress::Progress> = match &status {
        Some(line) => Arc::clone(line) as _,
        None => progress::for_transfer(),
    };
    let pair = format!("{} ⇄ {remote}", shown_path(local));
    if let Some(line) = &status {
        line.idle(&format!("first round of {pair}"), true);
    }
    let mut failed_output = None;
    let mut report = |event: WatchEvent| {
        if failed_output.is_some() {
            return;
        }
        let printed = match &status {
            Some(line) => {
                let printed = line.suspend(|| report_watch(&event, args, mode));
                let moved = matches!(&event, WatchEvent::Round { summary, .. } if changed_anything(summary));
                line.idle(&status_text(&event, &pair), moved);
                printed
            }
            None => report_watch(&event, args, mode),
        };
        if let Err(e) = printed {
            failed_output = Some(e);
        }
    };
    let (stop, stops) = tokio::sync::mpsc::unbounded_channel();
    let signals = tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async {
                    match term.as_mut() {
                        Some(term) => { term.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
            if stop.send(()).is_err() {
                return;
            }
        }
    });
    let result = client_sync::watch::watch(
        files,
        (local, remote),
        (opts, &WatchOptions::default()),
        progress,
        &mut report,
        stops,
    )
    .await;
    signals.abort();
    drop(status);
    if let Some(e) = failed_output {
        return Err(e.into());
    }
    result?;
    if args.json {
        outln!("{}", json!({"event": "stopped"}))?;
    } else {
        eprintln!("stopped watching");
    }
    Ok(())
}

/// Lists the files that failed on stderr, each with why; after the first file the
/// server refused for a reason (the quota, most often), the others it refused for the same
/// one say only its code, so a long reason is not repeated per file.
fn report_failed(failed: &[Failed]) {
    let mut said: Vec<&str> = Vec::new();
    for f in failed {
        match f.code {
            Some(code) if said.contains(&code) => {
                eprintln!("failed {}: {code}, as above", shown(&f.path));
            }
            code => {
                said.extend(code);
                eprintln!("failed {}: {}", shown(&f.path), f.error);
            }
        }
    }
}

/// The status line after `event` (on a terminal): what the watch does now; the line adds
/// for how long.
fn status_text(event: &WatchEvent, pair: &str) -> String {
    match event {
        WatchEvent::Round { summary, .. } if !summary.failed.is_empty() => format!(
            "watching {pair} · {} failed, trying again soon",
            plural(summary.failed.len() as u64, "file", "files")
        ),
        WatchEvent::Round { summary, .. } if summary.skipped() > 0 => format!(
            "watching {pair} · {} changed during the round, trying again soon",
            plural(summary.skipped() as u64, "file", "files")
        ),
        WatchEvent::Round { summary, .. } if !summary.left.is_empty() => {
            format!("stopping {pair}")
        }
        WatchEvent::RoundFailed { error, .. } => format!("watching {pair} · {error}; retrying"),
        WatchEvent::Stopping => format!("stopping {pair} · finishing the transfers under way"),
        WatchEvent::Watching { .. } | WatchEvent::Round { .. } => {
            format!("watching {pair} · in step (Ctrl-C to stop)")
        }
    }
}

/// One event of a watch: JSON lines with `--json`, else the round's changes and summary.
fn report_watch(event: &WatchEvent, args: &SyncArgs, mode: Mode) -> std::io::Result<()> {
    match event {
        WatchEvent::Watching { local_events } => {
            if args.json {
                outln!(
                    "{}",
                    json!({"event": "watching", "local_events": local_events})
                )?;
            } else if *local_events {
                eprintln!("watching for changes on both sides (Ctrl-C to stop)");
            } else {
                eprintln!(
                    "watching for remote changes; local changes are polled, as file-system \
                     events cannot be had here (Ctrl-C to stop)"
                );
            }
        }
        WatchEvent::Round { cause, summary } => {
            if args.json {
                let mut out = summary_json(summary, args);
                out["event"] = json!("round");
                out["cause"] = json!(cause.as_str());
                outln!("{out}")?;
            } else if *cause == Cause::Start || changed_anything(summary) {
                report(summary, args, mode)?;
            }
        }
        WatchEvent::Stopping => {
            if args.json {
                outln!("{}", json!({"event": "stopping"}))?;
            } else {
                eprintln!(
                    "stopping: finishing the transfers under way (Ctrl-C again to stop at once; \
                     the next run finishes them)"
                );
            }
        }
        WatchEvent::RoundFailed { error, retry } => {
            if args.json {
                outln!(
                    "{}",
                    json!({"event": "round_failed", "error": error, "retry_s": retry.as_secs_f64()})
                )?;
            } else {
                eprintln!(
                    "the round failed: {error}; trying again in {:.1} s",
                    retry.as_secs_f64()
                );
            }
        }
    }
    Ok(())
}

/// Whether a round moved, deleted or failed anything.
fn changed_anything(summary: &Summary) -> bool {
    summary.uploaded() + summary.downloaded() + summary.deleted() + summary.conflicts() > 0
        || !summary.failed.is_empty()
        || summary.skipped() > 0
        || !summary.left.is_empty()
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Upload => "upload",
        Action::Download => "download",
        Action::DeleteLocal => "delete local",
        Action::DeleteRemote => "delete remote",
        Action::Conflict => "conflict",
        Action::Record => "in sync",
        Action::Forget => "forget",
        Action::Nothing => "nothing",
    }
}

fn line(done: &Done) -> Option<String> {
    if matches!(
        done.action,
        Action::Record | Action::Forget | Action::Nothing
    ) {
        return None;
    }
    let path = shown(&done.path);
    Some(match (&done.outcome, done.action) {
        (None, Action::Conflict) => {
            format!("would keep both versions of {path} (the local one as a conflict copy)")
        }
        (None, Action::DeleteRemote) => format!("would delete remote {path} (to the trash)"),
        (None, action) => format!("would {} {path}", verb(action)),
        (Some(Outcome::Skipped(why)), action) => {
            format!("skipped {path} ({}): {why}", verb(action))
        }
        (Some(Outcome::Conflict { copy, .. }), _) => {
            format!(
                "conflict {path}: both changed; the local version is kept as {}",
                shown(copy)
            )
        }
        (Some(_), Action::DeleteRemote) => format!("deleted remote {path} (to the trash)"),
        (Some(_), Action::DeleteLocal) => format!("deleted local {path}"),
        (Some(_), Action::Upload) => format!("uploaded {path}"),
        (Some(_), Action::Download) => format!("downloaded {path}"),
        (Some(_), _) => return None,
    })
}

/// A run's summary as JSON (`--json`).
fn summary_json(summary: &Summary, args: &SyncArgs) -> serde_json::Value {
    let actions: Vec<_> = summary
        .actions
        .iter()
        .filter(|d| !matches!(d.action, Action::Record | Action::Forget))
        .map(|d| {
            json!({
                "path": d.path,
                "action": verb(d.action),
                "skipped": match &d.outcome {
                    Some(Outcome::Skipped(why)) => Some(why.as_str()),
                    _ => None,
                },
                "conflict_copy": match &d.outcome {
                    Some(Outcome::Conflict { copy, .. }) => Some(copy.as_str()),
                    _ => None,
                },
            })
        })
        .collect();
    let failed: Vec<_> = summary
        .failed
        .iter()
        .map(|f| json!({"path": f.path, "error": f.error, "code": f.code}))
        .collect();
    json!({
            "dry_run": args.dry_run,
            "uploaded": summary.uploaded(),
            "downloaded": summary.downloaded(),
            "deleted": summary.deleted(),
            "conflicts": summary.conflicts(),
            "skipped": summary.skipped(),
            "failed": failed,
            "left": summary.left,
            "bytes": summary.bytes(),
            "reused_bytes": summary.reused_bytes(),
            "seconds": summary.seconds,
            "actions": actions,
    })
}

fn report(summary: &Summary, args: &SyncArgs, mode: Mode) -> std::io::Result<()> {
    if args.json {
        let out = summary_json(summary, args);
        outln!(
            "{}",
            serde_json::to_string_pretty(&out).unwrap_or_else(|_| out.to_string())
        )?;
        return Ok(());
    }
    for (path, why) in &summary.skipped_local {
        eprintln!("left out {}: {why}", shown(path));
    }
    for done in &summary.actions {
        if let Some(text) = line(done) {
            outln!("{text}")?;
        }
    }
    report_failed(&summary.failed);
    if !summary.left.is_empty() {
        eprintln!(
            "left for the next run: {} (asked to stop)",
            plural(summary.left.len() as u64, "file", "files")
        );
    }
    let what = match mode {
        Mode::Sync => "sync",
        Mode::Push { .. } => "push",
        Mode::Pull { .. } => "pull",
    };
    let prefix = if args.dry_run {
        format!("dry run, nothing changed; the {what} would make")
    } else {
        format!("{what} done:")
    };
    let reused = match summary.reused_bytes() {
        0 => String::new(),
        n => format!(" ({} of it already there, not sent)", format_size(n)),
    };
    outln!(
        "{prefix} {} uploaded, {} downloaded, {} deleted, {}, {} skipped; {}{reused} in {:.1} s",
        summary.uploaded(),
        summary.downloaded(),
        summary.deleted(),
        plural(summary.conflicts() as u64, "conflict", "conflicts"),
        summary.skipped(),
        format_size(summary.bytes()),
        summary.seconds
    )
}
