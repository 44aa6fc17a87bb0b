//! The rows of `vault sync --watch`: two machines of one person each watching a folder
//! synced with one remote folder, on one fresh server. How long a file created, edited or
//! deleted in one folder takes to appear in the other (median; target 2 s); a tree of
//! small files unpacked at once in one folder, against a one-shot first sync of the same
//! tree (target ≥ 0.8 ×); what a watching client costs while nothing changes, with
//! 100,000 files under watch (target ≤ 1 % of a core, ≤ 64 MiB RSS); and what the server
//! holds per idle watching client (target ≤ 64 KiB).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::data;
use crate::procs::{Bins, Client, Server};
use crate::report::{Row, median};
use crate::scenarios::Plan;

/// Changes measured per kind.
const CHANGES: usize = 9;
/// How long to wait for one change to cross before giving up.
const CROSS_LIMIT: Duration = Duration::from_secs(60);
/// The idle window the cost is measured over.
const IDLE: Duration = Duration::from_secs(20);
/// How long the first round of the large idle tree may take.
const FIRST_ROUND_LIMIT: Duration = Duration::from_secs(1800);
/// Idle watches per user, under the server's limit of 64 per user per instance.
const WATCHES_PER_USER: usize = 50;

fn note(what: &str) {
    eprintln!("vault-bench: {what}");
}

/// A running `vault sync LOCAL REMOTE --watch --json`, killed on drop.
struct Watching {
    child: Child,
    /// Fires when the watch says its first round is done.
    ready: mpsc::Receiver<()>,
    /// When the watch last printed an event.
    last_event: Arc<Mutex<Instant>>,
}

impl Watching {
    /// Starts a watch of `dir` with `/watched` and waits for its first round.
    fn start(client: &Client, dir: &Path) -> anyhow::Result<Watching> {
        let watching = Watching::spawn(client, dir, "/watched")?;
        watching.wait_ready(CROSS_LIMIT)?;
        Ok(watching)
    }

    fn spawn(client: &Client, dir: &Path, remote: &str) -> anyhow::Result<Watching> {
        let mut child = client
            .command(&["sync", path(dir)?, remote, "--watch", "--json"], None)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start vault sync --watch")?;
        let stdout = child.stdout.take().context("no stdout of the watch")?;
        let (tx, ready) = mpsc::channel();
        let last_event = Arc::new(Mutex::new(Instant::now()));
        let seen = Arc::clone(&last_event);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                *seen.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                if line.contains(r#""event":"watching""#) {
                    let _ = tx.send(());
                }
            }
        });
        Ok(Watching {
            child,
            ready,
            last_event,
        })
    }

    /// Waits until the watch has printed nothing for `quiet` (its rounds after the first,
    /// set off by its own changes, are over).
    fn wait_quiet(&self, quiet: Duration) -> anyhow::Result<()> {
        wait_for("the watch to settle", || {
            self.last_event
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed()
                >= quiet
        })
        .map(|_| ())
    }

    fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        self.ready
            .recv_timeout(limit)
            .map_err(|_| anyhow::anyhow!("the watch's first round did not end within {limit:?}"))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("a temp path that is not UTF-8")
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > CROSS_LIMIT {
            bail!("{what} did not happen within {CROSS_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(start.elapsed())
}

/// Every file under `dir` but `.vault-sync/`.
fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if name == ".vault-sync" {
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => n += 1,
                _ => {}
            }
        }
    }
    n
}

