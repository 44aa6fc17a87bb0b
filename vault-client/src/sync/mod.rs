//! `vault sync`, `vault push` and `vault pull` (README.md, Sync): a local directory kept in step
//! with a remote folder. A run reads the saved state (`state`), walks LOCAL with the
//! ignore rules (`scan`), brings the remote view up to date from the change feed
//! (`remote`), decides per path with the pure rule table (`plan`), and carries the
//! actions out on concurrent streams, small uploads in batches, saving the state as they
//! complete (`apply`).
//! An interrupted run leaves both sides consistent; the next one finishes the job.

pub mod apply;
pub mod plan;
pub mod remote;
pub mod scan;
pub mod state;
pub mod watch;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use apply::{Context, Item, Outcome, Store};
use plan::{Action, Mode, Sides};
use state::{StateFile, SyncState};

use crate::files::progress::Progress;
use crate::files::small::batches;
use crate::files::{Files, FilesError, RemotePath};

/// Actions in flight at once (each on its own QUIC streams).
pub const IN_FLIGHT: usize = 16;
/// Batches of small uploads in flight at once, besides those actions: one being sealed or
/// sent while the server stores and commits another.
pub const BATCHES_IN_FLIGHT: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A file request failed, or a local file or the state could not be read or written.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// The run can't be done as asked.
    #[error("{0}")]
    Usage(String),
    /// Not started: the run was asked to stop ([`Halt`]); the next run does it.
    #[error("not started: the run was asked to stop")]
    Halted,
}

impl SyncError {
    /// An I/O error on `path` ([`FilesError::io`]).
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SyncError::Files(FilesError::io(what, path, source))
    }

    fn is_connection(&self) -> bool {
        matches!(
            self,
            SyncError::Files(e) if e.is_connection() || matches!(e, FilesError::GaveUp(_))
        )
    }
}

/// How a run goes.
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    pub dry_run: bool,
    /// Extra ignore patterns (gitignore syntax, relative to LOCAL).
    pub excludes: Vec<String>,
}

/// One planned or finished action, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    pub path: String,
    pub action: Action,
    /// `None` in a dry run.
    pub outcome: Option<Outcome>,
}

/// A path whose action failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    pub path: String,
    /// Why, as a sentence that says what to do.
    pub error: String,
    /// The server's error code, when the server refused (`quota_exceeded`, …).
    pub code: Option<&'static str>,
}

impl Failed {
    fn new(path: String, error: &SyncError) -> Self {
        let code = match error {
            SyncError::Files(e) => e.api_code(),
            _ => None,
        };
        Failed {
            path,
            error: error.to_string(),
            code,
        }
    }
}

/// What a run did (or, dry, would do).
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub actions: Vec<Done>,
    /// Paths that failed, with the error.
    pub failed: Vec<Failed>,
    /// Local entries left out by the walk, with why.
    pub skipped_local: Vec<(String, String)>,
    /// Paths not started because the run was asked to stop ([`Halt`]): the next run does
    /// them.
    pub left: Vec<String>,
    pub seconds: f64,
    /// The ignore rules the walk found (`--exclude` and every `.vaultignore`): a watch
    /// takes them for its file-system events.
    pub rules: Option<Arc<scan::Rules>>,
}

impl Summary {
    fn count(&self, f: impl Fn(&Done) -> bool) -> usize {
        self.actions.iter().filter(|d| f(d)).count()
    }

    fn done_or_planned(d: &Done, action: Action) -> bool {
        d.action == action && !matches!(d.outcome, Some(Outcome::Skipped(_)))
    }

    pub fn uploaded(&self) -> usize {
        self.count(|d| Self::done_or_planned(d, Action::Upload))
    }

    pub fn downloaded(&self) -> usize {
        self.count(|d| Self::done_or_planned(d, Action::Download))
    }

    pub fn deleted(&self) -> usize {
        self.count(|d| {
            Self::done_or_planned(d, Action::DeleteLocal)
                || Self::done_or_planned(d, Action::DeleteRemote)
        })
    }

    pub fn conflicts(&self) -> usize {
        self.count(|d| Self::done_or_planned(d, Action::Conflict))
    }

