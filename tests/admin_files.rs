//! End to end: the operator's file commands against a running server and real uploads —
//! `vault-admin fsck [--read-data] [--repair]`, `gc`, `backup` (restored into a second
//! server), `stats`, `user show`, `user set-quota` applied live and `user delete` taking
//! the files with it — and the server's own gc and scrub.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use vault_e2e::{Client, PASSWORD, TestDb, TestServer};

/// Deterministic bytes that do not compress to nothing.
fn content(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) | 0x9e37_0000;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A registered, logged-in user and a scratch dir.
fn alice(server: &TestServer) -> Client {
    let client = Client::new();
    client.register(server, "alice", "alice@example.org");
    client
}

fn write(client: &Client, name: &str, data: &[u8]) -> PathBuf {
    let path = client.dir.path().join(name);
    std::fs::write(&path, data).expect("write local file");
    path
}

fn put(client: &Client, local: &Path, remote: &str) {
    client
        .run(&["put", local.to_str().expect("utf-8"), remote])
        .ok();
}

fn get(client: &Client, remote: &str) -> Vec<u8> {
    let out = client
        .dir
        .path()
        .join(format!("got-{}", remote.replace('/', "_")));
    let _ = std::fs::remove_file(&out);
    client
        .run(&["get", remote, out.to_str().expect("utf-8")])
        .ok();
    std::fs::read(&out).expect("downloaded file")
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn fsck_is_clean_then_finds_a_lost_blob_and_repair_falls_back_to_the_older_version() {
    let server = TestServer::start();
    let alice = alice(&server);
    let v1 = content(3000, 1);
    let v2 = content(5000, 2);
    let local = write(&alice, "a.bin", &v1);
    put(&alice, &local, "/a.bin");
    std::fs::write(&local, &v2).expect("rewrite");
    put(&alice, &local, "/a.bin");
    put(&alice, &write(&alice, "b.txt", b"hello"), "/docs/b.txt");

    let out = server.admin(&["fsck"]);
    assert!(out.ok().starts_with("clean: "), "{}", out.stdout);

    // Lose the blob of /a.bin version 2 (the only one of its size) behind the server's back.
    let blobs = server.blob_files();
    assert_eq!(blobs.len(), 3, "{blobs:?}");
    let newest = blobs
        .iter()
        .find(|b| std::fs::metadata(b).map(|m| m.len()).ok() == Some(5000 + 16))
        .expect("the blob of /a.bin version 2");
    std::fs::remove_file(newest).expect("remove blob");

    let out = server.admin(&["fsck"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("version 2: blob"), "{}", out.stdout);
    assert!(out.stdout.contains("is missing"), "{}", out.stdout);
    assert!(out.stdout.contains("fsck --repair"), "{}", out.stdout);
    let out = server.admin(&["fsck", "--json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let report = json(&out.stdout);
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"missing_blob"), "{kinds:?}");

    let out = server.admin(&["fsck", "--repair"]);
    let text = out.ok();
    assert!(text.contains("user alice"), "{text}");
    assert!(text.contains("lost version 2; now at version 1"), "{text}");
    assert!(server.admin(&["fsck"]).ok().starts_with("clean: "));
    // The file is readable again, at its older content.
    assert_eq!(get(&alice, "/a.bin"), v1);
    assert_eq!(get(&alice, "/docs/b.txt"), b"hello");
    let audit = server.admin(&["audit", "--json"]);
    assert!(audit.ok().contains("fsck_repair"), "{}", audit.stdout);
}

#[test]
fn gc_removes_old_orphans_and_keeps_young_ones_and_live_blobs() {
    let server = TestServer::start_with("[files]\nblob_grace_s = 600\n");
    let alice = alice(&server);
    let data = content(4000, 3);
    put(&alice, &write(&alice, "f.bin", &data), "/f.bin");

    let blobs = server.data_dir().join("blobs");
    let old = SystemTime::now() - Duration::from_secs(3600);
    let orphan = blobs.join("ab").join("ab".repeat(16));
    std::fs::create_dir_all(orphan.parent().expect("dir")).expect("fanout dir");
    std::fs::write(&orphan, b"nobody's").expect("orphan");
    std::fs::File::options()
        .write(true)
        .open(&orphan)
        .and_then(|f| f.set_modified(old))
        .expect("age the orphan");
    let young = blobs.join("ab").join(format!("ab{}", "cd".repeat(15)));
    std::fs::write(&young, b"too young").expect("young orphan");
    let partial = blobs.join("partial").join("ef".repeat(16));
    std::fs::write(&partial, b"half").expect("orphan partial");
    std::fs::File::options()
        .write(true)
        .open(&partial)
        .and_then(|f| f.set_modified(old))
        .expect("age the partial");

    let out = server.admin(&["gc", "--json"]);
    let report = json(out.ok());
    assert_eq!(report["orphan_blobs"], 1, "{report}");
    assert_eq!(report["orphan_blob_bytes"], 8, "{report}");
    assert_eq!(report["orphan_partials"], 1, "{report}");
    assert!(!orphan.exists());
    assert!(!partial.exists());
    assert!(young.exists(), "an orphan younger than the grace stays");
    assert_eq!(get(&alice, "/f.bin"), data);

    // fsck sees the young orphan; --repair queues it for a later gc.
    let out = server.admin(&["fsck"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("belongs to no version"),
        "{}",
        out.stdout
    );
    assert!(
        server
            .admin(&["fsck", "--repair"])
            .ok()
            .contains("queued for removal by gc")
    );
    assert!(server.admin(&["fsck"]).ok().starts_with("clean: "));
    let again = server.admin(&["gc"]);
    assert!(
        again.ok().contains("nothing to collect"),
        "{}",
        again.stdout
    );
}

#[test]
fn backup_while_the_server_runs_then_a_second_server_serves_the_same_bytes() {
    let server = TestServer::start();
    if std::env::var("VAULT_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        // On PostgreSQL the backup is a pg_dump; restoring it needs psql, not tested here.
        return;
    }
    let alice = alice(&server);
    let big = content(3 * 1024 * 1024 + 17, 4);
    let small = content(10, 5);
    put(&alice, &write(&alice, "big.bin", &big), "/big.bin");
    put(
        &alice,
        &write(&alice, "small.bin", &small),
        "/dir/small.bin",
    );

    let dest = server.root.path().join("backup");
    let out = server.admin(&["backup", dest.to_str().expect("utf-8")]);
    let text = out.ok();
    assert!(text.contains("backup written to"), "{text}");
    assert!(text.contains("vault-server --data-dir"), "{text}");
    assert!(dest.join("vault.db").is_file());
    assert!(dest.join("tls/key.pem").is_file());
    // A second backup into the same (now non-empty) place is refused.
    server
        .admin(&["backup", dest.to_str().expect("utf-8")])
        .fails_with("not empty");
    // Changes after the backup are not in it.
    put(&alice, &write(&alice, "late.bin", b"late"), "/late.bin");

    let mut second = TestServer::start();
    second.restart(|data| {
        std::fs::remove_dir_all(data).expect("clear the second data dir");
        std::fs::rename(&dest, data).expect("restore the backup");
    });
    assert_eq!(second.fingerprint, server.fingerprint, "tls/ came along");
    let (restored, out) = Client::login_to(&second, "alice", PASSWORD);
    out.ok();
    assert_eq!(get(&restored, "/big.bin"), big);
    assert_eq!(get(&restored, "/dir/small.bin"), small);
    let ls = restored.run(&["ls", "/"]);
    assert!(!ls.ok().contains("late.bin"), "{}", ls.stdout);
    assert!(second.admin(&["fsck"]).ok().starts_with("clean: "));
    let audit = server.admin(&["audit", "--json"]);
    assert!(audit.ok().contains("\"backup\""), "{}", audit.stdout);
}

#[test]
fn set_quota_applies_to_the_running_server_and_stats_count_the_files() {
    let server = TestServer::start();
    let alice = alice(&server);
    let first = content(100 * 1024, 6);
    put(&alice, &write(&alice, "one.bin", &first), "/one.bin");

    let show = server.admin(&["user", "show", "alice", "--json"]);
    let used = json(show.ok())["used_bytes"].as_i64().expect("used_bytes");
    assert_eq!(used, 100 * 1024 + 16);
    let stats = json(server.admin(&["stats", "--json"]).ok());
    assert_eq!(stats["files"], 1, "{stats}");
    assert_eq!(stats["versions"], 1, "{stats}");
    assert_eq!(stats["stored_bytes"], used, "{stats}");
    assert_eq!(stats["bytes"], used, "{stats}");
    assert_eq!(stats["uploads_in_progress"], 0, "{stats}");

    server.admin(&["user", "set-quota", "alice", "150KiB"]).ok();
    let second = write(&alice, "two.bin", &content(100 * 1024, 7));
    let out = alice.run(&["put", second.to_str().expect("utf-8"), "/two.bin"]);
    out.fails_with("quota");
    let ls = alice.run(&["ls", "/"]);
    assert!(!ls.ok().contains("two.bin"), "{}", ls.stdout);

    server.admin(&["user", "set-quota", "alice", "10MiB"]).ok();
    put(&alice, &second, "/two.bin");
    let stats = json(server.admin(&["stats", "--json"]).ok());
    assert_eq!(stats["files"], 2, "{stats}");
    assert!(server.admin(&["fsck"]).ok().starts_with("clean: "));
}

#[test]
fn deleting_a_user_deletes_their_files_and_leaves_fsck_clean() {
    let server = TestServer::start();
    let alice = alice(&server);
    put(
        &alice,
        &write(&alice, "x.bin", &content(2000, 8)),
        "/d/x.bin",
    );
    put(
        &alice,
        &write(&alice, "y.bin", &content(3000, 9)),
        "/d/y.bin",
    );
    // The trash and its emptying keep the books straight.
    alice.run(&["rm", "/d/y.bin"]).ok();
    assert!(server.admin(&["fsck"]).ok().starts_with("clean: "));
    let stats = json(server.admin(&["stats", "--json"]).ok());
    assert_eq!(stats["trash_items"], 1, "{stats}");
    assert_eq!(stats["files"], 1, "{stats}");
    alice.run(&["trash", "empty", "--yes"]).ok();
    assert!(server.admin(&["fsck"]).ok().starts_with("clean: "));
    let out = server.admin(&["user", "delete", "alice", "--yes"]);
    let said = out.ok();
    assert!(
        said.contains("deleted its ") && said.contains(" version"),
        "{said}"
    );
    let stats = json(server.admin(&["stats", "--json"]).ok());
    assert_eq!(stats["files"], 0, "{stats}");
    assert_eq!(stats["directories"], 0, "{stats}");
    assert_eq!(stats["stored_bytes"], 0, "{stats}");
    // The blob waits in the deletion queue for gc, so it is no orphan.
    assert!(server.admin(&["fsck"]).ok().starts_with("clean: "));
}

#[test]
fn the_server_runs_gc_on_its_own_every_interval() {
    let server = TestServer::start_with("[files]\ngc_interval_s = 1\nblob_grace_s = 0\n");
    let alice = alice(&server);
    let data = content(1500, 9);
    put(&alice, &write(&alice, "kept.bin", &data), "/kept.bin");
    let orphan = server
        .data_dir()
        .join("blobs")
        .join("cd")
        .join("cd".repeat(16));
    std::fs::create_dir_all(orphan.parent().expect("dir")).expect("fanout dir");
    std::fs::write(&orphan, b"left behind").expect("orphan");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while orphan.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server's gc did not remove the orphan; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(&alice, "/kept.bin"), data);
    let audit = json(server.admin(&["audit", "--json"]).ok());
    let by_server_gc = audit
        .as_array()
        .expect("entries")
        .iter()
        .any(|e| e["actor"] == "server" && e["event"] == "gc");
    assert!(by_server_gc, "{audit}");
    assert!(server.admin(&["fsck"]).ok().starts_with("clean: "));
}

fn blob_id(blob: &Path) -> String {
    blob.file_name()
        .and_then(|n| n.to_str())
        .expect("blob file name")
        .to_string()
}

#[derive(QueryableByName)]
struct FileVersion {
    #[diesel(sql_type = BigInt)]
    entry_id: i64,
    #[diesel(sql_type = BigInt)]
    version: i64,
}

/// The file id and version the server's database gives the blob `blob`.
fn file_of(server: &TestServer, blob: &str) -> (i64, i64) {
    let row: FileVersion = match server.open_database() {
        TestDb::Sqlite(mut c) => {
            diesel::sql_query("SELECT entry_id, version FROM versions WHERE blob_id = ?")
                .bind::<Text, _>(blob)
                .get_result(&mut c)
        }
        TestDb::Pg(mut c) => {
            diesel::sql_query("SELECT entry_id, version FROM versions WHERE blob_id = $1")
                .bind::<Text, _>(blob)
                .get_result(&mut c)
        }
    }
    .expect("the version of a blob");
    (row.entry_id, row.version)
}

fn flip_a_byte(blob: &Path, at: usize) {
    let mut bytes = std::fs::read(blob).expect("read blob");
    bytes[at] ^= 0x01;
    std::fs::write(blob, bytes).expect("write blob");
}

#[test]
fn fsck_read_data_finds_flipped_truncated_and_swapped_blobs_and_repair_treats_them_as_lost() {
    let server = TestServer::start();
    let alice = alice(&server);
    // Large files go up streamed (hashed as they arrive), small ones in a batch.
    let (v1, v2) = (content(150_000, 1), content(200_000, 2));
    let local = write(&alice, "flip.bin", &v1);
    put(&alice, &local, "/flip.bin");
    std::fs::write(&local, &v2).expect("rewrite");
    put(&alice, &local, "/flip.bin");
    put(
        &alice,
        &write(&alice, "cut.bin", &content(100_000, 3)),
        "/cut.bin",
    );
    put(&alice, &write(&alice, "a.txt", &content(3000, 4)), "/a.txt");
    put(&alice, &write(&alice, "b.txt", &content(3000, 5)), "/b.txt");
    let kept = content(5000, 6);
    put(&alice, &write(&alice, "ok.txt", &kept), "/ok.txt");
    let out = server.admin(&["fsck", "--read-data"]);
    let text = out.ok();
    assert!(text.starts_with("clean: "), "{text}");
    assert!(text.contains("6 blobs read"), "{text}");

    // Behind the server's back: one byte flipped, a blob cut short, two swapped.
    let data = server.data_dir();
    let flipped = server.blob_of_size(200_016);
    flip_a_byte(&flipped, 123_456);
    let cut = server.blob_of_size(100_016);
    let bytes = std::fs::read(&cut).expect("read blob");
    std::fs::write(&cut, &bytes[..50_000]).expect("truncate blob");
    let (a, b) = {
        let mut equal: Vec<PathBuf> = server
            .blob_files()
            .into_iter()
            .filter(|p| std::fs::metadata(p).map(|m| m.len()).ok() == Some(3016))
            .collect();
        assert_eq!(equal.len(), 2, "{equal:?}");
        (equal.remove(0), equal.remove(0))
    };
    let aside = data.join("aside");
    std::fs::rename(&a, &aside).expect("swap");
    std::fs::rename(&b, &a).expect("swap");
    std::fs::rename(&aside, &b).expect("swap");
    // The client refuses what it reads.
    let refused = alice.run(&[
        "get",
        "/flip.bin",
        alice.dir.path().join("x").to_str().expect("utf-8"),
    ]);
    assert_ne!(refused.code, 0, "{refused:?}");

    // Sizes alone see only the truncated blob.
    let out = server.admin(&["fsck"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.starts_with("1 problem found"), "{}", out.stdout);

    let out = server.admin(&["fsck", "--read-data"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.starts_with("4 problems found"), "{}", out.stdout);
    for (blob, says) in [
        (&flipped, "BLAKE3 differs"),
        (&a, "BLAKE3 differs"),
        (&b, "BLAKE3 differs"),
        (&cut, "holds 50000 bytes, the database says 100016"),
    ] {
        let id = blob_id(blob);
        let (file, version) = file_of(&server, &id);
        let line = format!("user alice: file #{file} version {version}: blob {id}");
        assert!(
            out.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&line) && l.contains(says)),
            "no line {line} … {says}:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("vault-admin fsck --read-data --repair"),
        "{}",
        out.stdout
    );
    let out = server.admin(&["fsck", "--read-data", "--json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let report = json(&out.stdout);
    let mut kinds: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "hash_mismatch",
            "hash_mismatch",
            "hash_mismatch",
            "size_mismatch"
        ]
    );
    assert_eq!(report["checked"]["blobs_read"], 5, "{report}");

    let out = server.admin(&["fsck", "--read-data", "--repair"]);
    let text = out.ok();
    assert!(text.contains("lost version 2; now at version 1"), "{text}");
    assert_eq!(text.matches("so the file was removed").count(), 6, "{text}");
    let out = server.admin(&["fsck", "--read-data"]);
    assert!(out.ok().starts_with("clean: "), "{}", out.stdout);
    // As for a lost blob: the file is back at its older version, or gone.
    assert_eq!(get(&alice, "/flip.bin"), v1);
    assert_eq!(get(&alice, "/ok.txt"), kept);
    for gone in ["/cut.bin", "/a.txt", "/b.txt"] {
        let target = alice.dir.path().join("gone");
        alice
            .run(&["get", gone, target.to_str().expect("utf-8")])
            .fails_with("no such file");
    }
    let audit = server.admin(&["audit", "--json"]);
    assert!(audit.ok().contains("blobs read"), "{}", audit.stdout);
}

#[test]
fn the_server_scrubs_on_its_own_and_warns_of_each_damaged_version() {
    let server = TestServer::start_with("[files]\nscrub_interval_s = 1\n");
    let alice = alice(&server);
    put(
        &alice,
        &write(&alice, "big.bin", &content(80_000, 7)),
        "/big.bin",
    );
    put(
        &alice,
        &write(&alice, "fine.bin", &content(90_000, 8)),
        "/fine.bin",
    );
    let blob = server.blob_of_size(80_016);
    flip_a_byte(&blob, 40_000);
    let id = blob_id(&blob);
    let (file, version) = file_of(&server, &id);
    let warning = format!(
        "scrub: user alice: file #{file} version {version}: blob {id} does not hold the bytes stored"
    );
    // The warning comes as the pass meets the blob; the pass's summary and
    // its audit entry come when it ends, a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let summary_after_warning = |log: &str| {
        log.find(&warning)
            .is_some_and(|at| log[at..].contains("scrub pass done"))
    };
    while !summary_after_warning(&server.log()) {
        assert!(
            std::time::Instant::now() < deadline,
            "no scrub warning {warning}, or no end of that pass; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let recorded_by_server = || {
        let audit = json(server.admin(&["audit", "--json"]).ok());
        let found = audit.as_array().expect("entries").iter().any(|e| {
            e["actor"] == "server"
                && e["event"] == "scrub"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!("file #{file} ")))
        });
        (found, audit)
    };
    loop {
        let (found, audit) = recorded_by_server();
        if found {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{audit}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The scrub only reports: the repair is the operator's.
    assert_eq!(server.admin(&["fsck", "--read-data"]).code, 1);
}
