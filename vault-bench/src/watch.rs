//! The rows of `vault sync --watch`: two machines of one person each watching a folder
//! synced with one remote folder, on one fresh server. How long a file created, edited or
//! deleted in one folder takes to appear in the other (median; target 2 s); a tree of
//! small files unpacked at once in one folder, against a one-shot first sync of the same
//! tree (target ≥ 0.8 ×); and what a watching client costs while nothing changes, with
//! the small files under watch (target ≤ 1 % of a core, ≤ 64 MiB RSS).

use std::path::Path;
use std::process::{Child, Stdio};
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

fn note(what: &str) {
    eprintln!("vault-bench: {what}");
}

/// A running `vault sync LOCAL /watched --watch`, killed on drop.
struct Watching(Child);

impl Watching {
    fn start(client: &Client, dir: &Path) -> anyhow::Result<Watching> {
        let child = client
            .command(&["sync", path(dir)?, "/watched", "--watch"], None)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start vault sync --watch")?;
        // The first round is done once the state is saved.
        let state = dir.join(".vault-sync").join("state.json");
        wait_for("the first round", || state.exists())?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(Watching(child))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
    let server = Server::start(bins, &plan.limits)?;
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

    // Idle: nothing changes for a while; what do the watches cost?
    std::thread::sleep(Duration::from_secs(2));
    note(&format!(
        "watch: {} s idle with {} files under watch",
        IDLE.as_secs(),
        count_files(&dir_a)
    ));
    let before = crate::cpu::of_process(watch_a.pid())?;
    let server_before = server.cpu()?;
    std::thread::sleep(IDLE);
    let used = crate::cpu::of_process(watch_a.pid())? - before;
    let server_used = server.cpu()? - server_before;
    rows.push(Row::at_most(
        "watch: CPU of a watching client while nothing changes",
        100.0 * used.as_secs_f64() / IDLE.as_secs_f64(),
        "% of a core",
        1.0,
        "≤ 1 %",
    ));
    let rss = crate::procs::vm_hwm(watch_a.pid()).context("no VmHWM for the watch")?;
    let mut row = Row::at_most(
        "watch: peak RSS of a watching client",
        rss as f64 / f64::from(1 << 20),
        "MiB",
        64.0,
        "≤ 64 MiB",
    );
    row.note = Some(format!(
        "the server used {:.2} % of a core meanwhile",
        100.0 * server_used.as_secs_f64() / IDLE.as_secs_f64()
    ));
    rows.push(row);
    drop((watch_a, watch_b));
    server.stop()
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
