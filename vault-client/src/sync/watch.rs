//! `vault sync --watch` (and `push`/`pull`): one normal run, then more runs ("rounds") as
//! either side changes, until stopped. Every round is a one-shot [`super::run`]:
//! the same state, journal, ignore rules, conflict copies and trash.
//!
//! The watch holds LOCAL's run lock from start to stop, so no other run works on it
//! between rounds. What starts a round:
//! - **local changes**, from file-system events (inotify on Linux, through `notify`): a
//!   round waits until LOCAL has been quiet for [`WatchOptions::settle`], so a file still
//!   being written is not sent half-way and a burst (a checkout, an unpacked archive) is
//!   one round; a folder that never goes quiet gets a round every
//!   [`WatchOptions::settle_max`]. Events under `.vault-sync/`, of unfinished downloads,
//!   of paths `--exclude` or a `.vaultignore` leaves out (the rules the last round's walk
//!   found) and reads are not changes. Where events cannot be had (no
//!   inotify, or its watch limit reached), LOCAL is polled: a round every
//!   [`WatchOptions::poll`];
//! - **remote changes**, pushed by the server: a `watch_space` stream on the remote's space
//!   says when its revision moves, and the round reads only what changed (`changes`).
//!   The stream is kept open across lost connections and server restarts, with a backoff,
//!   and a round follows each reconnect (something may have changed meanwhile);
//! - a round that left files failed or skipped (changed during the round: retried after
//!   [`RETRY`], doubling while rounds keep failing), or one that lost the connection
//!   (retried with a backoff);
//! - **a full round every [`WatchOptions::rescan`]** whatever was heard, the safety net
//!   for anything the events missed.
//!
//! A round's own downloads are local events and its own uploads move the remote revision,
//! so a round that changed something is followed by one that finds nothing to do.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;
use tokio::time::Instant;
use vault_core::proto::{NsRef, Request, Response};

use super::scan::{Rules, left_out};
use super::{Options, Summary, SyncError};
use crate::chat::listen::Backoff;
use crate::files::progress::Progress;
use crate::files::{Files, FilesError, RemotePath};

/// After a round that left files failed or skipped, the next one this much later; twice
/// as long after each further such round in a row (a file over the quota fails until
/// someone acts), up to [`WatchOptions::rescan`].
pub const RETRY: Duration = Duration::from_secs(10);

/// How a watch waits.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Quiet time after the last local change before a round starts.
    pub settle: Duration,
    /// At most this long from a local change to its round, however busy LOCAL stays.
    pub settle_max: Duration,
    /// A full round this often, whatever was heard.
    pub rescan: Duration,
    /// A round this often when file-system events cannot be had.
    pub poll: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            settle: Duration::from_millis(1000),
            settle_max: Duration::from_secs(30),
            rescan: Duration::from_secs(600),
            poll: Duration::from_secs(30),
        }
    }
}

/// Why a round ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The first round, when the watch starts.
    Start,
    /// Something changed in LOCAL.
    Local,
    /// The server said the remote space changed (or the feed reconnected).
    Remote,
    /// The periodic full round, or the poll where events cannot be had.
    Rescan,
    /// Retrying after failed files or a lost connection.
    Retry,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Start => "start",
            Cause::Local => "local",
            Cause::Remote => "remote",
            Cause::Rescan => "rescan",
            Cause::Retry => "retry",
        }
    }
}

/// What a watch reports as it goes.
#[derive(Debug)]
pub enum WatchEvent {
    /// The first round is done and the watch waits; `local_events` says whether LOCAL is
    /// watched by events (else polled).
    Watching { local_events: bool },
    /// A round finished.
    Round { cause: Cause, summary: Summary },
    /// A round failed on the connection; the next one is tried after `retry`.
    RoundFailed { error: String, retry: Duration },
    /// Asked to stop during a round: the transfers under way finish (a [`WatchEvent::Round`]
    /// follows with them), nothing new starts; a second request stops at once.
    Stopping,
}

/// Requests to stop a watch (Ctrl-C, SIGTERM), one message each: the first lets the
/// transfers under way finish, the second drops them. Dropping every sender asks nothing.
pub type StopRequests = mpsc::UnboundedReceiver<()>;

