//! End to end: personal files through the real `vault`, `vault-server` and `vault-admin`
//! binaries — round trips at the chunk boundaries and of a tree, no plaintext on the
//! server, quota refusal, versions, restore and trash, mv, bad paths, two clients of one
//! user, resumed downloads and uploads (after kill -9 of the server), legacy import,
//! re-runs of interrupted `put -r`/`get -r` that continue into the same places, unchanged
//! files skipped, 255-byte names, synced folders put without their sync state.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vault_e2e::{Client, TestServer, random_bytes};

const MIB: usize = 1 << 20;

fn alice(server: &TestServer) -> Client {
    let client = Client::new();
    client.register(server, "alice", "alice@example.org");
    client
}

/// The bytes of a transfer's item that an earlier attempt left: resumed from a partial
/// upload or part file (format 1), or reused as chunks already there (format 2).
fn carried_over(item: &serde_json::Value) -> u64 {
    item["resumed_at"].as_u64().expect("resumed_at") + item["reused"].as_u64().expect("reused")
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Asserts that two trees hold the same files with the same bytes and mtimes.
fn assert_same_tree(expected: &Path, actual: &Path) {
    let rel = |root: &Path, files: Vec<PathBuf>| -> Vec<PathBuf> {
        files
            .into_iter()
            .map(|f| f.strip_prefix(root).expect("prefix").to_path_buf())
            .collect()
    };
    let want = rel(expected, files_under(expected));
    let got = rel(actual, files_under(actual));
    assert_eq!(want, got, "file lists differ");
    for f in &want {
        let (a, b) = (expected.join(f), actual.join(f));
        assert!(
            std::fs::read(&a).expect("read") == std::fs::read(&b).expect("read"),
            "{} differs",
            f.display()
        );
        let (ma, mb) = (
            std::fs::metadata(&a).expect("meta"),
            std::fs::metadata(&b).expect("meta"),
        );
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "mtime of {}",
            f.display()
        );
        assert_eq!(
            ma.mode() & 0o777,
            mb.mode() & 0o777,
            "mode of {}",
            f.display()
        );
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Each command's connection close reaches the server before the command exits, so a
/// script of commands never finds the server still holding the previous one: with one
/// connection allowed per address, commands run back to back all get in.
#[test]
fn commands_back_to_back_each_free_their_connection() {
    let server = TestServer::start_with("[limits]\nconnections_per_ip = 1\n");
    let client = alice(&server);
    for i in 0..10 {
        client.run(&["mkdir", &format!("/d{i}")]).ok();
    }
    let listing = client.run(&["ls", "/"]).ok().to_owned();
    assert_eq!(listing.lines().count(), 10, "{listing}");
}

#[test]
fn files_at_the_chunk_boundaries_and_a_tree_round_trip_exactly() {
    let server = TestServer::start();
    let client = alice(&server);
    let src = client.dir.path().join("src");
    std::fs::create_dir_all(src.join("sizes")).expect("mkdir");
    for (i, len) in [0, 1, MIB, MIB + 1, 20 * MIB + 12_345]
        .into_iter()
        .enumerate()
    {
        let path = src.join("sizes").join(format!("f{len}.bin"));
        std::fs::write(&path, random_bytes(len, i as u64)).expect("write");
    }
    // Each file on its own, under its own name in an existing directory.
    client.run(&["mkdir", "/sizes"]).ok();
    for f in files_under(&src.join("sizes")) {
        client.run(&["put", s(&f), "/sizes/"]).ok();
    }
    let listed = json(client.run(&["ls", "/sizes", "-l", "--json"]).ok());
    let sizes: Vec<u64> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["size"].as_u64().expect("size"))
        .collect();
    assert_eq!(sizes.len(), 5, "{listed}");
    assert!(sizes.contains(&(20 * MIB as u64 + 12_345)), "{sizes:?}");
    let out = client.dir.path().join("out");
    client.run(&["get", "-r", "/sizes", s(&out)]).ok();
    assert_same_tree(&src.join("sizes"), &out);
    // A single file to a new local name.
    let one = client.dir.path().join("one.bin");
    client.run(&["get", "/sizes/f1.bin", s(&one)]).ok();
    assert_eq!(std::fs::read(&one).expect("one"), random_bytes(1, 1));

    // A tree with nested and empty directories, in one put -r / get -r.
    let tree = src.join("tree");
    std::fs::create_dir_all(tree.join("a/b/c")).expect("mkdir");
    std::fs::create_dir_all(tree.join("empty")).expect("mkdir");
    std::fs::write(tree.join("top.txt"), b"top").expect("write");
    std::fs::write(tree.join("a/x.bin"), random_bytes(3 * MIB + 7, 9)).expect("write");
    std::fs::write(tree.join("a/b/c/deep.txt"), b"deep").expect("write");
    for i in 0..6 {
        std::fs::write(
            tree.join("a/b").join(format!("small{i}")),
            random_bytes(1000 * i, 20 + i as u64),
        )
        .expect("write");
    }
    let summary = json(client.run(&["put", "-r", s(&tree), "/", "--json"]).ok());
    assert_eq!(summary["files"], 9, "{summary}");
    let names = client.run(&["ls", "-R", "/tree"]).ok().to_string();
    for want in ["a/", "a/b/c/deep.txt", "empty/", "top.txt"] {
        assert!(names.lines().any(|l| l == want), "{want} in {names}");
    }
    // `ls` asks for names alone, `ls -l` for versions too: the same entries either way.
    let long = client.run(&["ls", "-l", "-R", "/tree"]).ok().to_string();
    assert_eq!(long.lines().count(), names.lines().count(), "{long}");
    for (long, name) in long.lines().zip(names.lines()) {
        assert!(long.ends_with(&format!("  {name}")), "{long} for {name}");
    }
    assert!(
        long.lines()
            .any(|l| l.starts_with("       4 B") && l.ends_with("v1  a/b/c/deep.txt")),
        "{long}"
    );
    let back = client.dir.path().join("back/");
    client.run(&["get", "-r", "/tree", s(&back)]).ok();
    assert_same_tree(&tree, &back.join("tree"));
    assert!(back.join("tree/empty").is_dir());
    // A directory without -r is refused, either way.
    client.run(&["put", s(&tree), "/t2"]).fails_with("-r");
    client.run(&["get", "/tree", s(&back)]).fails_with("-r");
    // du counts the plaintext bytes.
    let du = json(client.run(&["du", "/tree", "--json"]).ok());
    assert_eq!(du["files"], 9, "{du}");
    assert_eq!(du["bytes"], 3 + 3 * MIB as u64 + 7 + 4 + 15_000, "{du}");
}

#[test]
fn no_plaintext_marker_reaches_the_server_data_dir() {
    let server = TestServer::start();
    let client = alice(&server);
    let name_marker = "NAMEMARKER7qz";
    let content_marker = b"CONTENTMARKER5xw";
    let dir = client.dir.path().join(format!("dir-{name_marker}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut content = random_bytes(2 * MIB, 3);
    for at in [0, MIB - 5, 2 * MIB - 40] {
        content[at..at + content_marker.len()].copy_from_slice(content_marker);
    }
    let file = dir.join(format!("{name_marker}.txt"));
    std::fs::write(&file, &content).expect("write");
    client.run(&["put", "-r", s(&dir), "/"]).ok();
    client
        .run(&[
            "put",
            s(&file),
            &format!("/{name_marker}/copy-{name_marker}"),
        ])
        .ok();
    let back = client.dir.path().join("back.txt");
    client
        .run(&[
            "get",
            &format!("/dir-{name_marker}/{name_marker}.txt"),
            s(&back),
        ])
        .ok();
    assert_eq!(std::fs::read(&back).expect("back"), content);
    let listed = client.run(&["ls", "-R"]).ok().to_string();
    assert!(listed.contains(name_marker), "{listed}");
    let data = server.data_dir();
    let all = files_under(&data);
    assert!(all.len() > 3, "{all:?}");
    // What the server keeps: its directory, and the blobs wherever they are.
    let mut kept: Vec<(PathBuf, Vec<u8>)> = all
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(&f).expect("read");
            (f, bytes)
        })
        .collect();
    if server.on_s3() {
        for blob in server.blob_store().list().expect("list blobs") {
            let name = PathBuf::from(format!("s3:{}", blob.id));
            kept.push((name, server.blob_bytes(&blob.id)));
        }
    }
    for (f, bytes) in kept {
        for marker in [name_marker.as_bytes(), content_marker.as_slice()] {
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker),
                "{} contains {:?}",
                f.display(),
                String::from_utf8_lossy(marker)
            );
        }
        assert!(
            !f.to_string_lossy().contains(name_marker),
            "{}",
            f.display()
        );
    }
}