    /// Files left for the next run because they changed during this one.
    pub fn skipped(&self) -> usize {
        self.count(|d| matches!(d.outcome, Some(Outcome::Skipped(_))))
    }

    /// `(bytes, reused)` of every file that went across.
    fn moved(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.actions.iter().filter_map(|d| match &d.outcome {
            Some(
                Outcome::Uploaded { bytes, reused }
                | Outcome::Downloaded { bytes, reused }
                | Outcome::Conflict { bytes, reused, .. },
            ) => Some((*bytes, *reused)),
            _ => None,
        })
    }

    /// Plaintext bytes of the files uploaded and downloaded (planned bytes in a dry run).
    pub fn bytes(&self) -> u64 {
        self.moved().map(|(bytes, _)| bytes).sum()
    }

    /// Of [`Summary::bytes`], those that did not cross the network: chunks the space held
    /// already (uploads), or that the replaced local file held (downloads).
    pub fn reused_bytes(&self) -> u64 {
        self.moved().map(|(_, reused)| reused).sum()
    }
}

/// `NAME (conflict TAG).EXT`, with ` N` after the tag from the second try on.
pub fn conflict_name(name: &str, tag: &str, n: u32) -> String {
    let tag = if n > 1 {
        format!("{tag} {n}")
    } else {
        tag.to_owned()
    };
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{} (conflict {tag}){}", &name[..dot], &name[dot..]),
        _ => format!("{name} (conflict {tag})"),
    }
}

