//! Moving a deployment's blobs between stores, restoring an S3 deployment from a backup,
//! and fsck and gc on a bucket, through the real binaries. These need an S3-compatible
//! service (`VAULT_TEST_S3_*`, as `.ci/garage start` prints; CI runs them on Garage) and
//! say so and pass without one.

use std::path::Path;

use vault_e2e::{Client, TestServer, fresh_s3_storage, random_bytes};

const MIB: usize = 1 << 20;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn s3_or_skip() -> Option<Vec<(String, String)>> {
    let env = fresh_s3_storage();
    if env.is_empty() {
        eprintln!("VAULT_TEST_S3_ENDPOINT is not set: S3 storage tests skipped");
        return None;
    }
    Some(env)
}

/// The S3 settings without `storage.kind`: the server stays on its local store.
fn keys_only(env: &[(String, String)]) -> Vec<(String, String)> {
    env.iter()
        .filter(|(k, _)| k != "VAULT_STORAGE_KIND")
        .cloned()
        .collect()
}

/// A tree of small files and one large one, put by `client`; what was put.
fn put_tree(client: &Client, name: &str, seed: u64) -> Vec<(String, Vec<u8>)> {
    let dir = client.dir.path().join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut files = Vec::new();
    for i in 0..12u64 {
        files.push((
            format!("small-{i}.bin"),
            random_bytes(1000 + i as usize * 37, seed + i),
        ));
    }
    files.push(("large.bin".into(), random_bytes(20 * MIB + 11, seed + 100)));
    for (file, data) in &files {
        std::fs::write(dir.join(file), data).expect("write");
    }
    client.run(&["put", "-r", s(&dir), "/"]).ok();
    files
        .into_iter()
        .map(|(f, d)| (format!("/{name}/{f}"), d))
        .collect()
}

fn check_files(client: &Client, files: &[(String, Vec<u8>)]) {
    let back = client.dir.path().join("back.bin");
    for (remote, data) in files {
        let _ = std::fs::remove_file(&back);
        client.run(&["get", remote, s(&back)]).ok();
        assert!(
            std::fs::read(&back).expect("downloaded") == *data,
            "{remote} came back intact"
        );
    }
}

#[test]
fn migrate_blobs_moves_a_running_fs_deployment_into_a_bucket_with_one_restart() {
    let Some(s3) = s3_or_skip() else { return };
    let mut server = TestServer::start_with_local_blobs("");
    let client = Client::new();
    client.register(&server, "alice", "alice@example.org");
    let mut files = put_tree(&client, "before", 1);
    // Each version's blob, and each chunk of the large file's (format 2).
    let before = server.named_blobs();

    // While the server runs: the S3 keys are known, storage.kind is still "fs".
    server.set_storage_env(keys_only(&s3));
    let out = server.admin(&["migrate-blobs", "--to", "s3"]);
    let first = out.ok().to_string();
    assert!(
        first.contains(&format!("{before} blobs of {before} copied")),
        "{first}"
    );
    assert!(first.contains("next: stop the server"), "{first}");

    // Written after the first copy, before the stop.
    files.extend(put_tree(&client, "meanwhile", 50));
    server.stop();
    let second = server.admin(&["migrate-blobs", "--to", "s3", "--json"]);
    let report: serde_json::Value = serde_json::from_str(second.ok()).expect("json");
    let all = server.named_blobs();
    assert_eq!(report["blobs"], all, "{report}");
    assert_eq!(report["copied"], all - before, "{report}");
    assert_eq!(report["present"], before, "{report}");

    // The switch: storage.kind = "s3", and the local blobs out of reach.
    server.set_storage_env(s3.clone());
    let local = server.data_dir().join("blobs");
    std::fs::rename(&local, server.data_dir().join("blobs.before-s3")).expect("move away");
    server.restart(|_| {});
    assert!(server.on_s3());
    let fsck = server.admin(&["fsck"]);
    assert_eq!(fsck.code, 0, "fsck is clean on the bucket: {fsck:?}");
    check_files(&client, &files);
    let more = put_tree(&client, "after", 90);
    check_files(&client, &more);
    let audit = server.admin(&["audit"]).ok().to_string();
    assert!(audit.contains("blobs_migrated"), "{audit}");

    // Refused when there is nothing to move from.
    let again = server.admin(&["migrate-blobs", "--to", "s3"]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("already \"s3\""), "{}", again.stderr);
}