#[test]
fn a_put_over_quota_is_refused_and_leaves_nothing_visible() {
    let server = TestServer::start();
    let client = alice(&server);
    let small = client.dir.path().join("small.bin");
    std::fs::write(&small, random_bytes(100_000, 1)).expect("write");
    client.run(&["put", s(&small), "/small.bin"]).ok();
    server.admin(&["user", "set-quota", "alice", "1MiB"]).ok();
    let before = json(client.run(&["quota", "--json"]).ok());
    assert_eq!(before["quota_bytes"], MIB as u64, "{before}");
    let big = client.dir.path().join("big.bin");
    std::fs::write(&big, random_bytes(2 * MIB, 2)).expect("write");
    let err = client
        .run(&["put", s(&big), "/big.bin"])
        .fails_with("quota")
        .to_string();
    assert!(err.contains("uses"), "says used and allowed: {err}");
    let names = client.run(&["ls"]).ok().to_string();
    assert_eq!(names.trim(), "small.bin");
    let after = json(client.run(&["quota", "--json"]).ok());
    assert_eq!(after["used_bytes"], before["used_bytes"], "{after}");
    client
        .run(&["get", "/big.bin", s(&client.dir.path().join("x"))])
        .fails_with("no such");
    // Raised again, the same command goes through.
    server.admin(&["user", "set-quota", "alice", "10MiB"]).ok();
    client.run(&["put", s(&big), "/big.bin"]).ok();
}

