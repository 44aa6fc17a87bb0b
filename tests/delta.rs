//! End to end: large files in format 2 (content-defined chunks, docs/FORMAT.md §7.10)
//! through the real binaries — an edit in place, an insertion, a deletion, a truncation
//! and an append each move only the chunks around them, up and down; versions and files
//! of one space share chunks; gc frees exactly the chunks no kept version uses; an
//! interrupted upload resumes with the chunks already sent; a server that alters, swaps
//! or drops chunks is caught and nothing is written; a chunk damaged on the server's disk
//! is found by fsck, and after its repair the next upload stores it again; a file stored
//! in format 1 stays readable and restorable, and `put --whole-file` stores one so; `sync` moves only the chunks around an edit,
//! both ways and in a conflict.

use std::path::Path;
use std::time::Duration;

use vault_e2e::{Client, TestServer, random_bytes};

const MIB: usize = 1 << 20;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Puts `local` to `remote` and returns (bytes, bytes reused from chunks already stored).
fn put(client: &Client, local: &Path, remote: &str) -> (u64, u64) {
    let out = json(client.run(&["put", s(local), remote, "--json"]).ok());
    (
        out["bytes"].as_u64().expect("bytes"),
        out["reused_bytes"].as_u64().expect("reused_bytes"),
    )
}

/// Gets `remote` to `local` and returns (bytes, bytes taken from what was here already).
fn get(client: &Client, remote: &str, local: &Path) -> (u64, u64) {
    let out = json(client.run(&["get", remote, s(local), "--json"]).ok());
    (
        out["bytes"].as_u64().expect("bytes"),
        out["reused_bytes"].as_u64().expect("reused_bytes"),
    )
}

/// The bytes that may have to move for an edit of at most 2 MiB: the edit and three chunks
/// at the cap (4 MiB) around it. Where the cuts fall depends on the account's random key;
/// the median is under 3 MiB and the worst of 800 keys was 9.5 MiB (docs/FORMAT.md §7.10),
/// while the files here are 24 and 40 MiB.
const AROUND_AN_EDIT: u64 = 14 * MIB as u64;

#[test]
fn edits_move_only_the_chunks_around_them_up_and_down() {
    let server = TestServer::start();
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let (bob_machine, out) = Client::login_to(&server, "alice", vault_e2e::PASSWORD);
    out.ok();

    let original = random_bytes(40 * MIB + 123, 21);
    let local = alice.dir.path().join("disk.img");
    std::fs::write(&local, &original).expect("write");
    let (bytes, reused) = put(&alice, &local, "/disk.img");
    assert_eq!((bytes, reused), (original.len() as u64, 0));
    let other = bob_machine.dir.path().join("disk.img");
    assert_eq!(get(&bob_machine, "/disk.img", &other), (bytes, 0));
    assert!(
        std::fs::read(&other).expect("read") == original,
        "first get"
    );

    let mut edits: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut in_place = original.clone();
    in_place[17 * MIB..18 * MIB].copy_from_slice(&random_bytes(MIB, 22));
    edits.push(("1 MiB changed in place", in_place));
    let mut inserted = edits[0].1.clone();
    inserted.splice(25 * MIB..25 * MIB, random_bytes(100, 23));
    edits.push(("100 bytes inserted", inserted));
    let mut deleted = edits[1].1.clone();
    deleted.drain(5 * MIB..5 * MIB + 4000);
    edits.push(("4000 bytes deleted", deleted));
    let mut truncated = edits[2].1.clone();
    truncated.truncate(30 * MIB + 7);
    edits.push(("truncated", truncated));
    let mut appended = edits[3].1.clone();
    appended.extend(random_bytes(2 * MIB, 24));
    edits.push(("2 MiB appended", appended));

    for (what, content) in &edits {
        std::fs::write(&local, content).expect("write");
        let (bytes, reused) = put(&alice, &local, "/disk.img");
        assert_eq!(bytes, content.len() as u64, "{what}");
        assert!(
            bytes - reused <= AROUND_AN_EDIT,
            "{what}: {} bytes sent of {bytes}",
            bytes - reused
        );
        // The other machine holds the previous version: it fetches only what changed.
        let (bytes, reused) = get(&bob_machine, "/disk.img", &other);
        assert!(
            bytes - reused <= AROUND_AN_EDIT,
            "{what}: {} bytes fetched of {bytes}",
            bytes - reused
        );
        assert!(std::fs::read(&other).expect("read") == *content, "{what}");
    }

    // Six versions of a 40 MiB file: stored about once, not six times.
    let quota = json(alice.run(&["quota", "--json"]).ok());
    let used = quota["used_bytes"].as_u64().expect("used");
    assert!(
        used < (original.len() as u64) * 3 / 2,
        "six versions use {used} bytes"
    );
    // Counted whole, the six versions (30 MiB and more each) come to several copies.
    let logical = quota["logical_bytes"].as_u64().expect("logical");
    assert!(logical >= 6 * 30 * MIB as u64, "{quota}");
    // `du` counts the current version whole: its sealed chunks, at least its plaintext.
    let newest = edits[edits.len() - 1].1.len() as u64;
    let du = json(alice.run(&["du", "/disk.img", "--json"]).ok());
    assert_eq!(du["bytes"].as_u64(), Some(newest));
    let sealed = du["sealed_bytes"].as_u64().expect("sealed");
    assert!(sealed >= newest && sealed < newest + 4 * MIB as u64, "{du}");
    let versions = json(alice.run(&["versions", "/disk.img", "--json"]).ok());
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(6));
    // An older version is restorable whole, taking most of it from the newest.
    alice.run(&["restore", "/disk.img", "--version", "1"]).ok();
    let (_, reused) = get(&bob_machine, "/disk.img", &other);
    assert!(reused > 0);
    assert!(
        std::fs::read(&other).expect("read") == original,
        "version 1"
    );
    assert!(
        server
            .admin(&["fsck", "--read-data"])
            .ok()
            .contains("clean")
    );
}

