//! End to end: `vault sync`, `push` and `pull` through the real binaries — two clients of
//! one user syncing two directories with one remote folder (first sync, edits on each
//! side, an edit on both sides, deletes, edit against delete, rename), ignore rules,
//! `--dry-run`, one-way mirrors with `--delete`, and syncs interrupted by killing the
//! client and the server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vault_e2e::{Client, TestServer};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every regular file under `dir` (but `.vault-sync/`), relative path → contents.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(dir)
                .expect("under")
                .to_string_lossy()
                .into_owned();
            if rel == ".vault-sync" {
                continue;
            }
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

fn names(dir: &Path) -> Vec<String> {
    tree(dir).into_keys().collect()
}

/// Two clients of alice, each with its own local directory.
struct Pair {
    server: TestServer,
    a: Client,
    b: Client,
    dir_a: PathBuf,
    dir_b: PathBuf,
}

fn pair() -> Pair {
    let server = TestServer::start();
    let a = Client::new();
    a.register(&server, "alice", "alice@example.org");
    let (b, out) = Client::login_to(&server, "alice", vault_e2e::PASSWORD);
    out.ok();
    let dir_a = a.dir.path().join("A");
    let dir_b = b.dir.path().join("B");
    std::fs::create_dir_all(&dir_a).expect("A");
    std::fs::create_dir_all(&dir_b).expect("B");
    Pair {
        server,
        a,
        b,
        dir_a,
        dir_b,
    }
}

impl Pair {
    fn sync_a(&self) -> serde_json::Value {
        json(
            self.a
                .run(&["sync", s(&self.dir_a), "/shared", "--json"])
                .ok(),
        )
    }