/// The next stop request; never, once no sender is left.
async fn stop_requested(stops: &mut StopRequests) {
    if stops.recv().await.is_none() {
        std::future::pending::<()>().await;
    }
}

/// What wakes the loop.
#[derive(Debug)]
enum Wake {
    Local,
    Remote,
}

/// Runs [`super::run`] once, then again as LOCAL or REMOTE change (see the module docs),
/// reporting each round to `report`, until a stop is requested. A request during a round
/// lets the transfers under way finish and starts nothing new ([`super::Halt`]); a second
/// one drops the round (the next run finishes its job, as after an interrupted one-shot
/// run).
/// Returns an error the rounds cannot get past (LOCAL gone, the lock held by another run,
/// a usage error); a lost connection is retried.
pub async fn watch(
    files: Arc<Files>,
    (local, remote): (&Path, &RemotePath),
    (opts, wopts): (&Options, &WatchOptions),
    progress: Arc<dyn Progress>,
    report: &mut (dyn FnMut(WatchEvent) + Send),
    mut stops: StopRequests,
) -> Result<(), SyncError> {
    if opts.dry_run {
        return Err(SyncError::Usage(
            "--watch and --dry-run do not go together: a dry run changes nothing to watch".into(),
        ));
    }
    // The directory's lock is held for the whole watch: no other run slips in between
    // rounds. A pull creates LOCAL first, as its run would.
    if matches!(opts.mode, super::plan::Mode::Pull { .. }) && !local.exists() {
        std::fs::create_dir_all(local).map_err(|e| SyncError::io("create", local, e))?;
    }
    if !local.is_dir() {
        return Err(SyncError::Usage(format!(
            "{}: no such directory",
            local.display()
        )));
    }
    let absolute = std::path::absolute(local).map_err(|e| SyncError::io("read", local, e))?;
    let _lock = super::state::StateFile::new(&absolute).lock()?;
    let (wake, mut woken) = mpsc::unbounded_channel();
    // Both watches start before the first round, so nothing that changes during it is
    // missed.
    let (ready, subscribed) = tokio::sync::oneshot::channel();
    let feed = tokio::spawn(follow_remote(
        Arc::clone(&files),
        remote.ns.clone(),
        wake.clone(),
        ready,
    ));
    let _ = tokio::time::timeout(Duration::from_secs(10), subscribed).await;
    let rules: SharedRules = Arc::new(RwLock::new(Arc::new(Rules::new(
        &absolute,
        &opts.excludes,
    )?)));
    let local_watch = watch_local(&absolute, Arc::clone(&rules), wake.clone());
    let mut cause = Cause::Start;
    let mut backoff = Backoff::new();
    let mut retry = RETRY;
    let result = loop {
        // What woke the loop before this round starts is in this round: a burst of pushes
        // (this watch's own first round of 100,000 files moves the revision hundreds of
        // times) is one round, not one each.
        while woken.try_recv().is_ok() {}
        let halt = super::Halt::default();
        let run = super::run_with(
            Arc::clone(&files),
            (local, remote),
            opts,
            Arc::clone(&progress),
            (super::Lock::Held, &halt),
        );
        tokio::pin!(run);
        let round = tokio::select! {
            round = &mut run => round,
            _ = stop_requested(&mut stops) => {
                halt.request();
                report(WatchEvent::Stopping);
                tokio::select! {
                    round = &mut run => match round {
                        Ok(summary) => report(WatchEvent::Round { cause, summary }),
                        // A lost connection: the next start finishes the job.
                        Err(e) if e.is_connection() => {}
                        Err(e) => break Err(e),
                    },
                    _ = stop_requested(&mut stops) => {}
                }
                break Ok(());
            }
        };
        let mut next = None;
        match round {
            Ok(summary) => {
                backoff.reset();
                // From now on, events follow the `.vaultignore` files this round found.
                if let Some(found) = &summary.rules {
                    *rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(found);
                }
                // A file that failed, or was skipped as changed during the round, on
                // either side, is tried again soon.
                if !summary.failed.is_empty() || summary.skipped() > 0 {
                    next = Some(retry);
                    retry = (retry * 2).min(wopts.rescan);
                } else {
                    retry = RETRY;
                }
                report(WatchEvent::Round { cause, summary });
            }
            Err(e) if e.is_connection() => {
                let wait = backoff.next_delay();
                report(WatchEvent::RoundFailed {
                    error: e.to_string(),
                    retry: wait,
                });
                let conn = files.conn();
                if conn.is_closed() {
                    let _ = files.reconnect(&conn).await;
                }
                next = Some(wait);
            }
            Err(e) => break Err(e),
        }
        if cause == Cause::Start {
            report(WatchEvent::Watching {
                local_events: local_watch.is_some(),
            });
        }
        let quiet = if local_watch.is_some() {
            wopts.rescan
        } else {
            wopts.poll
        };
        let wait = next.map_or(quiet, |n| n.min(quiet));
        cause = tokio::select! {
            _ = stop_requested(&mut stops) => break Ok(()),
            woke = next_change(&mut woken, wopts) => woke,
            _ = tokio::time::sleep(wait) => if next.is_some() { Cause::Retry } else { Cause::Rescan },
        };
    };
    drop(local_watch);
    feed.abort();
    result
}