#[test]
fn versions_restore_and_the_trash() {
    let server = TestServer::start();
    let client = alice(&server);
    let local = client.dir.path().join("notes.txt");
    let back = client.dir.path().join("back.txt");
    for text in ["first", "second", "third"] {
        std::fs::write(&local, text).expect("write");
        client.run(&["put", s(&local), "/docs/notes.txt"]).ok();
    }
    let v = json(client.run(&["versions", "/docs/notes.txt", "--json"]).ok());
    assert_eq!(v["current"], 3, "{v}");
    assert_eq!(v["versions"].as_array().expect("list").len(), 3, "{v}");
    // Default: the version before the current one.
    client.run(&["restore", "/docs/notes.txt"]).ok();
    client.run(&["get", "/docs/notes.txt", s(&back)]).ok();
    assert_eq!(std::fs::read_to_string(&back).expect("back"), "second");
    client
        .run(&["restore", "/docs/notes.txt", "--version", "1"])
        .ok();
    client.run(&["get", "/docs/notes.txt", s(&back)]).ok();
    assert_eq!(std::fs::read_to_string(&back).expect("back"), "first");
    client
        .run(&["restore", "/docs/notes.txt", "--version", "9"])
        .fails_with("no version 9");
    let ls = json(client.run(&["ls", "/docs", "--json"]).ok());
    assert_eq!(ls[0]["versions"], 3, "{ls}");

    // rm → trash → restore.
    client.run(&["rm", "/docs/notes.txt"]).ok();
    assert_eq!(client.run(&["ls", "/docs"]).ok().trim(), "");
    client
        .run(&["get", "/docs/notes.txt", s(&back)])
        .fails_with("no such");
    let trash = json(client.run(&["trash", "ls", "--json"]).ok());
    assert_eq!(trash[0]["path"], "/docs/notes.txt", "{trash}");
    client.run(&["trash", "restore", "/docs/notes.txt"]).ok();
    client.run(&["get", "/docs/notes.txt", s(&back)]).ok();
    assert_eq!(std::fs::read_to_string(&back).expect("back"), "first");

    // A directory needs -r; then the trash is emptied for good.
    client.run(&["rm", "/docs"]).fails_with("rm -r");
    client.run(&["rm", "-r", "/docs"]).ok();
    assert_eq!(client.run(&["ls"]).ok().trim(), "");
    client.run(&["trash", "empty"]).fails_with("--yes");
    client.run(&["trash", "empty", "--yes"]).ok();
    let trash = json(client.run(&["trash", "ls", "--json"]).ok());
    assert_eq!(trash.as_array().expect("list").len(), 0, "{trash}");
    client
        .run(&["trash", "restore", "/docs"])
        .fails_with("not in the trash");
}

#[test]
fn trash_ls_shows_ids_and_restore_id_brings_back_an_older_deletion() {
    let server = TestServer::start();
    let client = alice(&server);
    let local = client.dir.path().join("a.txt");
    for text in ["one", "two"] {
        std::fs::write(&local, text).expect("write");
        client.run(&["put", s(&local), "/a.txt"]).ok();
        client.run(&["rm", "/a.txt"]).ok();
    }
    let listed = client.run(&["trash", "ls"]);
    let lines: Vec<&str> = listed.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{}", listed.stdout);
    let trash = json(client.run(&["trash", "ls", "--json"]).ok());
    let (newest, oldest) = (&trash[0]["trash_id"], &trash[1]["trash_id"]);
    assert!(
        lines[0].starts_with(&format!("id {newest} ")),
        "{}",
        listed.stdout
    );
    assert!(
        lines[1].starts_with(&format!("id {oldest} ")),
        "{}",
        listed.stdout
    );

    // By path: the newest deletion, and the message says there is another.
    let out = client.run(&["trash", "restore", "/a.txt"]);
    assert!(
        out.ok().contains("the newest of its 2 deletions"),
        "{}",
        out.stdout
    );
    let back = client.dir.path().join("back.txt");
    client.run(&["get", "/a.txt", s(&back)]).ok();
    assert_eq!(std::fs::read_to_string(&back).expect("back"), "two");

    // By id: the older one, once the path is free again.
    client.run(&["rm", "/a.txt"]).ok();
    let oldest = oldest.to_string();
    client
        .run(&["trash", "restore", "--id", &oldest, "/b.txt"])
        .fails_with("is of /a.txt, not /b.txt");
    client
        .run(&["trash", "restore", "--id", "999999"])
        .fails_with("no deletion with id 999999");
    let out = client.run(&["trash", "restore", "--id", &oldest]);
    assert_eq!(out.ok(), "Restored /a.txt from the trash.\n");
    client.run(&["get", "/a.txt", s(&back)]).ok();
    assert_eq!(std::fs::read_to_string(&back).expect("back"), "one");
    let left = json(client.run(&["trash", "ls", "--json"]).ok());
    assert_eq!(left.as_array().expect("list").len(), 1, "{left}");
}

#[test]
fn mv_renames_files_and_moves_directories_with_everything_in_them() {
    let server = TestServer::start();
    let client = alice(&server);
    let tree = client.dir.path().join("proj");
    std::fs::create_dir_all(tree.join("src/deep")).expect("mkdir");
    std::fs::write(tree.join("README"), b"readme").expect("write");
    std::fs::write(tree.join("src/main.rs"), b"fn main() {}").expect("write");
    std::fs::write(tree.join("src/deep/x.bin"), random_bytes(MIB + 3, 4)).expect("write");
    client.run(&["put", "-r", s(&tree), "/"]).ok();
    client.run(&["mv", "/proj/README", "/proj/README.md"]).ok();
    client.run(&["mkdir", "/archive/2026"]).ok();
    client.run(&["mv", "/proj", "/archive/2026"]).ok();
    assert_eq!(client.run(&["ls"]).ok().trim(), "archive/");
    let names = client.run(&["ls", "-R", "/archive"]).ok().to_string();
    for want in [
        "2026/proj/README.md",
        "2026/proj/src/deep/x.bin",
        "2026/proj/src/main.rs",
    ] {
        assert!(names.lines().any(|l| l == want), "{want} in {names}");
    }
    let out = client.dir.path().join("out");
    client
        .run(&["get", "-r", "/archive/2026/proj", s(&out)])
        .ok();
    std::fs::rename(tree.join("README"), tree.join("README.md")).expect("rename");
    assert_eq!(std::fs::read(out.join("README.md")).expect("r"), b"readme");
    assert_eq!(
        std::fs::read(out.join("src/deep/x.bin")).expect("x"),
        random_bytes(MIB + 3, 4)
    );
    client
        .run(&["mv", "/archive", "/archive/2026/inside"])
        .fails_with("into itself");
    client.run(&["mv", "/nothing", "/x"]).fails_with("no such");
}