    fn sync_b(&self) -> serde_json::Value {
        json(
            self.b
                .run(&["sync", s(&self.dir_b), "/shared", "--json"])
                .ok(),
        )
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_clients_sync_one_folder_through_every_rule() {
    let p = pair();
    write(&p.dir_a, "a.txt", "alpha");
    write(&p.dir_a, "sub/b.txt", "bravo");
    write(&p.dir_a, ".hidden", "hidden files are synced");
    write(&p.dir_a, "c.txt", "charlie");
    write(&p.dir_a, "d.txt", "delta");

    // First sync: A uploads everything, B downloads it.
    let first = p.sync_a();
    assert_eq!(first["uploaded"], 5, "{first}");
    assert_eq!(first["bytes"], 5 + 5 + 23 + 7 + 5, "{first}");
    let b_first = p.sync_b();
    assert_eq!(b_first["downloaded"], 5, "{b_first}");
    assert_eq!(tree(&p.dir_a), tree(&p.dir_b));
    // Nothing changed: nothing moves.
    let idle = p.sync_a();
    assert_eq!(
        (idle["uploaded"].as_u64(), idle["downloaded"].as_u64()),
        (Some(0), Some(0)),
        "{idle}"
    );

    // An edit on each side.
    write(&p.dir_a, "a.txt", "alpha, edited on A");
    write(&p.dir_b, "sub/b.txt", "bravo, edited on B");
    assert_eq!(p.sync_a()["uploaded"], 1);
    let b = p.sync_b();
    assert_eq!(
        (b["uploaded"].as_u64(), b["downloaded"].as_u64()),
        (Some(1), Some(1)),
        "{b}"
    );
    assert_eq!(p.sync_a()["downloaded"], 1);
    assert_eq!(tree(&p.dir_a), tree(&p.dir_b));
    assert_eq!(read(&p.dir_b, "a.txt"), "alpha, edited on A");
    assert_eq!(read(&p.dir_a, "sub/b.txt"), "bravo, edited on B");

    // An edit on both sides: both kept, the local one as a conflict copy.
    write(&p.dir_a, "a.txt", "A's version");
    write(&p.dir_b, "a.txt", "B's version, longer");
    p.sync_a();
    let conflict = p.sync_b();
    assert_eq!(conflict["conflicts"], 1, "{conflict}");
    let copy = conflict["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find_map(|a| a["conflict_copy"].as_str())
        .expect("a conflict copy")
        .to_owned();
    assert!(
        copy.starts_with("a (conflict ") && copy.ends_with(").txt"),
        "{copy}"
    );
    let host = hostname();
    assert!(copy.contains(&host), "{copy} names the host {host}");
    assert_eq!(read(&p.dir_b, "a.txt"), "A's version");
    assert_eq!(read(&p.dir_b, &copy), "B's version, longer");
    p.sync_a();
    assert_eq!(read(&p.dir_a, &copy), "B's version, longer", "nothing lost");
    assert_eq!(tree(&p.dir_a), tree(&p.dir_b));

    // A delete on one side: deleted on the other (remotely to the trash).
    std::fs::remove_file(p.dir_a.join("sub/b.txt")).expect("rm");
    assert_eq!(p.sync_a()["deleted"], 1);
    let trash = p.a.run(&["trash", "ls"]);
    assert!(trash.ok().contains("/shared/sub/b.txt"), "{}", trash.stdout);
    assert_eq!(p.sync_b()["deleted"], 1);
    assert!(!p.dir_b.join("sub/b.txt").exists());
    assert!(
        !p.dir_b.join("sub").exists(),
        "the emptied directory is removed"
    );
    assert!(
        tree(&p.dir_b.join(".vault-sync/trash"))
            .values()
            .any(|v| v == b"bravo, edited on B"),
        "the local deletion is kept in .vault-sync/trash"
    );

    // Edit against delete: the edit wins, whichever side it is on.
    write(&p.dir_a, "c.txt", "charlie, edited on A");
    std::fs::remove_file(p.dir_b.join("c.txt")).expect("rm");
    std::fs::remove_file(p.dir_a.join("d.txt")).expect("rm");
    write(&p.dir_b, "d.txt", "delta, edited on B");
    p.sync_a();
    p.sync_b();
    p.sync_a();
    assert_eq!(read(&p.dir_b, "c.txt"), "charlie, edited on A");
    assert_eq!(read(&p.dir_a, "d.txt"), "delta, edited on B");
    assert_eq!(tree(&p.dir_a), tree(&p.dir_b));

    // A rename goes across as a delete and an add.
    std::fs::create_dir_all(p.dir_a.join("new")).expect("mkdir");
    std::fs::rename(p.dir_a.join("c.txt"), p.dir_a.join("new/renamed.txt")).expect("mv");
    p.sync_a();
    p.sync_b();
    assert!(!p.dir_b.join("c.txt").exists());
    assert_eq!(read(&p.dir_b, "new/renamed.txt"), "charlie, edited on A");
    assert_eq!(tree(&p.dir_a), tree(&p.dir_b));

    // A rename on the server (vault mv) reaches both through the change feed.
    p.a.run(&["mv", "/shared/new", "/shared/moved"]).ok();
    p.sync_a();
    p.sync_b();
    assert_eq!(read(&p.dir_a, "moved/renamed.txt"), "charlie, edited on A");
    assert!(!p.dir_a.join("new").exists());
    assert_eq!(tree(&p.dir_a), tree(&p.dir_b));

    // The state is bound to its folder.
    p.a.run(&["sync", s(&p.dir_a), "/elsewhere"])
        .fails_with("this directory syncs with /shared");
    drop(p.server);
}

fn hostname() -> String {
    let out = std::process::Command::new("hostname")
        .output()
        .expect("hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn ignore_rules_and_dry_run() {
    let p = pair();
    write(&p.dir_a, ".vaultignore", "*.log\nbuild/\n");
    write(&p.dir_a, "keep.txt", "keep");
    write(&p.dir_a, "noise.log", "log");
    write(&p.dir_a, "build/out.o", "object");
    write(&p.dir_a, "tmp/scratch", "scratch");
    write(&p.dir_a, "docs/private.key", "secret");

    // A dry run changes nothing: no state, nothing on the server.
    let dry = p.a.run(&[
        "sync",
        s(&p.dir_a),
        "/shared",
        "--dry-run",
        "--exclude",
        "tmp",
    ]);
    let text = dry.ok();
    assert!(text.contains("would upload keep.txt"), "{text}");
    assert!(!text.contains("noise.log"), "{text}");
    assert!(
        !p.dir_a.join(".vault-sync").exists(),
        "no state after a dry run"
    );
    p.a.run(&["ls", "/shared"])
        .fails_with("no such file or directory");

    let args = [
        "sync",
        s(&p.dir_a),
        "/shared",
        "--exclude",
        "tmp",
        "--exclude",
        "*.key",
        "--json",
    ];
    let done = json(p.a.run(&args).ok());
    assert_eq!(done["uploaded"], 2, "{done}");
    let listed = p.a.run(&["ls", "-R", "/shared"]);
    let listed = listed.ok();
    assert!(
        listed.contains("keep.txt") && listed.contains(".vaultignore"),
        "{listed}"
    );
    for ignored in ["noise.log", "out.o", "scratch", "private.key"] {
        assert!(
            !listed.contains(ignored),
            "{ignored} was uploaded: {listed}"
        );
    }

    // The rules also keep remote files out: B has the same rules (synced .vaultignore
    // arrives on the first run, so they apply from the second).
    p.a.run(&["put", s(&p.dir_a.join("noise.log")), "/shared/remote.log"])
        .ok();
    p.sync_b();
    assert!(p.dir_b.join(".vaultignore").exists());
    std::fs::remove_file(p.dir_b.join("remote.log")).ok();
    let state = p.dir_b.join(".vault-sync/state.json");
    let b = p.sync_b();
    assert_eq!(b["deleted"], 0, "{b}");
    let listed = p.a.run(&["ls", "/shared"]);
    assert!(
        listed.ok().contains("remote.log"),
        "an ignored path is left alone remotely"
    );

    // A dry run after changes on both sides: reported, not done, state untouched.
    write(&p.dir_a, "keep.txt", "keep, changed");
    let again = json(p.a.run(&args).ok());
    assert_eq!(again["uploaded"], 1, "{again}");
    write(&p.dir_b, "fresh.txt", "new on B");
    let before = std::fs::read(&state).expect("state");
    let dry = json(
        p.b.run(&["sync", s(&p.dir_b), "/shared", "--dry-run", "--json"])
            .ok(),
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        (dry["uploaded"].as_u64(), dry["downloaded"].as_u64()),
        (Some(1), Some(1)),
        "{dry}"
    );
    assert_eq!(
        std::fs::read(&state).expect("state"),
        before,
        "state unchanged"
    );
    assert_eq!(read(&p.dir_b, "keep.txt"), "keep");
    let listed = p.a.run(&["ls", "/shared"]);
    assert!(!listed.ok().contains("fresh.txt"));
}

#[test]
fn push_and_pull_mirror_and_delete_extras() {
    let p = pair();
    write(&p.dir_a, "one.txt", "1");
    write(&p.dir_a, "dir/two.txt", "22");
    let pushed = json(p.a.run(&["push", s(&p.dir_a), "/mirror", "--json"]).ok());
    assert_eq!(pushed["uploaded"], 2, "{pushed}");
    for key in [
        "uploaded",
        "downloaded",
        "deleted",
        "conflicts",
        "bytes",
        "seconds",
    ] {
        assert!(pushed.get(key).is_some(), "{key} in {pushed}");
    }

    // An extra remote file survives a push, and goes with --delete.
    p.a.run(&["put", s(&p.dir_a.join("one.txt")), "/mirror/extra.txt"])
        .ok();
    let again = json(p.a.run(&["push", s(&p.dir_a), "/mirror", "--json"]).ok());
    assert_eq!(
        (again["uploaded"].as_u64(), again["deleted"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );
    let out = p.a.run(&["push", s(&p.dir_a), "/mirror", "--delete"]);
    assert!(
        out.ok().contains("deleted remote extra.txt"),
        "{}",
        out.stdout
    );
    assert!(!p.a.run(&["ls", "/mirror"]).ok().contains("extra.txt"));

    // Pull into a new directory; a local extra goes only with --delete, a local edit is
    // overwritten (and kept in the local trash).
    let target = p.dir_b.join("pulled");
    let pulled = json(p.b.run(&["pull", "/mirror", s(&target), "--json"]).ok());
    assert_eq!(pulled["downloaded"], 2, "{pulled}");
    assert_eq!(tree(&target), tree(&p.dir_a));
    write(&target, "local-extra.txt", "x");
    write(&target, "one.txt", "edited locally");
    let out = p.b.run(&["pull", "/mirror", s(&target)]);
    out.ok();
    assert!(target.join("local-extra.txt").exists());
    assert_eq!(read(&target, "one.txt"), "1");
    assert!(
        tree(&target.join(".vault-sync/trash"))
            .values()
            .any(|v| v == b"edited locally")
    );
    p.b.run(&["pull", "/mirror", s(&target), "--delete"]).ok();
    assert_eq!(names(&target), ["dir/two.txt", "one.txt"]);
}

#[test]
fn an_interrupted_sync_is_finished_by_the_next_run() {
    let mut p = pair();
    let count = 300;
    for i in 0..count {
        write(
            &p.dir_a,
            &format!("d{}/f{i:04}.bin", i % 7),
            &format!("{i}").repeat(2000 + i),
        );
    }
    let state = p.dir_a.join(".vault-sync/state.json");

    // Killed client (kill -9) in the middle of the run.
    let mut child = p.a.spawn(&["sync", s(&p.dir_a), "/big"]);
    wait_until("the sync to start", Duration::from_secs(60), || {
        state.exists()
    });
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("kill");
    child.wait().expect("wait");

    // Killed server in the middle of the next run.
    for i in 0..count / 2 {
        write(
            &p.dir_a,
            &format!("d{}/f{i:04}.bin", i % 7),
            "edited after the kill",
        );
    }
    let mut child = p.a.spawn(&["sync", s(&p.dir_a), "/big"]);
    std::thread::sleep(Duration::from_millis(400));
    p.server.kill_hard();
    // A dead server is noticed only after the connection's idle timeout: do not wait.
    child.kill().expect("kill");
    child.wait().expect("wait");
    p.server.restart(|_| {});
    let finished = json(p.a.run(&["sync", s(&p.dir_a), "/big", "--json"]).ok());
    assert!(
        finished["failed"].as_array().is_some_and(Vec::is_empty),
        "{finished}"
    );
    let idle = json(p.a.run(&["sync", s(&p.dir_a), "/big", "--json"]).ok());
    assert_eq!(
        (idle["uploaded"].as_u64(), idle["downloaded"].as_u64()),
        (Some(0), Some(0)),
        "{idle}"
    );
    assert_eq!(idle["conflicts"], 0, "{idle}");

    // The other client gets exactly the local tree.
    let odd: Vec<String> = names(&p.dir_a)
        .into_iter()
        .filter(|n| !n.ends_with("].bin") && n.contains(" "))
        .collect();
    assert!(
        odd.is_empty(),
        "no conflict copies of our own uploads: {odd:?}"
    );
    let b = json(p.b.run(&["sync", s(&p.dir_b), "/big", "--json"]).ok());
    assert_eq!(b["downloaded"], count, "{b}");
    eprintln!(
        "first sync of B: {count} files, {} bytes in {} s",
        b["bytes"], b["seconds"]
    );
    assert_eq!(tree(&p.dir_a), tree(&p.dir_b));
}

/// Deterministic bytes of `len`, different for each seed (binary, not text).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn hundreds_of_small_files_go_up_in_batches_and_come_down_byte_exact() {
    let p = pair();
    let count = 400u64;
    for i in 0..count {
        let rel = format!("d{}/e{}/f{i:04}.bin", i % 5, i % 3);
        let p2 = p.dir_a.join(&rel);
        std::fs::create_dir_all(p2.parent().expect("parent")).expect("mkdir");
        // 0 bytes to 16 KiB, and the largest size a batch takes.
        let len = match i {
            0 => 0,
            1 => 64 * 1024 - 16,
            _ => (i as usize * 977) % (16 * 1024) + 1,
        };
        std::fs::write(p2, bytes(len, i)).expect("write");
    }
    // One file too big for a batch goes alone, in the same run.
    std::fs::write(p.dir_a.join("big.bin"), bytes(64 * 1024 - 15, 999)).expect("write");
    let first = p.sync_a();
    assert_eq!(first["uploaded"], count + 1, "{first}");
    assert!(
        first["failed"].as_array().is_some_and(Vec::is_empty),
        "{first}"
    );

    // Batches: one revision per batch (each commit of up to 200 files), not per file.
    let quota = json(p.a.run(&["quota", "--json"]).ok());
    assert_eq!(quota["files"], count + 1, "{quota}");
    let revision = quota["revision"].as_u64().expect("revision");
    assert!(
        revision < 20,
        "{revision} revisions for {count} files: {quota}"
    );
    let fsck = p.server.admin(&["fsck"]);
    fsck.ok();

    // Nothing left to do on A; B gets exactly A's bytes.
    let idle = p.sync_a();
    assert_eq!(
        (idle["uploaded"].as_u64(), idle["downloaded"].as_u64()),
        (Some(0), Some(0)),
        "{idle}"
    );
    let b = p.sync_b();
    assert_eq!(b["downloaded"], count + 1, "{b}");
    assert_eq!(tree(&p.dir_a), tree(&p.dir_b));

    // Edits of a few small files go across in one small batch, and back.
    for i in [3u64, 150, 333] {
        let rel = format!("d{}/e{}/f{i:04}.bin", i % 5, i % 3);
        std::fs::write(p.dir_b.join(rel), bytes(5000 + i as usize, i + 7)).expect("write");
    }
    let pushed = p.sync_b();
    assert_eq!(pushed["uploaded"], 3, "{pushed}");
    let pulled = p.sync_a();
    assert_eq!(pulled["downloaded"], 3, "{pulled}");
    assert_eq!(tree(&p.dir_a), tree(&p.dir_b));
}

#[test]
fn files_over_the_quota_give_the_reason_once_and_their_code_in_json() {
    let p = pair();
    p.server.admin(&["user", "set-quota", "alice", "1MiB"]).ok();
    for name in ["a.bin", "b.bin", "c.bin", "d.bin"] {
        let bytes =
            vault_e2e::random_bytes(700 << 10, name.len() as u64 + name.as_bytes()[0] as u64);
        std::fs::write(p.dir_a.join(name), bytes).expect("write");
    }
    let out = p.a.run(&["sync", s(&p.dir_a), "/shared"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let reasons = out.stderr.matches("quota exceeded:").count();
    let refused: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("failed ") && l.contains("quota"))
        .collect();
    assert!(refused.len() >= 2, "{}", out.stderr);
    // Once in the list, once in the closing error line.
    assert_eq!(reasons, 2, "{}", out.stderr);
    assert!(
        refused[1..]
            .iter()
            .all(|l| l.ends_with(": quota_exceeded, as above")),
        "{}",
        out.stderr
    );

    let summary = json(
        p.a.run(&["sync", s(&p.dir_a), "/shared", "--json"])
            .stdout
            .as_str(),
    );
    let failed = summary["failed"].as_array().expect("failed");
    assert!(!failed.is_empty(), "{summary}");
    assert!(
        failed.iter().all(|f| f["code"] == "quota_exceeded"),
        "{summary}"
    );
}