/// Waits for the next change: at once for a remote one, after LOCAL settles for a local
/// one (remote wake-ups meanwhile join the same round).
async fn next_change(woken: &mut mpsc::UnboundedReceiver<Wake>, wopts: &WatchOptions) -> Cause {
    let Some(first) = woken.recv().await else {
        // Both watchers are gone: only the timers wake the loop.
        return std::future::pending().await;
    };
    if matches!(first, Wake::Remote) {
        return Cause::Remote;
    }
    let deadline = Instant::now() + wopts.settle_max;
    loop {
        let until = (Instant::now() + wopts.settle).min(deadline);
        match tokio::time::timeout_at(until, woken.recv()).await {
            Ok(Some(_)) if Instant::now() < deadline => continue,
            _ => return Cause::Local,
        }
    }
}

/// The ignore rules a watch's events are judged by: `--exclude` at first, then those the
/// last round found (with every `.vaultignore`).
type SharedRules = Arc<RwLock<Arc<Rules>>>;

/// Watches `root` recursively, sending [`Wake::Local`] for each event that may be a
/// change of what a round transfers. `None` when events cannot be had (the caller polls).
fn watch_local(
    root: &Path,
    rules: SharedRules,
    wake: mpsc::UnboundedSender<Wake>,
) -> Option<notify::RecommendedWatcher> {
    let base = root.to_path_buf();
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(event)
            if is_change(
                &event,
                &base,
                &rules.read().unwrap_or_else(|e| e.into_inner()),
            ) =>
        {
            let _ = wake.send(Wake::Local);
        }
        Ok(_) => {}
        // Events were lost (a queue overflow): a round finds out what changed.
        Err(_) => {
            let _ = wake.send(Wake::Local);
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "no file-system events here: polling instead");
            return None;
        }
    };
    match watcher.watch(root, notify::RecursiveMode::Recursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch {}: polling instead", root.display());
            None
        }
    }
}

/// Whether `event` may change what a round transfers: not a read, and about a path that
/// is neither sync state, an unfinished download nor excluded.
fn is_change(event: &notify::Event, root: &Path, rules: &Rules) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return false,
        _ => {}
    }
    if event.need_rescan() || event.paths.is_empty() {
        return true;
    }
    event.paths.iter().any(|path| counts(path, root, rules))
}

/// Whether a change at `path` counts (see [`is_change`]).
fn counts(path: &Path, root: &Path, rules: &Rules) -> bool {
    let Ok(rel) = path.strip_prefix(root) else {
        return false;
    };
    let rel: PathBuf = rel.components().collect();
    let Some(text) = rel.to_str() else {
        return true; // a name the walk will report
    };
    if text.is_empty() {
        return true;
    }
    if text.split('/').any(left_out) {
        return false;
    }
    let is_dir = path.is_dir();
    !rules.ignored(text, is_dir)
}