pub fn rows(bins: &Bins, plan: &Plan, work: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    // The idle watching clients all come from 127.0.0.1: more than the 64 connections
    // one address may hold by default.
    let limits = format!(
        "{}\nconnections_per_ip = {}\n",
        plan.limits,
        plan.idle_watches + 16
    );
    let server = Server::start(bins, &limits)?;
    let a = server.explain(Client::register(bins, &server, "watcher"))?;
    let b = server.explain(Client::login(bins, &server, "watcher"))?;
    let (dir_a, dir_b) = (work.join("watch-a"), work.join("watch-b"));
    std::fs::create_dir_all(&dir_a)?;
    std::fs::create_dir_all(&dir_b)?;
    let watch_a = server.explain(Watching::start(&a, &dir_a))?;
    let watch_b = server.explain(Watching::start(&b, &dir_b))?;

    note(&format!(
        "watch: {CHANGES} creates, edits and deletes in A, each until it is in B"
    ));
    let (mut created, mut edited, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..CHANGES {
        let name = format!("change-{i}.txt");
        let (in_a, in_b) = (dir_a.join(&name), dir_b.join(&name));
        std::fs::write(&in_a, format!("created {i}"))?;
        let want = format!("created {i}");
        created.push(wait_for("a created file in B", || {
            std::fs::read_to_string(&in_b).is_ok_and(|t| t == want)
        })?);
        std::fs::write(&in_a, format!("edited {i}, longer"))?;
        let want = format!("edited {i}, longer");
        edited.push(wait_for("an edit in B", || {
            std::fs::read_to_string(&in_b).is_ok_and(|t| t == want)
        })?);
        std::fs::remove_file(&in_a)?;
        deleted.push(wait_for("a delete in B", || !in_b.exists())?);
    }
    let secs = |d: &[Duration]| median(&d.iter().map(Duration::as_secs_f64).collect::<Vec<_>>());
    for (what, times) in [
        ("created", &created),
        ("edited", &edited),
        ("deleted", &deleted),
    ] {
        rows.push(Row::at_most(
            &format!("watch: a file {what} in A is so in B (median)"),
            secs(times),
            "s",
            2.0,
            "≤ 2 s",
        ));
    }

    // A tree unpacked at once in A: how soon all of it is in B, against what the same
    // takes by hand: a one-shot first sync of the tree up from one folder, then a
    // one-shot first sync of it down into another.
    let files = plan.small_files;
    let tree = work.join("watch-tree");
    data::small_tree(&tree, files, false)?;
    note(&format!("watch: {files} small files unpacked at once in A"));
    let unpacked = dir_a.join("unpacked");
    let start = Instant::now();
    copy_tree(&tree, &unpacked)?;
    wait_for("the unpacked tree in B", || {
        count_files(&dir_b.join("unpacked")) >= files
    })?;
    let watched = start.elapsed().as_secs_f64();
    note("watch: the same tree by one-shot syncs, up from one folder and down into another");
    let (up, down) = (
        work.join("watch-one-shot-up"),
        work.join("watch-one-shot-down"),
    );
    std::fs::create_dir_all(&up)?;
    std::fs::create_dir_all(&down)?;
    copy_tree(&tree, &up.join("unpacked"))?;
    let sent = server.explain(a.run(&["sync", path(&up)?, "/one-shot"], None))?;
    let fetched = server.explain(b.run(&["sync", path(&down)?, "/one-shot"], None))?;
    if count_files(&down) < files {
        bail!(
            "the one-shot sync down brought {} of {files} files",
            count_files(&down)
        );
    }
    let by_hand = sent.elapsed.as_secs_f64() + fetched.elapsed.as_secs_f64();
    let (watch_rate, sync_rate) = (files as f64 / watched, files as f64 / by_hand);
    let mut row = Row::at_least(
        &format!("watch: {files} files unpacked at once in A, all in B"),
        watch_rate,
        "files/s",
        sync_rate,
        0.8,
        "≥ 0.8 × one-shot syncs up and down",
    );
    row.note = Some(format!(
        "{watched:.1} s with the watches (A's round up, B's round down, 1 s of settling \
         first), {by_hand:.1} s by one-shot first syncs ({:.1} s up, {:.1} s down)",
        sent.elapsed.as_secs_f64(),
        fetched.elapsed.as_secs_f64()
    ));
    rows.push(row);

    drop((watch_a, watch_b));
    idle_client(&a, plan, work, rows)?;
    server.stop()?;
    // A fresh server: one that has worked keeps freed memory that new connections reuse.
    let server = Server::start(bins, &limits)?;
    idle_server(bins, plan, &server, work, rows)?;
    server.stop()
}

/// A watch of a folder of `plan.idle_files` small files, once its first round has sent
/// them: its CPU and RSS while nothing changes.
fn idle_client(
    client: &Client,
    plan: &Plan,
    work: &Path,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let files = plan.idle_files;
    let dir = work.join("watch-idle");
    note(&format!("watch: {files} small files for the idle watch"));
    data::small_tree(&dir, files, false)?;
    let watch = Watching::spawn(client, &dir, "/idle")?;
    watch.wait_ready(FIRST_ROUND_LIMIT)?;
    let pid = watch.pid();
    watch.wait_quiet(Duration::from_secs(5))?;
    let first_peak = crate::procs::vm_hwm(pid).context("no VmHWM for the watch")?;
    note(&format!(
        "watch: {} s idle with {files} files under watch",
        IDLE.as_secs()
    ));
    let before = crate::cpu::of_process(pid)?;
    let mut rss_peak = 0;
    let start = Instant::now();
    while start.elapsed() < IDLE {
        std::thread::sleep(Duration::from_millis(500));
        let rss = crate::procs::vm_field(pid, "VmRSS:").context("no VmRSS for the watch")?;
        rss_peak = rss_peak.max(rss);
    }
    let used = crate::cpu::of_process(pid)? - before;
    rows.push(Row::at_most(
        &format!("watch: CPU of a watching client with {files} files, nothing changing"),
        100.0 * used.as_secs_f64() / IDLE.as_secs_f64(),
        "% of a core",
        1.0,
        "≤ 1 %",
    ));
    let mut row = Row::at_most(
        &format!(
            "watch: RSS of that client while idle (highest of {} s)",
            IDLE.as_secs()
        ),
        rss_peak as f64 / f64::from(1 << 20),
        "MiB",
        64.0,
        "≤ 64 MiB",
    );
    row.note = Some(format!(
        "measured once its rounds had settled (5 s without one); its peak over the first \
         round, which sent the {files} files: {:.1} MiB",
        first_peak as f64 / f64::from(1 << 20)
    ));
    rows.push(row);
    Ok(())
}

/// `plan.idle_watches` watching clients of empty folders (each its own process, QUIC
/// connection, session and `watch_space` stream): what the server holds for each, and
/// its CPU while nothing changes.
fn idle_server(
    bins: &Bins,
    plan: &Plan,
    server: &Server,
    work: &Path,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let count = plan.idle_watches;
    note(&format!("watch: {count} idle watching clients"));
    let users = (0..count.div_ceil(WATCHES_PER_USER))
        .map(|i| server.explain(Client::register(bins, server, &format!("idle{i}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = server.rss()?;
    let mut watches: Vec<Watching> = Vec::new();
    // A few at a time: the server admits 16 connections per address before login.
    for batch in (0..count).collect::<Vec<_>>().chunks(8) {
        let first = watches.len();
        for &i in batch {
            let dir = work.join(format!("watch-idle-{i}"));
            std::fs::create_dir_all(&dir)?;
            let user = &users[i / WATCHES_PER_USER];
            watches.push(Watching::spawn(user, &dir, &format!("/idle-{i}"))?);
        }
        for watch in &watches[first..] {
            server.explain(watch.wait_ready(CROSS_LIMIT))?;
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_held = server.rss()?;
    let cpu_before = server.cpu()?;
    std::thread::sleep(IDLE);
    let cpu_used = server.cpu()? - cpu_before;
    let mut row = Row::at_most(
        &format!("watch: server RSS per idle watching client ({count})"),
        rss_held.saturating_sub(rss_before) as f64 / count as f64 / 1024.0,
        "KiB each",
        64.0,
        "≤ 64 KiB",
    );
    row.note = Some(format!(
        "one QUIC connection, session and `watch_space` stream each; {:.1} MiB before, \
         {:.1} MiB with them; the server used {:.2} % of a core over {} s idle",
        rss_before as f64 / f64::from(1 << 20),
        rss_held as f64 / f64::from(1 << 20),
        100.0 * cpu_used.as_secs_f64() / IDLE.as_secs_f64(),
        IDLE.as_secs()
    ));
    rows.push(row);
    drop(watches);
    Ok(())
}

/// Copies the regular files of `from` into `to`, keeping the tree.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut stack = vec![from.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rel = dir.strip_prefix(from)?;
        std::fs::create_dir_all(to.join(rel))?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                std::fs::copy(entry.path(), to.join(rel).join(entry.file_name()))?;
            }
        }
    }
    Ok(())
}