#[test]
fn put_whole_file_stores_a_large_file_in_format_1() {
    let server = TestServer::start();
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let mut content = random_bytes(6 * MIB + 9, 71);
    let local = alice.dir.path().join("movie.mkv");
    std::fs::write(&local, &content).expect("write");
    let whole = |client: &Client| {
        let args = ["put", s(&local), "/movie.mkv", "--whole-file", "--json"];
        json(client.run(&args).ok())
    };
    assert_eq!(whole(&alice)["reused_bytes"], 0);
    assert!(server.chunks().is_empty(), "stored whole, no chunks");
    assert_eq!(whole(&alice)["unchanged"], 1, "unchanged: skipped");
    content[MIB] ^= 1;
    std::fs::write(&local, &content).expect("write");
    assert_eq!(whole(&alice)["reused_bytes"], 0);
    assert!(server.chunks().is_empty());
    let back = alice.dir.path().join("back.mkv");
    assert_eq!(get(&alice, "/movie.mkv", &back), (content.len() as u64, 0));
    assert!(std::fs::read(&back).expect("read") == content);
    // Without the flag the next version is chunked again.
    content[2 * MIB] ^= 1;
    std::fs::write(&local, &content).expect("write");
    put(&alice, &local, "/movie.mkv");
    assert!(!server.chunks().is_empty(), "chunked");
}

/// `vault sync LOCAL REMOTE --json`: (bytes of the files moved, bytes of them reused).
fn sync(client: &Client, local: &Path, remote: &str) -> (u64, u64) {
    let out = json(client.run(&["sync", s(local), remote, "--json"]).ok());
    (
        out["bytes"].as_u64().expect("bytes"),
        out["reused_bytes"].as_u64().expect("reused_bytes"),
    )
}