#[test]
fn bad_remote_paths_are_refused_with_the_bad_part_named() {
    let server = TestServer::start();
    let client = alice(&server);
    let long = "n".repeat(256);
    for (path, needle) in [
        ("/a/../b", "segment 2"),
        ("/a//b", "segment 2"),
        ("./x", "segment 1"),
        (&format!("/ok/{long}"), "255"),
    ] {
        client.run(&["mkdir", path]).fails_with(needle);
        client.run(&["ls", path]).fails_with(needle);
    }
    let local = client.dir.path().join("f");
    std::fs::write(&local, b"x").expect("write");
    client
        .run(&["put", s(&local), "/a/../f"])
        .fails_with("segment 2");
    client
        .run(&["get", "/a/./f", s(&local)])
        .fails_with("segment 2");
    client.run(&["mv", "/f", "/x/.."]).fails_with("segment 2");
    // Group spaces: the server does not know the group.
    client.run(&["ls", "@team/a"]).fails_with("team");
    assert_eq!(client.run(&["ls"]).ok().trim(), "");
}

#[test]
fn two_clients_of_one_user_see_each_others_files() {
    let server = TestServer::start();
    let first = alice(&server);
    let (second, out) = Client::login_to(&server, "alice", vault_e2e::PASSWORD);
    out.ok();
    let a = first.dir.path().join("from-first.txt");
    std::fs::write(&a, b"hello from the first").expect("write");
    first.run(&["put", s(&a), "/shared/"]).ok();
    assert_eq!(second.run(&["ls", "/shared"]).ok().trim(), "from-first.txt");
    let got = second.dir.path().join("got.txt");
    second.run(&["get", "/shared/from-first.txt", s(&got)]).ok();
    assert_eq!(std::fs::read(&got).expect("got"), b"hello from the first");
    let b = second.dir.path().join("from-second.txt");
    std::fs::write(&b, b"and from the second").expect("write");
    second.run(&["put", s(&b), "/shared/"]).ok();
    let names = first.run(&["ls", "/shared"]).ok().to_string();
    assert_eq!(names, "from-first.txt\nfrom-second.txt\n");
}

#[test]
fn a_client_that_meets_the_request_rate_limit_waits_and_finishes() {
    // About 60 requests (register; the put goes in one batch, two requests; then a listing
    // and a download per file) against 5 per second: the 28 requests of the get are over
    // the limit unless it takes more than 4.6 s, however loaded the machine is.
    let server = TestServer::start_with("[limits]\nrequests_per_second = 5\nrequest_burst = 5\n");
    let alice = alice(&server);
    let tree = alice.dir.path().join("many");
    std::fs::create_dir(&tree).expect("mkdir");
    for i in 0..25 {
        std::fs::write(tree.join(format!("f{i:02}.txt")), format!("file {i}")).expect("write");
    }
    alice.run(&["put", "-r", s(&tree), "/"]).ok();
    let listed = alice.run(&["ls", "/many"]).ok().lines().count();
    assert_eq!(listed, 25);
    let back = alice.dir.path().join("back");
    std::fs::create_dir(&back).expect("mkdir");
    alice.run(&["get", "-r", "/many", s(&back)]).ok();
    assert_same_tree(&tree, &back.join("many"));
    assert!(
        server.log().contains("result=\"throttled\""),
        "the limit was met (else this test shows nothing)"
    );
}

#[test]
fn an_interrupted_download_resumes_from_its_part_file() {
    let server = TestServer::start();
    let client = alice(&server);
    let content = random_bytes(12 * MIB + 99, 5);
    let local = client.dir.path().join("big.bin");
    std::fs::write(&local, &content).expect("write");
    client.run(&["put", s(&local), "/big.bin"]).ok();
    let dest_dir = client.dir.path().join("dl");
    std::fs::create_dir_all(&dest_dir).expect("mkdir");
    let dest = dest_dir.join("big.bin");
    let part_dir = dest_dir.join(".vault-part");
    let mut child = client.spawn(&["get", "--bwlimit", "2MiB", "/big.bin", s(&dest)]);
    wait_until("a part file of 7 MiB", Duration::from_secs(60), || {
        part_file_size(&part_dir) >= 7 * MIB as u64
    });
    child.kill().expect("kill");
    child.wait().expect("wait");
    let kept = part_file_size(&part_dir);
    assert!(
        !dest.exists(),
        "no partial file is visible under the real name"
    );
    let summary = json(client.run(&["get", "/big.bin", s(&dest), "--json"]).ok());
    let resumed = carried_over(&summary["items"][0]);
    assert!(
        resumed >= kept - CUT_CHUNK,
        "{kept} bytes were kept: {summary}"
    );
    assert!(
        std::fs::read(&dest).expect("dest") == content,
        "bytes differ"
    );
    assert!(!part_dir.exists(), "the part file and its folder are gone");
}

/// What a resumed download of a large file (format 2) may fetch again of its part file:
/// every chunk wholly in it is taken from it, only the last one, cut off, is not, and a
/// chunk is at most 4 MiB. Where the cuts fall depends on the account's random key.
const CUT_CHUNK: u64 = 4 * MIB as u64;

/// The size of the largest part file in a `.vault-part` folder (0 when there is none).
fn part_file_size(folder: &Path) -> u64 {
    std::fs::read_dir(folder).map_or(0, |d| {
        d.flatten()
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| e.metadata().ok().map(|m| m.len()))
            .max()
            .unwrap_or(0)
    })
}