/// `YYYY-MM-DD HHMMSS` in UTC for Unix seconds `secs`.
pub fn utc_stamp(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = vault_core::calendar::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// This machine's name for conflict copies (no `/`).
fn host_name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.replace(['/', '\0'], "-"))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Runs a sync, push or pull of `local` with `remote`.
pub async fn run(
    files: Arc<Files>,
    local: &Path,
    remote: &RemotePath,
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Result<Summary, SyncError> {
    run_with(
        files,
        (local, remote),
        opts,
        progress,
        (Lock::Take, &Halt::default()),
    )
    .await
}

/// Asks a run under way to start nothing new: the transfers under way finish and are
/// recorded, the rest is left for the next run ([`Summary::left`]). A watch's first
/// Ctrl-C.
#[derive(Clone, Debug, Default)]
pub struct Halt(Arc<AtomicBool>);

impl Halt {
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Whether a run takes the directory's lock itself, or its caller holds it for longer (a
/// watch, for all its rounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lock {
    Take,
    Held,
}

async fn run_with(
    files: Arc<Files>,
    (local, remote): (&Path, &RemotePath),
    opts: &Options,
    progress: Arc<dyn Progress>,
    (lock, halt): (Lock, &Halt),
) -> Result<Summary, SyncError> {
    let started = Instant::now();
    // A group's keys first: a member without them learns it before anything else.
    let group_id = match remote.ns {
        vault_core::proto::NsRef::Group { .. } => files.keys_for(&remote.ns).await?.group_id(),
        vault_core::proto::NsRef::Personal => None,
    };
    if !local.is_dir() {
        if matches!(opts.mode, Mode::Pull { .. }) && !local.exists() && !opts.dry_run {
            std::fs::create_dir_all(local).map_err(|e| SyncError::io("create", local, e))?;
        } else if !(matches!(opts.mode, Mode::Pull { .. }) && opts.dry_run && !local.exists()) {
            return Err(SyncError::Usage(format!(
                "{}: no such directory",
                local.display()
            )));
        }
    }
    let local = std::path::absolute(local).map_err(|e| SyncError::io("read", local, e))?;
    let remote_text = RemotePath {
        dir_hint: false,
        ..remote.clone()
    }
    .to_string();
    let file = StateFile::new(&local);
    // A dry run changes nothing and needs no lock (nor creates `.vault-sync/`).
    let _lock = if opts.dry_run || lock == Lock::Held {
        None
    } else {
        Some(file.lock()?)
    };
    let mut state = match file.load()? {
        Some(mut s) => {
            s.follow_rename(&remote_text, group_id);
            s.check_binding(files.server(), files.user(), &remote_text)?;
            s.check_group(group_id)?;
            s
        }
        None => {
            let mut s = SyncState::new(files.server(), files.user(), &remote_text);
            s.check_group(group_id)?;
            s
        }
    };

    let scan = if local.is_dir() {
        scan::scan(&local, &opts.excludes)?
    } else {
        scan::Scan {
            rules: scan::Rules::new(&local, &opts.excludes)?,
            files: Default::default(),
            skipped: Vec::new(),
        }
    };
    if !opts.dry_run {
        // Uploads a killed earlier run left open must not commit after the refresh.
        crate::files::leftovers::abort_leftovers(&files).await?;
    }
    remote::refresh(&files, remote, &mut state).await?;
    state.settle_uploads();

    // Decide per path.
    let paths: BTreeSet<&String> = scan
        .files
        .keys()
        .chain(state.remote_files.keys())
        .chain(state.synced.keys())
        .collect();
    let mut items = Vec::new();
    for path in paths {
        if scan.rules.ignored(path, false) {
            continue;
        }
        let mut sides = Sides {
            base: state.synced.get(path.as_str()),
            local: scan.files.get(path.as_str()),
            remote: state.remote_files.get(path.as_str()),
            same: None,
        };
        if plan::needs_hash(&sides) {
            let full = local.join(path.as_str());
            let hash = tokio::task::spawn_blocking(move || apply::hash_file(&full))
                .await
                .map_err(|e| SyncError::Usage(format!("hashing failed: {e}")))?;
            sides.same = match hash {
                Ok(h) => Some(sides.remote.and_then(|r| r.blake3.as_deref()) == Some(h.as_str())),
                // Gone or unreadable since the walk: decide without the comparison.
                Err(_) => None,
            };
        }
        let action = plan::decide(opts.mode, &sides);
        if action == Action::Nothing {
            continue;
        }
        let keep_local = matches!(opts.mode, Mode::Pull { .. })
            && sides
                .local
                .is_some_and(|l| sides.base.is_none_or(|b| b.local != *l));
        items.push(Item {
            path: path.clone(),
            action,
            local: sides.local.copied(),
            remote: sides.remote.cloned(),
            keep_local,
        });
    }
    let mut summary = Summary {
        skipped_local: scan.skipped,
        rules: Some(Arc::new(scan.rules)),
        ..Summary::default()
    };
    if halt.requested() && !opts.dry_run {
        summary.left = items.into_iter().map(|i| i.path).collect();
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    if opts.dry_run {
        summary.actions = items
            .into_iter()
            .map(|i| Done {
                path: i.path,
                action: i.action,
                outcome: None,
            })
            .collect();
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let stamp = utc_stamp(now);
    let ctx = Arc::new(Context {
        files,
        trash_dir: file.dir().join("trash").join(stamp.replace(' ', "-")),
        store: Store::new(file, state),
        local_root: local.clone(),
        remote_root: RemotePath {
            dir_hint: false,
            ..remote.clone()
        },
        progress: Arc::clone(&progress),
        conflict_tag: format!("{} {stamp}", host_name()),
    });
    ctx.store.save()?;
    let transfer_bytes: u64 = items
        .iter()
        .map(|i| match i.action {
            Action::Upload => i.local.map_or(0, |l| l.size),
            Action::Download => i.remote.as_ref().map_or(0, |r| r.size),
            Action::Conflict => {
                i.local.map_or(0, |l| l.size) + i.remote.as_ref().map_or(0, |r| r.size)
            }
            _ => 0,
        })
        .sum();
    progress.begin(items.len() as u64, transfer_bytes);
    run_items(&ctx, items, halt, &mut summary).await;
    ctx.store.save()?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Runs the items: small uploads in batches ([`apply::upload_batch`], up to
/// [`BATCHES_IN_FLIGHT`] at once), the rest [`IN_FLIGHT`] at a time. A connection that
/// can't be restored stops the run (what completed is saved); other errors are recorded
/// per path. Once `halt` is requested nothing new starts.
async fn run_items(ctx: &Arc<Context>, items: Vec<Item>, halt: &Halt, summary: &mut Summary) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    let (small, items): (Vec<Item>, Vec<Item>) = items.into_iter().partition(apply::is_batched);
    let small: Vec<_> = small
        .into_iter()
        .map(|item| (apply::small_file(ctx, &item), item))
        .collect();
    let batch_permits = Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT));
    for batch in batches(small, |(file, _)| file) {
        let (ctx, stop, permits, halt) = (
            Arc::clone(ctx),
            Arc::clone(&stop),
            Arc::clone(&batch_permits),
            halt.clone(),
        );
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            if let Some(why) = not_started(&stop, &halt) {
                return batch
                    .into_iter()
                    .map(|(_, item)| (item, Err(why())))
                    .collect();
            }
            let done = apply::upload_batch(&ctx, batch).await;
            for (_, result) in &done {
                if let Err(e) = result
                    && e.is_connection()
                {
                    stop.store(true, Ordering::SeqCst);
                }
                ctx.progress.file_done();
            }
            done
        });
    }

    let semaphore = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    for item in items {
        let Ok(permit) = Arc::clone(&semaphore).acquire_owned().await else {
            break;
        };
        if let Some(why) = not_started(&stop, halt) {
            collect(Ok(vec![(item, Err(why()))]), summary);
            continue;
        }
        let (ctx, stop) = (Arc::clone(ctx), Arc::clone(&stop));
        tasks.spawn(async move {
            let result = apply::run(&ctx, &item).await;
            drop(permit);
            if let Err(e) = &result
                && e.is_connection()
            {
                stop.store(true, Ordering::SeqCst);
            }
            ctx.progress.file_done();
            vec![(item, result)]
        });
        while let Some(joined) = tasks.try_join_next() {
            collect(joined, summary);
        }
    }
    while let Some(joined) = tasks.join_next().await {
        collect(joined, summary);
    }
    summary.actions.sort_by(|a, b| a.path.cmp(&b.path));
    summary.failed.sort_by(|a, b| a.path.cmp(&b.path));
    summary.left.sort();
}