#[test]
fn sync_moves_only_the_chunks_around_an_edit_both_ways_and_in_a_conflict() {
    let server = TestServer::start();
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let (laptop, out) = Client::login_to(&server, "alice", vault_e2e::PASSWORD);
    out.ok();
    let here = alice.dir.path().join("here");
    let there = laptop.dir.path().join("there");
    for dir in [&here, &there] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let original = random_bytes(24 * MIB + 5, 81);
    std::fs::write(here.join("db.bin"), &original).expect("write");
    assert_eq!(sync(&alice, &here, "/synced"), (original.len() as u64, 0));
    assert_eq!(sync(&laptop, &there, "/synced"), (original.len() as u64, 0));

    // An edit on one side goes up and comes down as the chunks around it.
    let mut edited = original.clone();
    edited[9 * MIB..10 * MIB].copy_from_slice(&random_bytes(MIB, 82));
    std::fs::write(here.join("db.bin"), &edited).expect("write");
    let (bytes, reused) = sync(&alice, &here, "/synced");
    assert_eq!(bytes, edited.len() as u64);
    assert!(
        bytes - reused <= AROUND_AN_EDIT,
        "{} bytes sent",
        bytes - reused
    );
    let (bytes, reused) = sync(&laptop, &there, "/synced");
    assert_eq!(bytes, edited.len() as u64);
    assert!(
        bytes - reused <= AROUND_AN_EDIT,
        "{} bytes fetched",
        bytes - reused
    );
    assert!(std::fs::read(there.join("db.bin")).expect("read") == edited);

    // Both sides change it: the local copy goes up, and the remote version comes down
    // from the chunks that copy shares with it.
    let mut mine = edited.clone();
    mine[2 * MIB..3 * MIB].copy_from_slice(&random_bytes(MIB, 83));
    let mut theirs = edited.clone();
    theirs[20 * MIB..21 * MIB].copy_from_slice(&random_bytes(MIB, 84));
    std::fs::write(there.join("db.bin"), &theirs).expect("write");
    sync(&laptop, &there, "/synced");
    std::fs::write(here.join("db.bin"), &mine).expect("write");
    let (bytes, reused) = sync(&alice, &here, "/synced");
    assert_eq!(bytes, (mine.len() + theirs.len()) as u64, "both ways");
    assert!(
        bytes - reused <= 2 * AROUND_AN_EDIT,
        "{} bytes moved in the conflict",
        bytes - reused
    );
    assert!(std::fs::read(here.join("db.bin")).expect("read") == theirs);
    let copies: Vec<_> = std::fs::read_dir(&here)
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("(conflict"))
        .collect();
    assert_eq!(copies.len(), 1, "one conflict copy");
    assert!(std::fs::read(copies[0].path()).expect("read") == mine);
}

#[test]
fn files_share_chunks_and_gc_frees_exactly_those_no_version_uses() {
    let server = TestServer::start_with("[files]\nblob_grace_s = 0\n");
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let a = random_bytes(24 * MIB, 31);
    let mut b = a.clone();
    b[10 * MIB..11 * MIB].copy_from_slice(&random_bytes(MIB, 32));
    let (a_path, b_path) = (alice.dir.path().join("a"), alice.dir.path().join("b"));
    std::fs::write(&a_path, &a).expect("write");
    std::fs::write(&b_path, &b).expect("write");
    put(&alice, &a_path, "/a");
    let (bytes, reused) = put(&alice, &b_path, "/b");
    assert!(
        bytes - reused <= AROUND_AN_EDIT,
        "a second file sharing most of the first sends {} bytes",
        bytes - reused
    );
    let shared_and_own = server.chunks();
    let stored_before: i64 = shared_and_own.iter().map(|(_, size)| size).sum();

    alice.run(&["rm", "/a"]).ok();
    alice.run(&["trash", "empty", "--yes"]).ok();
    // Until gc runs, a's own chunks are still stored and counted, and `quota` says so.
    let waiting = "chunks no version uses any more";
    assert!(alice.run(&["quota"]).ok().contains(waiting));
    std::thread::sleep(Duration::from_millis(1100));
    let report = json(server.admin(&["gc", "--json"]).ok());
    let freed = report["unused_chunk_bytes"].as_i64().expect("unused bytes");
    assert!(freed > 0, "{report}");
    assert!(
        freed <= AROUND_AN_EDIT as i64 + (1 << 20),
        "gc freed {freed} bytes: more than a's own chunks"
    );
    let left: i64 = server.chunks().iter().map(|(_, size)| size).sum();
    assert_eq!(left, stored_before - freed);
    // b is whole, from a fresh machine, and the store is consistent.
    let (fresh, out) = Client::login_to(&server, "alice", vault_e2e::PASSWORD);
    out.ok();
    let back = fresh.dir.path().join("b");
    assert_eq!(get(&fresh, "/b", &back).1, 0);
    assert!(std::fs::read(&back).expect("read") == b, "b after gc");
    assert!(
        server
            .admin(&["fsck", "--read-data"])
            .ok()
            .contains("clean")
    );
    let quota = json(alice.run(&["quota", "--json"]).ok());
    assert!(quota["used_bytes"].as_i64().expect("used") >= left);
    assert!(
        !alice.run(&["quota"]).ok().contains(waiting),
        "gc freed them"
    );

    // Deleting the last file frees the rest.
    alice.run(&["rm", "/b"]).ok();
    alice.run(&["trash", "empty", "--yes"]).ok();
    std::thread::sleep(Duration::from_millis(1100));
    server.admin(&["gc"]).ok();
    assert!(server.chunks().is_empty(), "no chunk outlives its versions");
    let quota = json(alice.run(&["quota", "--json"]).ok());
    assert_eq!(quota["used_bytes"], 0, "{quota}");
}