#[test]
fn an_upload_survives_kill_9_of_the_server_and_resumes() {
    let mut server = TestServer::start();
    let client = alice(&server);
    let content = random_bytes(16 * MIB + 5, 6);
    let local = client.dir.path().join("big.bin");
    std::fs::write(&local, &content).expect("write");
    let mut child = client.spawn(&["put", "--bwlimit", "3MiB", s(&local), "/big.bin"]);
    wait_until("3 MiB on the server", Duration::from_secs(60), || {
        server.upload_bytes() >= 3 * MIB as u64
    });
    server.kill_hard();
    child.kill().expect("kill client");
    child.wait().expect("wait");
    server.restart(|_| {});
    assert_eq!(
        client.run(&["ls"]).ok().trim(),
        "",
        "nothing visible before commit"
    );
    let summary = json(client.run(&["put", s(&local), "/big.bin", "--json"]).ok());
    let resumed = carried_over(&summary["items"][0]);
    assert!(resumed >= MIB as u64, "resumed, not restarted: {summary}");
    assert_eq!(summary["items"][0]["version"], 1, "{summary}");
    let back = client.dir.path().join("back.bin");
    client.run(&["get", "/big.bin", s(&back)]).ok();
    assert!(
        std::fs::read(&back).expect("back") == content,
        "bytes differ"
    );
    let left = records_left(&client);
    assert!(left.is_empty(), "records left after the commit: {left:?}");
}

/// Every file under the client's `uploads/` (resume records, and the records of uploads
/// being opened in `batches/`).
fn records_left(client: &Client) -> Vec<PathBuf> {
    let mut left = Vec::new();
    let mut dirs = vec![client.state_dir().join("uploads")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(entry.path()),
                Ok(_) => left.push(entry.path()),
                Err(_) => {}
            }
        }
    }
    left
}

/// `openssl enc` with DES (OpenSSL 3 keeps it in the legacy provider).
fn openssl_des(mode: &str, input: &Path, output: &Path) {
    let mut cmd = Command::new("openssl");
    cmd.args(["enc", &format!("-des-{mode}"), "-K", "0123456789abcdef"]);
    if mode == "cbc" {
        cmd.args(["-iv", "0000000000000000"]);
    }
    let status = cmd
        .args(["-provider", "legacy", "-provider", "default", "-in"])
        .arg(input)
        .arg("-out")
        .arg(output)
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl enc -des-{mode} failed");
}

#[test]
fn import_legacy_reads_files_made_by_openssl() {
    let server = TestServer::start();
    let client = alice(&server);
    let plain = client.dir.path().join("old.txt");
    let mut content = b"a file from the old netdisk\n".repeat(5000);
    content.extend_from_slice(b"tail");
    std::fs::write(&plain, &content).expect("write");
    for mode in ["cbc", "ecb"] {
        let enc = client.dir.path().join(format!("old.{mode}.des"));
        openssl_des(mode, &plain, &enc);
        client
            .run(&[
                "import-legacy",
                "--des-key",
                "0123456789abcdef",
                "--mode",
                mode,
                s(&enc),
                &format!("/legacy/{mode}.txt"),
            ])
            .ok();
        let back = client.dir.path().join(format!("back.{mode}"));
        client
            .run(&["get", &format!("/legacy/{mode}.txt"), s(&back)])
            .ok();
        assert!(
            std::fs::read(&back).expect("back") == content,
            "{mode} differs"
        );
    }
    // A wrong key: bad padding, nothing stored, no temporary file left.
    let enc = client.dir.path().join("old.cbc.des");
    client
        .run(&[
            "import-legacy",
            "--des-key",
            "fedcba9876543210",
            s(&enc),
            "/legacy/wrong.txt",
        ])
        .fails_with("padding");
    let names = client.run(&["ls", "/legacy"]).ok().to_string();
    assert_eq!(names, "cbc.txt\necb.txt\n");
    let tmp = client.state_dir().join("tmp");
    assert_eq!(std::fs::read_dir(&tmp).map_or(0, |d| d.count()), 0);
    client
        .run(&["import-legacy", "--des-key", "0123", s(&enc), "/x"])
        .fails_with("DES key");
}

#[test]
fn put_r_of_many_small_files_goes_in_batches() {
    let server = TestServer::start();
    let client = alice(&server);
    let tree = client.dir.path().join("small");
    for i in 0..250 {
        let dir = tree.join(format!("d{}", i % 4));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("f{i}")), random_bytes(i * 61, i as u64)).expect("write");
    }
    // And one that is not small.
    std::fs::write(tree.join("big"), random_bytes(MIB + 3, 77)).expect("write");
    let summary = json(client.run(&["put", "-r", s(&tree), "/", "--json"]).ok());
    assert_eq!(summary["files"], 251, "{summary}");
    let quota = json(client.run(&["quota", "--json"]).ok());
    assert_eq!(quota["files"], 251, "{quota}");
    // mkdir of the tree's directories, one commit per batch and one for the big file.
    let revision = quota["revision"].as_u64().expect("revision");
    assert!(revision < 20, "{revision} revisions: {quota}");
    let back = client.dir.path().join("back/");
    client.run(&["get", "-r", "/small", s(&back)]).ok();
    assert_same_tree(&tree, &back.join("small"));
    server.admin(&["fsck"]).ok();
}

/// Polls `done` every few milliseconds for up to `limit`; whether it came true.
fn came_true(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// Every entry under remote `dir` (`ls -l -R --json`): path below it, kind, plaintext
/// size and number of versions, sorted.
fn remote_tree(client: &Client, dir: &str) -> Vec<(String, String, u64, u64)> {
    let listed = json(client.run(&["ls", "-l", "-R", dir, "--json"]).ok());
    let mut out: Vec<_> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|e| {
            let path = e["path"].as_str().expect("path");
            (
                path.strip_prefix(dir).expect("under dir").to_owned(),
                e["kind"].as_str().expect("kind").to_owned(),
                e["size"].as_u64().expect("size"),
                e["versions"].as_u64().expect("versions"),
            )
        })
        .collect();
    out.sort();
    out
}