/// Keeps a `watch_space` stream on `ns` open for as long as the watch runs, sending
/// [`Wake::Remote`] whenever the server says the space's revision moved, and once after
/// each reconnect (something may have changed meanwhile). `ready` fires once the first
/// stream is open, or the server will not give one.
async fn follow_remote(
    files: Arc<Files>,
    ns: NsRef,
    wake: mpsc::UnboundedSender<Wake>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut backoff = Backoff::new();
    let mut ready = Some(ready);
    loop {
        let conn = files.conn();
        if conn.is_closed() && files.reconnect(&conn).await.is_err() {
            tokio::time::sleep(backoff.next_delay()).await;
            continue;
        }
        let conn = files.conn();
        let request = Request::WatchSpace { ns: ns.clone() };
        let mut stream = match conn.subscribe(&request).await {
            Ok((Response::Watching { .. }, stream)) => stream,
            Ok((other, _)) => {
                tracing::warn!(answer = ?other, "the server does not push changes: rounds only on local changes and every rescan");
                return;
            }
            Err(e) => {
                let e = FilesError::from(e);
                if let Some(seconds) = e.retry_after() {
                    tokio::time::sleep(Duration::from_secs(seconds.max(1))).await;
                } else if e.is_connection() {
                    tokio::time::sleep(backoff.next_delay()).await;
                } else {
                    tracing::warn!(error = %e, "the server refused to push changes: rounds only on local changes and every rescan");
                    return;
                }
                continue;
            }
        };
        match ready.take() {
            Some(ready) => {
                let _ = ready.send(());
            }
            None => {
                if wake.send(Wake::Remote).is_err() {
                    return;
                }
            }
        }
        backoff.reset();
        loop {
            match stream.next().await {
                Ok(Some(Response::SpaceChanged { .. })) => {
                    if wake.send(Wake::Remote).is_err() {
                        return;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: notify::EventKind, path: &Path) -> notify::Event {
        notify::Event::new(kind).add_path(path.to_path_buf())
    }

    #[test]
    fn reads_sync_state_partial_downloads_and_excluded_paths_are_not_changes() {
        use notify::EventKind;
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
        let root = Path::new("/watched");
        let rules = Rules::new(root, &["*.tmp".into()]).expect("rules");
        let modify = EventKind::Modify(ModifyKind::Any);
        let change = |kind, rel: &str| is_change(&event(kind, &root.join(rel)), root, &rules);
        assert!(change(modify, "a/b.txt"));
        assert!(change(EventKind::Create(CreateKind::File), "new"));
        assert!(change(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "a/b.txt"
        ));
        assert!(!change(
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            "a/b.txt"
        ));
        assert!(!change(modify, ".vault-sync/state.json"));
        assert!(!change(modify, "a/.vault-part/x"));
        assert!(!change(modify, "a/.b.txt.vault-part"));
        assert!(!change(modify, "a/build.tmp"));
        assert!(!change(modify, "/elsewhere/file"));
    }

    #[tokio::test]
    async fn a_burst_of_local_changes_is_one_round_once_the_folder_is_quiet() {
        let wopts = WatchOptions {
            settle: Duration::from_millis(200),
            settle_max: Duration::from_secs(5),
            ..WatchOptions::default()
        };
        let (wake, mut woken) = mpsc::unbounded_channel();
        let started = Instant::now();
        let burst = tokio::spawn(async move {
            for _ in 0..10 {
                let _ = wake.send(Wake::Local);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            wake
        });
        assert_eq!(next_change(&mut woken, &wopts).await, Cause::Local);
        let took = started.elapsed();
        // The burst lasted about 0.5 s; the round waits for 0.2 s of quiet after it.
        assert!(took >= Duration::from_millis(650), "{took:?}");
        assert!(woken.try_recv().is_err(), "the burst is used up");
        let wake = burst.await.expect("burst");
        // A remote change wakes at once.
        wake.send(Wake::Remote).expect("send");
        let started = Instant::now();
        assert_eq!(next_change(&mut woken, &wopts).await, Cause::Remote);
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_folder_that_never_goes_quiet_still_gets_a_round() {
        let wopts = WatchOptions {
            settle: Duration::from_millis(200),
            settle_max: Duration::from_millis(600),
            ..WatchOptions::default()
        };
        let (wake, mut woken) = mpsc::unbounded_channel();
        let busy = tokio::spawn(async move {
            loop {
                if wake.send(Wake::Local).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let started = Instant::now();
        assert_eq!(next_change(&mut woken, &wopts).await, Cause::Local);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(900), "{took:?}");
        busy.abort();
    }
}