#[test]
fn an_interrupted_upload_resumes_with_the_chunks_already_sent() {
    let server = TestServer::start();
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let content = random_bytes(32 * MIB, 41);
    let local = alice.dir.path().join("big.bin");
    std::fs::write(&local, &content).expect("write");
    let mut child = alice.spawn(&["put", "--bwlimit", "4MiB", s(&local), "/big.bin"]);
    let start = std::time::Instant::now();
    while server.chunks().len() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no chunks stored"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(
        alice.run(&["ls"]).ok().trim(),
        "",
        "nothing visible before commit"
    );
    // Every chunk stored before the kill is reused: its plaintext, which its sealed size
    // gives to within the padding (under 64 KiB).
    let stored = server.chunks();
    let at_least: i64 = stored.iter().map(|(_, size)| size - (64 << 10)).sum();
    let (bytes, reused) = put(&alice, &local, "/big.bin");
    assert!(
        reused as i64 >= at_least && reused > 0,
        "resumed with {reused} bytes of {bytes}; {} chunks were stored",
        stored.len()
    );
    let back = alice.dir.path().join("back.bin");
    get(&alice, "/big.bin", &back);
    assert!(
        std::fs::read(&back).expect("read") == content,
        "bytes differ"
    );
}

#[test]
fn a_server_that_alters_swaps_or_drops_chunks_is_caught_and_nothing_is_written() {
    let server = TestServer::start();
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let content = random_bytes(12 * MIB, 51);
    let local = alice.dir.path().join("f.bin");
    std::fs::write(&local, &content).expect("write");
    put(&alice, &local, "/f.bin");
    let chunks = server.chunks();
    assert!(chunks.len() >= 3, "{chunks:?}");
    let dest = alice.dir.path().join("out.bin");

    // One byte of a stored chunk changed.
    let (first, _) = &chunks[0];
    let good = server.blob_bytes(first);
    let mut bad = good.clone();
    bad[100] ^= 1;
    server.replace_blob(first, &bad);
    alice
        .run(&["get", "/f.bin", s(&dest)])
        .fails_with("could not be decrypted");
    assert!(!dest.exists(), "nothing written under the real name");
    server.replace_blob(first, &good);

    // Two chunks swapped: each id now serves the other's bytes.
    let swap = |(a, a_size): &(vault_e2e::BlobId, i64), (b, b_size): &(vault_e2e::BlobId, i64)| {
        server.execute(&format!(
            "UPDATE chunks SET blob_id = 'swapping' WHERE blob_id = '{a}'"
        ));
        server.execute(&format!(
            "UPDATE chunks SET blob_id = '{a}', sealed_size = {a_size} WHERE blob_id = '{b}'"
        ));
        server.execute(&format!(
            "UPDATE chunks SET blob_id = '{b}', sealed_size = {b_size} WHERE blob_id = 'swapping'"
        ));
    };
    swap(&chunks[0], &chunks[1]);
    alice
        .run(&["get", "/f.bin", s(&dest)])
        .fails_with("could not be decrypted");
    assert!(!dest.exists(), "nothing written under the real name");
    swap(&chunks[1], &chunks[0]);
    let (bytes, _) = get(&alice, "/f.bin", &dest);
    assert_eq!(bytes, content.len() as u64, "whole again");
    std::fs::remove_file(&dest).expect("rm");

    // A chunk dropped.
    server.execute(&format!(
        "DELETE FROM chunks WHERE blob_id = '{}'",
        chunks[2].0
    ));
    alice
        .run(&["get", "/f.bin", s(&dest)])
        .fails_with("no such chunk");
    assert!(!dest.exists(), "nothing written under the real name");
}