/// The upload ids batches noted as open in the client's records.
fn noted_batch_uploads(records: &Path) -> Vec<i64> {
    let Ok(dir) = std::fs::read_dir(records) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|text| serde_json::from_slice::<serde_json::Value>(&text).ok())
        .flat_map(|record| {
            record["upload_ids"]
                .as_array()
                .map(|ids| ids.iter().filter_map(|i| i.as_i64()).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect()
}

/// Uploads the server holds open (`vault-admin stats`).
fn uploads_open(server: &TestServer) -> u64 {
    json(server.admin(&["stats", "--json"]).ok())["uploads_in_progress"]
        .as_u64()
        .expect("uploads_in_progress")
}

fn kill(mut child: std::process::Child) {
    child.kill().expect("kill vault");
    child.wait().expect("wait");
}

/// A tree of one large file and many small ones (several batches), nested and empty
/// directories.
fn resumable_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    std::fs::create_dir_all(root.join("empty")).expect("mkdir");
    std::fs::write(root.join("big.bin"), random_bytes(24 * MIB + 5, 40)).expect("write");
    std::fs::write(root.join("small.txt"), b"small").expect("write");
    std::fs::write(root.join("sub/deeper/x.txt"), b"deep").expect("write");
    for i in 0..300 {
        let data = random_bytes(100 + i * 7, 100 + i as u64);
        std::fs::write(root.join("sub").join(format!("t{i:03}")), data).expect("write");
    }
    for i in 0..20 {
        let data = random_bytes(40_000 + i, 500 + i as u64);
        std::fs::write(root.join(format!("m{i:02}.bin")), data).expect("write");
    }
}

#[test]
fn a_rerun_of_an_interrupted_put_r_continues_into_the_same_places() {
    let server = TestServer::start();
    let client = alice(&server);
    let tree = client.dir.path().join("resum");
    resumable_tree(&tree);
    let args = ["put", "-r", "--bwlimit", "4MiB", s(&tree), "/resumX"];
    let batches = client.state_dir().join("uploads").join("batches");
    let not_nested = |when: &str| {
        assert_eq!(client.run(&["ls", "/"]).ok(), "resumX/\n", "{when}");
        let names = client.run(&["ls", "/resumX"]).ok().to_string();
        assert!(!names.lines().any(|l| l == "resum/"), "{when}: {names}");
    };

    // 1: while a batch of small files is open on the server (if the poll sees one).
    let child = client.spawn(&args);
    came_true(Duration::from_secs(30), || {
        !noted_batch_uploads(&batches).is_empty()
    });
    kill(child);
    // 2: in the middle of the large file.
    let child = client.spawn(&args);
    wait_until("4 MiB of the large file", Duration::from_secs(60), || {
        server.upload_bytes() >= 4 * MIB as u64
    });
    kill(child);
    not_nested("after the second kill");
    assert!(
        uploads_open(&server) >= 1,
        "the large file's upload is open"
    );
    // 3: further into it, after resuming it.
    let child = client.spawn(&args);
    wait_until("12 MiB of the large file", Duration::from_secs(60), || {
        server.upload_bytes() >= 12 * MIB as u64
    });
    kill(child);
    not_nested("after the third kill");

    // The same command again finishes the job: nothing twice, the large file resumed.
    let done = json(client.run(&[&args[..], &["--json"]].concat()).ok());
    let counts = |v: &serde_json::Value| {
        (
            v["files"].clone(),
            v["uploaded"].clone(),
            v["unchanged"].clone(),
        )
    };
    assert_eq!(done["files"], 323, "{:?}", counts(&done));
    assert!(
        done["unchanged"].as_u64().expect("unchanged") > 0,
        "{:?}",
        counts(&done)
    );
    let items = done["items"].as_array().expect("items");
    let big = items
        .iter()
        .find(|i| i["remote"] == "/resumX/big.bin")
        .expect("big.bin");
    assert_eq!(big["unchanged"], false, "{big}");
    assert!(carried_over(big) >= 8 * MIB as u64, "{big}");
    not_nested("after the run that finished");
    // And once more, after it finished: it converges on the same tree.
    let again = json(client.run(&[&args[..], &["--json"]].concat()).ok());
    assert_eq!(counts(&again), (323.into(), 0.into(), 323.into()));
    let text = client.run(&args).ok().to_string();
    assert!(text.contains("323 files unchanged, skipped"), "{text}");
    not_nested("after running it again");

    // The remote tree is what one clean run makes: same entries, each file once.
    client.run(&["put", "-r", s(&tree), "/clean"]).ok();
    let resumed = remote_tree(&client, "/resumX");
    let clean = remote_tree(&client, "/clean");
    let differ: Vec<_> = resumed.iter().filter(|e| !clean.contains(e)).collect();
    assert!(
        differ.is_empty() && resumed.len() == clean.len(),
        "differ from a clean run: {differ:?}"
    );
    assert!(
        resumed
            .iter()
            .all(|(_, kind, _, versions)| kind == "dir" || *versions == 1)
    );
    let back = client.dir.path().join("back");
    client.run(&["get", "-r", "/resumX", s(&back)]).ok();
    assert_same_tree(&tree, &back);
    assert!(back.join("empty").is_dir());

    // Nothing the killed runs opened is left open on the server.
    assert_eq!(server.open_uploads(), [], "uploads left open");
    let records = records_left(&client);
    assert!(records.is_empty(), "records left: {records:?}");
    server.admin(&["fsck"]).ok();

    // Another command into the same folder is not a re-run: it goes inside, as cp does.
    let other = client.dir.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("o.txt"), b"o").expect("write");
    client.run(&["put", "-r", s(&other), "/resumX"]).ok();
    assert_eq!(client.run(&["ls", "/resumX/other"]).ok(), "o.txt\n");
}