fn not_attempted() -> SyncError {
    SyncError::Usage("not attempted: the connection was lost".into())
}

/// Why an item is not started, if it is not: the connection was lost (`stop`), or the
/// run was asked to stop.
fn not_started(stop: &AtomicBool, halt: &Halt) -> Option<fn() -> SyncError> {
    if halt.requested() {
        Some(|| SyncError::Halted)
    } else if stop.load(Ordering::SeqCst) {
        Some(not_attempted)
    } else {
        None
    }
}

/// What a task of [`run_items`] did: each of its items with its outcome.
type Finished = Vec<(Item, Result<Outcome, SyncError>)>;

fn collect(joined: Result<Finished, tokio::task::JoinError>, summary: &mut Summary) {
    let done = match joined {
        Ok(done) => done,
        Err(e) => {
            let error = SyncError::Usage(format!("an action failed: {e}"));
            summary.failed.push(Failed::new("(task)".into(), &error));
            return;
        }
    };
    for (item, result) in done {
        match result {
            Ok(outcome) => summary.actions.push(Done {
                path: item.path,
                action: item.action,
                outcome: Some(outcome),
            }),
            Err(SyncError::Halted) => summary.left.push(item.path),
            Err(e) => summary.failed.push(Failed::new(item.path, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_names_keep_the_extension() {
        let tag = "laptop 2026-11-22 093005";
        assert_eq!(
            conflict_name("report.pdf", tag, 1),
            "report (conflict laptop 2026-11-22 093005).pdf"
        );
        assert_eq!(
            conflict_name("archive.tar.gz", tag, 1),
            "archive.tar (conflict laptop 2026-11-22 093005).gz"
        );
        assert_eq!(
            conflict_name("Makefile", tag, 1),
            "Makefile (conflict laptop 2026-11-22 093005)"
        );
        assert_eq!(
            conflict_name(".bashrc", tag, 2),
            ".bashrc (conflict laptop 2026-11-22 093005 2)"
        );
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "1970-01-01 000000");
        assert_eq!(utc_stamp(951_782_400), "2000-02-29 000000");
        assert_eq!(utc_stamp(1_795_080_605), "2026-11-19 093005");
        assert_eq!(utc_stamp(-1), "1969-12-31 235959");
    }
}