#[test]
fn a_damaged_chunk_is_found_by_fsck_and_after_its_repair_the_next_upload_stores_it_again() {
    let server = TestServer::start();
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let content = random_bytes(8 * MIB, 61);
    let local = alice.dir.path().join("img");
    std::fs::write(&local, &content).expect("write");
    put(&alice, &local, "/img");
    let chunks = server.chunks();
    assert!(chunks.len() >= 2, "{chunks:?}");
    let (rotten, _) = &chunks[chunks.len() / 2];
    let mut bytes = server.blob_bytes(rotten);
    bytes[1000] ^= 0x20;
    server.replace_blob(rotten, &bytes);

    let back = alice.dir.path().join("back");
    alice
        .run(&["get", "/img", s(&back)])
        .fails_with("could not be decrypted");
    let found = server.admin(&["fsck", "--read-data"]);
    assert_eq!(found.code, 1, "{found:?}");
    let says = format!("chunk blob {rotten} does not hold the bytes stored");
    assert!(found.stdout.contains(&says), "{}", found.stdout);
    assert!(
        found.stdout.contains("it is part of file #"),
        "{}",
        found.stdout
    );
    let repaired = server
        .admin(&["fsck", "--read-data", "--repair"])
        .ok()
        .to_owned();
    assert!(repaired.contains("chunk deleted"), "{repaired}");
    assert!(repaired.contains("was removed"), "{repaired}");
    assert!(!alice.run(&["ls", "/", "--json"]).ok().contains("\"img\""));

    // The next upload sends the damaged chunk again (and only what the repair took).
    let (bytes, reused) = put(&alice, &local, "/img");
    assert!(reused > 0 && reused < bytes, "{reused} of {bytes} reused");
    // The failed download's part is of the removed file: the new one is fetched anew.
    get(&alice, "/img", &back);
    assert!(
        std::fs::read(&back).expect("read") == content,
        "whole again"
    );
    assert!(
        server
            .admin(&["fsck", "--read-data"])
            .ok()
            .contains("clean")
    );
}

/// A large file stored in format 1 (as every release before format 2 stored it, and as
/// chat attachments still are): it stays readable, a new version of it goes up in format
/// 2, and the old version is restorable whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_stored_in_format_1_stays_readable_and_restorable_after_format_2_versions() {
    vault_e2e::init_tls();
    let server = TestServer::start();
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let old = random_bytes(6 * MIB + 17, 61);
    let local = alice.dir.path().join("old.bin");
    std::fs::write(&local, &old).expect("write");
    {
        let state = vault_client::state::StateDir::at(alice.state_dir());
        let files = vault_client::files::Files::open(&state)
            .await
            .expect("files");
        let remote = vault_client::files::RemotePath::parse("/old.bin").expect("path");
        vault_client::files::upload::upload_file(
            &files,
            &local,
            &remote,
            &vault_client::files::progress::NoProgress,
            None,
        )
        .await
        .expect("a format 1 upload");
    }
    assert!(server.chunks().is_empty(), "format 1 stores no chunks");
    let client = &alice;
    let back = alice.dir.path().join("back.bin");
    let (bytes, reused) = get(client, "/old.bin", &back);
    assert_eq!((bytes, reused), (old.len() as u64, 0));
    assert!(
        std::fs::read(&back).expect("read") == old,
        "format 1 read back"
    );

    let mut new = old.clone();
    new[3 * MIB] ^= 0xff;
    std::fs::write(&local, &new).expect("write");
    let (_, reused) = put(client, &local, "/old.bin");
    assert_eq!(reused, 0, "format 1 has no chunks to share");
    assert!(
        !server.chunks().is_empty(),
        "the new version is in format 2"
    );
    // Getting over the format-1 copy reuses its chunks: the chunker finds them in it.
    let (_, reused) = get(client, "/old.bin", &back);
    assert!(reused > 0, "the local copy's chunks are reused");
    assert!(
        std::fs::read(&back).expect("read") == new,
        "format 2 read back"
    );
    client.run(&["restore", "/old.bin", "--version", "1"]).ok();
    get(client, "/old.bin", &back);
    assert!(
        std::fs::read(&back).expect("read") == old,
        "version 1 restored"
    );
    assert!(
        server
            .admin(&["fsck", "--read-data"])
            .ok()
            .contains("clean")
    );
}