#[test]
fn an_unchanged_file_is_not_uploaded_again() {
    let server = TestServer::start();
    let client = alice(&server);
    let notes = client.dir.path().join("notes.txt");
    std::fs::write(&notes, b"the same words").expect("write");
    client.run(&["put", s(&notes), "/notes.txt"]).ok();
    let out = client
        .run(&["put", s(&notes), "/notes.txt"])
        .ok()
        .to_string();
    assert_eq!(out, "/notes.txt is unchanged (version 1), skipped.\n");
    // A new mtime with the same contents is still the same file.
    std::fs::File::options()
        .write(true)
        .open(&notes)
        .and_then(|f| f.set_modified(std::time::SystemTime::now() - Duration::from_secs(999)))
        .expect("touch");
    let summary = json(client.run(&["put", s(&notes), "/", "--json"]).ok());
    assert_eq!(summary["uploaded"], 0, "{summary}");
    assert_eq!(summary["unchanged"], 1, "{summary}");
    assert_eq!(summary["items"][0]["unchanged"], true, "{summary}");
    assert_eq!(summary["items"][0]["version"], 1, "{summary}");

    // A file too large for a batch: the same, then one byte changed at the same size.
    let big = client.dir.path().join("big.bin");
    let mut content = random_bytes(2 * MIB + 3, 41);
    std::fs::write(&big, &content).expect("write");
    client.run(&["put", s(&big), "/big.bin"]).ok();
    let again = client.run(&["put", s(&big), "/big.bin"]).ok().to_string();
    assert!(again.contains("unchanged"), "{again}");
    content[MIB + 1] ^= 0x40;
    std::fs::write(&big, &content).expect("write");
    let changed = client.run(&["put", s(&big), "/big.bin"]).ok().to_string();
    assert!(changed.contains("(version 2)"), "{changed}");

    // A tree: the second run sends nothing.
    let tree = client.dir.path().join("tree");
    std::fs::create_dir_all(tree.join("d")).expect("mkdir");
    std::fs::write(tree.join("a.txt"), b"a").expect("write");
    std::fs::write(tree.join("d/b.bin"), random_bytes(MIB + 9, 42)).expect("write");
    client.run(&["put", "-r", s(&tree), "/"]).ok();
    let rerun = client.run(&["put", "-r", s(&tree), "/"]).ok().to_string();
    assert_eq!(
        rerun,
        "Nothing to upload to /: 2 files unchanged, skipped.\n"
    );
    std::fs::write(tree.join("a.txt"), b"A").expect("write");
    let one = json(client.run(&["put", "-r", s(&tree), "/", "--json"]).ok());
    assert_eq!(
        (one["uploaded"].as_u64(), one["unchanged"].as_u64()),
        (Some(1), Some(1))
    );

    // Many sources into a folder (looked up by one listing of it, not one by one).
    let many: Vec<PathBuf> = (0..10)
        .map(|i| {
            let f = client.dir.path().join(format!("many{i}.txt"));
            std::fs::write(&f, format!("many {i}")).expect("write");
            f
        })
        .collect();
    let args = |json: bool| {
        let mut a: Vec<&str> = vec!["put"];
        a.extend(many.iter().map(|f| s(f)));
        a.push("/many/");
        if json {
            a.push("--json");
        }
        a
    };
    client.run(&args(false)).ok();
    let again = json(client.run(&args(true)).ok());
    assert_eq!(
        (again["uploaded"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(10))
    );

    // No version was spent on contents the server had.
    for (path, count) in [
        ("/notes.txt", 1),
        ("/big.bin", 2),
        ("/tree/d/b.bin", 1),
        ("/tree/a.txt", 2),
    ] {
        let v = json(client.run(&["versions", path, "--json"]).ok());
        assert_eq!(
            v["versions"].as_array().expect("list").len(),
            count,
            "{path}: {v}"
        );
    }
}

#[test]
fn names_of_255_bytes_go_up_and_come_down_and_an_interrupted_get_resumes() {
    let server = TestServer::start();
    let client = alice(&server);
    let dir_name = "d".repeat(255);
    let big_name = format!("{}.bin", "b".repeat(251));
    let small_name = "s".repeat(255);
    assert_eq!(big_name.len(), 255);
    let tree = client.dir.path().join("long");
    std::fs::create_dir_all(tree.join(&dir_name)).expect("mkdir");
    std::fs::write(
        tree.join(&dir_name).join(&big_name),
        random_bytes(12 * MIB + 1, 43),
    )
    .expect("write");
    std::fs::write(tree.join(&dir_name).join(&small_name), b"small").expect("write");
    std::fs::write(tree.join(&small_name), b"top").expect("write");
    client.run(&["put", "-r", s(&tree), "/long"]).ok();
    let names = client.run(&["ls", "-R", "/long"]).ok().to_string();
    assert!(
        names.lines().any(|l| l == format!("{dir_name}/{big_name}")),
        "{names}"
    );

    let out = client.dir.path().join("out");
    client.run(&["get", "-r", "/long", s(&out)]).ok();
    assert_same_tree(&tree, &out);

    // Interrupted in the middle of the large file, then the same command again.
    let out2 = client.dir.path().join("out2");
    let args = ["get", "-r", "--bwlimit", "2MiB", "/long", s(&out2)];
    let child = client.spawn(&args);
    let part_dir = out2.join(&dir_name).join(".vault-part");
    wait_until("a part file of 7 MiB", Duration::from_secs(60), || {
        part_file_size(&part_dir) >= 7 * MIB as u64
    });
    kill(child);
    let kept = part_file_size(&part_dir);
    assert!(!out2.join(&dir_name).join(&big_name).exists());
    let done = json(client.run(&[&args[..], &["--json"]].concat()).ok());
    let items = done["items"].as_array().expect("items");
    let big = items
        .iter()
        .find(|i| i["local"].as_str().is_some_and(|l| l.ends_with(&big_name)))
        .expect("the large file");
    assert!(
        carried_over(big) >= kept - CUT_CHUNK,
        "{kept} bytes were kept: {done}"
    );
    assert!(
        !out2.join("long").exists(),
        "continued into out2, not nested"
    );
    assert_same_tree(&tree, &out2);
    assert!(!part_dir.exists(), "no part folder is left");
    // Once more: everything is there already.
    let again = json(client.run(&[&args[..], &["--json"]].concat()).ok());
    assert_eq!(
        (again["downloaded"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(3))
    );
    assert!(!out2.join("long").exists());

    // A target directory that does not exist is named as such.
    let nowhere = client.dir.path().join("nowhere/f");
    let err = client
        .run(&["get", &format!("/long/{small_name}"), s(&nowhere)])
        .fails_with("nowhere: no such directory")
        .to_string();
    assert!(!err.contains("vault-part"), "{err}");
}

#[test]
fn put_r_of_a_synced_folder_leaves_out_its_sync_state() {
    let server = TestServer::start();
    let client = alice(&server);
    let synced = client.dir.path().join("synced");
    std::fs::create_dir_all(synced.join("docs")).expect("mkdir");
    std::fs::write(synced.join("docs/a.txt"), b"a").expect("write");
    std::fs::write(synced.join("b.txt"), b"b").expect("write");
    client.run(&["sync", s(&synced), "/mirror"]).ok();
    assert!(synced.join(".vault-sync").is_dir(), "sync made its state");
    // And what an unfinished download leaves, new style and old.
    std::fs::create_dir_all(synced.join("docs/.vault-part")).expect("mkdir");
    std::fs::write(synced.join("docs/.vault-part/0123abcd"), b"part").expect("write");
    std::fs::write(synced.join(".c.txt.vault-part"), b"part").expect("write");
    client.run(&["put", "-r", s(&synced), "/copy"]).ok();
    let names = client.run(&["ls", "-R", "/copy"]).ok().to_string();
    assert_eq!(names, "b.txt\ndocs/\ndocs/a.txt\n");
}

/// `get -r` where one file does not verify: every other file still arrives, the command
/// lists the failure and exits 1. When the session ends in the middle of one, what was in
/// flight fails and the files not tried are listed too.
#[test]
fn get_r_goes_on_past_a_bad_file_and_lists_what_did_not_arrive() {
    let server = TestServer::start();
    let client = alice(&server);
    let tree = client.dir.path().join("ten");
    std::fs::create_dir_all(&tree).expect("mkdir");
    // Ten files of distinct sizes, so that each blob can be told apart by its size.
    for i in 0..10u64 {
        let data = random_bytes(5000 + i as usize, 900 + i);
        std::fs::write(tree.join(format!("f{i}.bin")), data).expect("write");
    }
    client.run(&["put", "-r", s(&tree), "/ten"]).ok();

    // One byte of f3's ciphertext flipped behind the server's back.
    let blob = server.stored_blob_of_size(5003 + 16);
    let mut bytes = server.blob_bytes(&blob);
    bytes[2000] ^= 1;
    server.replace_blob(&blob, &bytes);

    let back = client.dir.path().join("back");
    let out = client.run(&["get", "-r", "/ten", s(&back)]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("failed: /ten/f3.bin: "),
        "the bad file is named: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("1 file of 10 did not download"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("skipped:"), "{}", out.stderr);
    for i in 0..10u64 {
        let got = std::fs::read(back.join(format!("f{i}.bin")));
        if i == 3 {
            assert!(got.is_err(), "nothing is written for the bad file");
        } else {
            let want = std::fs::read(tree.join(format!("f{i}.bin"))).expect("read");
            assert!(got.expect("arrived") == want, "f{i}.bin arrived intact");
        }
    }
    // The same in --json: the failure with its reason, and a non-zero exit.
    let out = client.run(&["get", "-r", "/ten", s(&back), "--json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let report = json(&out.stdout);
    assert_eq!(report["unchanged"], 9, "{report}");
    let failed = report["failed"].as_array().expect("failed");
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["remote"], "/ten/f3.bin");
    assert!(failed[0]["error"].as_str().is_some(), "{report}");
    assert_eq!(report["skipped"], serde_json::json!([]));

    // The operator ends the session in the middle of a slow get -r: the client cannot
    // go on, so what was in flight fails and the rest is listed as not tried.
    let big = client.dir.path().join("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    for i in 0..12u64 {
        let data = random_bytes(MIB / 2 + i as usize, 700 + i);
        std::fs::write(big.join(format!("b{i:02}.bin")), data).expect("write");
    }
    client.run(&["put", "-r", s(&big), "/big"]).ok();
    let slow = client.dir.path().join("slow");
    let get = client.spawn_piped(&["get", "-r", "--bwlimit", "1MiB", "/big", s(&slow)]);
    wait_until(
        "the first file to be under way",
        Duration::from_secs(30),
        || {
            std::fs::read_dir(slow.join(".vault-part"))
                .map(|d| d.count() > 0)
                .unwrap_or(false)
        },
    );
    server.admin(&["user", "kick", "alice"]).ok();
    let out = get.wait_with_output().expect("wait for get");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let failed = stderr.lines().filter(|l| l.starts_with("failed: ")).count();
    let skipped = stderr
        .lines()
        .filter(|l| l.starts_with("skipped: ") && l.ends_with("(not tried)"))
        .count();
    let arrived = files_under(&slow)
        .iter()
        .filter(|p| !p.to_string_lossy().contains(".vault-part"))
        .count();
    assert!(failed >= 1 && skipped >= 1, "{stderr}");
    assert_eq!(arrived + failed + skipped, 12, "{stderr}");
    assert!(
        stderr.contains("the error above stopped the transfer"),
        "{stderr}"
    );
}