#[test]
fn an_s3_deployment_is_restored_from_its_backup_and_a_bucket_refilled_from_it() {
    let Some(s3) = s3_or_skip() else { return };
    if std::env::var("VAULT_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        // The database half of a PostgreSQL restore is `psql < vault.sql` (README); this
        // test restores the SQLite snapshot and the bucket.
        eprintln!("restore test runs on SQLite only: skipped");
        return;
    }
    let mut server = TestServer::start_with("");
    assert!(server.on_s3());
    let client = Client::new();
    client.register(&server, "alice", "alice@example.org");
    let files = put_tree(&client, "kept", 7);
    let named = server.named_blobs();

    let backup = tempfile::tempdir().expect("tempdir");
    let dest = backup.path().join("b");
    let out = server.admin(&["backup", s(&dest)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        std::fs::read_dir(dest.join("blobs"))
            .expect("blobs in the backup")
            .flatten()
            .filter(|d| d.file_name().len() == 2)
            .flat_map(|d| std::fs::read_dir(d.path()).expect("fanout").flatten())
            .count() as u64,
        named,
        "every named blob came out of the bucket"
    );
    put_tree(&client, "lost", 70);

    // Disaster: the database and every object are gone.
    server.stop();
    let store = server.blob_store();
    for blob in store.list().expect("list") {
        store.remove(&blob.id).expect("remove");
    }
    assert!(store.list().expect("list").is_empty());
    let data = server.data_dir();
    std::fs::copy(dest.join("vault.db"), data.join("vault.db")).expect("restore database");
    for stale in ["vault.db-wal", "vault.db-shm"] {
        let _ = std::fs::remove_file(data.join(stale));
    }

    // The README's restore: the backup's blobs into the bucket, then start on it.
    let _ = std::fs::remove_dir_all(data.join("blobs"));
    std::fs::rename(dest.join("blobs"), data.join("blobs")).expect("restore blobs");
    server.set_storage_env(keys_only(&s3));
    let out = server.admin(&["migrate-blobs", "--to", "s3"]);
    assert!(
        out.ok()
            .contains(&format!("{named} blobs of {named} copied")),
        "{out:?}"
    );
    server.set_storage_env(s3);
    server.restart(|_| {});
    let fsck = server.admin(&["fsck"]);
    assert_eq!(fsck.code, 0, "fsck is clean after the restore: {fsck:?}");
    check_files(&client, &files);
    let listed = client.run(&["ls"]).ok().to_string();
    assert!(
        !listed.contains("lost"),
        "what came after the backup is gone: {listed}"
    );
}

/// fsck and gc on a bucket, as on a disk: a blob lost from the bucket is found and
/// `fsck --repair` falls back to the file's older version; a blob whose bytes changed is
/// found by `--read-data`; an orphan object older than the grace is collected and a young
/// one stays.
#[test]
fn fsck_and_gc_find_and_collect_in_a_bucket() {
    if s3_or_skip().is_none() {
        return;
    }
    let server = TestServer::start_with("[files]\nblob_grace_s = 3\n");
    assert!(server.on_s3());
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let (v1, v2) = (random_bytes(3000, 1), random_bytes(5000, 2));
    let local = alice.dir.path().join("a.bin");
    for data in [&v1, &v2] {
        std::fs::write(&local, data).expect("write");
        alice.run(&["put", s(&local), "/a.bin"]).ok();
    }
    let other = random_bytes(7000, 3);
    std::fs::write(&local, &other).expect("write");
    alice.run(&["put", s(&local), "/b.bin"]).ok();
    assert!(server.admin(&["fsck"]).ok().starts_with("clean: "));

    // Lost from the bucket behind the server's back.
    let store = server.blob_store();
    store
        .remove(&server.stored_blob_of_size(5000 + 16))
        .expect("remove the blob of /a.bin version 2");
    let out = server.admin(&["fsck"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("is missing"), "{}", out.stdout);
    let text = server.admin(&["fsck", "--repair"]).ok().to_owned();
    assert!(text.contains("lost version 2; now at version 1"), "{text}");
    let back = alice.dir.path().join("back.bin");
    alice.run(&["get", "/a.bin", s(&back)]).ok();
    assert!(
        std::fs::read(&back).expect("back") == v1,
        "the older version"
    );

    // Changed in the bucket: only reading the bytes tells.
    let changed = server.stored_blob_of_size(7000 + 16);
    let mut bytes = server.blob_bytes(&changed);
    bytes[4000] ^= 0x01;
    server.replace_blob(&changed, &bytes);
    assert!(server.admin(&["fsck"]).ok().starts_with("clean: "));
    let out = server.admin(&["fsck", "--read-data"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("does not hold the bytes stored"),
        "{}",
        out.stdout
    );

    // Orphans: one older than the grace, one younger.
    let old = vault_e2e::BlobId::random();
    store
        .put_many(&[(old.clone(), b"nobody's")])
        .expect("orphan");
    std::thread::sleep(std::time::Duration::from_secs(4));
    let young = vault_e2e::BlobId::random();
    store
        .put_many(&[(young.clone(), b"too young")])
        .expect("orphan");
    let report: serde_json::Value =
        serde_json::from_str(server.admin(&["gc", "--json"]).ok()).expect("json");
    assert_eq!(report["orphan_blobs"], 1, "{report}");
    let left: Vec<_> = store
        .list()
        .expect("list")
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert!(!left.contains(&old), "the old orphan went");
    assert!(
        left.contains(&young),
        "an orphan younger than the grace stays"
    );
}
