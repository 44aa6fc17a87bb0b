//! End to end: faults the user should barely notice. A server killed and restarted in the
//! middle of a large put is rejoined within seconds (its stateless reset key survives the
//! restart, so the client learns at once that the old connection is gone) and the put
//! finishes intact. A full disk (a small tmpfs, filled) is reported as "no storage space",
//! never as an internal error; deleting frees it, and the server restarts on it.

use std::path::Path;
use std::time::{Duration, Instant};

use vault_e2e::small_disk::SmallDisk;
use vault_e2e::{Client, Out, TestServer};

/// A file of `mib` MiB whose every MiB differs.
fn write_big(path: &Path, mib: usize, seed: u64) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut block = vec![0u8; 1 << 20];
    // Each seed its own bytes: files of one space that share content share chunks.
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed.wrapping_mul(0xD6E8_FEB8_6659_FD93) | 1;
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        file.write_all(&block).expect("write");
    }
    file.flush().expect("flush");
}

#[test]
fn a_server_killed_and_restarted_during_a_put_is_rejoined_within_seconds() {
    let mut server = TestServer::start_with("[files]\nblob_grace_s = 0\n");
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let big = alice.dir.path().join("big.bin");
    let big_str = big.to_str().expect("utf-8");

    let mut rejoined = Vec::new();
    for round in 0..10 {
        // New bytes each round: chunks of the space are stored once.
        write_big(&big, 200, round);
        let remote = format!("/big{round}.bin");
        // What earlier rounds left (chunks no version uses wait for gc's grace).
        let base = server.upload_bytes();
        let put = alice.spawn_piped(&["put", big_str, &remote]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while server.upload_bytes() < base + (20 << 20) {
            assert!(
                Instant::now() < deadline,
                "round {round}: the upload never got going"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server.kill_hard();
        server.restart(|_| {});
        let restarted = Instant::now();
        let before = server.upload_bytes();
        let deadline = restarted + Duration::from_secs(90);
        while server.upload_bytes() <= before {
            if Instant::now() > deadline {
                let out = put.wait_with_output().expect("wait for put");
                panic!(
                    "round {round}: no byte arrived within 90 s of the restart; the client said: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        rejoined.push(restarted.elapsed());
        let out = put.wait_with_output().expect("wait for put");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "round {round}: {stderr}");
        assert!(
            stderr.contains("the connection was lost") && !stderr.contains("timed out"),
            "round {round}: the client says what happened: {stderr}"
        );
        if round == 0 {
            let back = alice.dir.path().join("back.bin");
            alice
                .run(&["get", &remote, back.to_str().expect("utf-8")])
                .ok();
            assert!(
                std::fs::read(&back).expect("read") == std::fs::read(&big).expect("read"),
                "the file came back intact"
            );
            std::fs::remove_file(&back).expect("remove");
        }
        alice.run(&["rm", &remote]).ok();
        alice.run(&["trash", "empty", "--yes"]).ok();
        server.admin(&["gc"]).ok();
    }
    rejoined.sort();
    let median = rejoined[rejoined.len() / 2];
    println!("rejoined after the restart: {rejoined:?}, median {median:?}");
    assert!(median <= Duration::from_secs(3), "{rejoined:?}");
}

/// A failure that tells the person the disk is full, never an internal error.
fn says_no_space(what: &str, out: &Out) {
    assert_eq!(out.code, 1, "{what}: {}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("no storage space") && !out.stderr.contains("internal server error"),
        "{what}: {}",
        out.stderr
    );
}

/// On a full disk a command either still works or says so; never an internal error.
fn works_or_says_no_space(what: &str, out: &Out) {
    assert!(
        out.code == 0 || out.stderr.contains("no storage space"),
        "{what}: {}{}",
        out.stdout,
        out.stderr
    );
    assert!(
        !out.stderr.contains("internal server error"),
        "{what}: {}",
        out.stderr
    );
}

fn open_uploads(server: &TestServer) -> u64 {
    let stats: serde_json::Value =
        serde_json::from_str(server.admin(&["stats", "--json"]).ok()).expect("stats json");
    stats["uploads_in_progress"]
        .as_u64()
        .expect("uploads_in_progress")
}

fn partials(server: &TestServer) -> usize {
    std::fs::read_dir(server.data_dir().join("blobs").join("partial"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_full_disk_says_no_storage_space_and_deleting_frees_it() {
    let disk = SmallDisk::mount(64);
    let mut server = TestServer::start_on_disk(
        &disk,
        "[storage]\nmin_free = \"8MiB\"\nreserve = \"4MiB\"\n[files]\nblob_grace_s = 0\n",
    );
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let local = alice.dir.path();
    std::fs::write(local.join("keep.txt"), "kept through it all").expect("write");
    let file = |name: &str, mib: usize| {
        let path = local.join(name);
        write_big(&path, mib, name.bytes().map(u64::from).sum());
        path.to_str().expect("utf-8").to_string()
    };
    let (big1, big2, ten, small) = (
        file("big1", 20),
        file("big2", 20),
        file("ten", 10),
        file("small", 0),
    );
    std::fs::write(&small, "a small file").expect("write");
    let keep = local.join("keep.txt").to_str().expect("utf-8").to_string();
    for (f, to) in [(&keep, "/keep.txt"), (&big1, "/big1"), (&big2, "/big2")] {
        alice.run(&["put", f, to]).ok();
    }
    let stats = server.admin(&["stats"]);
    assert!(stats.ok().contains("free of"), "{}", stats.stdout);

    // What would cross the floor is refused before a byte is stored.
    let big3 = file("big3", 20);
    says_no_space("a put over the floor", &alice.run(&["put", &big3, "/big3"]));
    assert_eq!((open_uploads(&server), partials(&server)), (0, 0));

    // The disk fills while a put is under way (something else on the machine): the put
    // is told, and its partial bytes and its upload go at once.
    let put = alice.spawn_piped(&["put", &ten, "/ten", "--bwlimit", "2MiB"]);
    std::thread::sleep(Duration::from_millis(1500));
    disk.fill("filler1");
    let out = Out::from(put.wait_with_output().expect("put"));
    says_no_space("a put the disk filled under", &out);
    assert!(
        SmallDisk::wait_until(Duration::from_secs(10), || open_uploads(&server) == 0
            && partials(&server) == 0),
        "the stopped upload was released"
    );
    // Whatever filled the disk takes what the stopped upload gave back too; the server
    // then releases its reserve so that deletions keep working. (It may have done so
    // already when the disk first filled, and the filler then took that space too.)
    disk.fill("filler1b");
    let reserve = server.data_dir().join("reserve");
    assert!(
        SmallDisk::wait_until(Duration::from_secs(10), || server
            .log()
            .contains("released the reserve")
            && !reserve.exists()),
        "the reserve was released: {}",
        server.log()
    );

    // Full to the last byte (the filler took the reserve too): everything that stores
    // something says so.
    disk.fill("filler2");
    says_no_space("a small put", &alice.run(&["put", &small, "/small"]));
    works_or_says_no_space("mkdir", &alice.run(&["mkdir", "/new"]));
    let rm = alice.run(&["rm", "/keep.txt"]);
    works_or_says_no_space("rm", &rm);
    let bob = Client::new();
    let register = bob.register_start(&server, "bob", "bob@example.org");
    works_or_says_no_space("register", &register);
    let (_, login) = Client::login_to(&server, "alice", vault_e2e::PASSWORD);
    works_or_says_no_space("login", &login);

    // What the fillers took after the reserve was released comes back (whichever took
    // it): delete, empty the trash, collect, and carry on.
    disk.unfill("filler2");
    disk.unfill("filler1b");
    if rm.code == 0 {
        alice.run(&["trash", "restore", "/keep.txt"]).ok();
    }
    alice.run(&["rm", "/big1"]).ok();
    alice.run(&["rm", "/big2"]).ok();
    alice.run(&["trash", "empty", "--yes"]).ok();
    server.admin(&["gc"]).ok();
    assert!(
        disk.free() > 30 << 20,
        "deleting gave the space back: {}",
        disk.free()
    );
    alice.run(&["put", &ten, "/ten"]).ok();
    let fsck = server.admin(&["fsck"]);
    assert!(fsck.ok().starts_with("clean"), "{}", fsck.stdout);
    for (remote, original) in [("/keep.txt", &keep), ("/ten", &ten)] {
        let back = local.join("back");
        let _ = std::fs::remove_file(&back);
        alice
            .run(&["get", remote, back.to_str().expect("utf-8")])
            .ok();
        assert!(
            std::fs::read(&back).expect("read") == std::fs::read(original).expect("read"),
            "{remote} came back intact"
        );
    }

    // A restart on a full disk: the reserve (made again once there was room) is
    // released first, so the server starts, serves reads and deletions.
    assert!(
        SmallDisk::wait_until(Duration::from_secs(10), || disk
            .outside(&disk.mount.join("data").join("reserve"))
            .exists()),
        "the reserve is made again"
    );
    disk.unfill("filler1");
    disk.fill("filler3");
    server.kill_hard();
    server.restart(|_| {});
    let back = local.join("back");
    let _ = std::fs::remove_file(&back);
    alice
        .run(&["get", "/keep.txt", back.to_str().expect("utf-8")])
        .ok();
    alice.run(&["rm", "/ten"]).ok();

    // Without a reserve to release, a SQLite database on the full disk cannot open: the
    // start fails naming the disk. (PostgreSQL keeps its database elsewhere: the server
    // starts and serves.)
    server.stop();
    disk.fill("filler4");
    let on_sqlite = std::env::var("VAULT_TEST_POSTGRES_URL").map_or(true, |u| u.is_empty());
    let start = server.start_that_fails(Duration::from_secs(if on_sqlite { 20 } else { 5 }));
    if on_sqlite {
        assert_ne!(start.code, 0, "{}", start.stderr);
        assert!(
            start
                .stderr
                .contains(&disk.mount.join("data").display().to_string())
                && start.stderr.contains("is full"),
            "{}",
            start.stderr
        );
    } else {
        assert!(
            start.stdout.contains("vault-server listening"),
            "{}",
            start.stderr
        );
    }
}

/// `put -r` of 2,000 small files (many batches), killed 20 times at moments spread over
/// a run, then run to the end: the uploads a killed client opened are aborted by the next
/// command (even those whose answer never reached it), none is left open at the end, and
/// the quota counts exactly what is stored.
#[test]
fn a_put_r_killed_20_times_leaves_no_upload_open_and_the_quota_exact() {
    let server = TestServer::start();
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let tree = alice.dir.path().join("many");
    for i in 0..2000 {
        let dir = tree.join(format!("d{:02}", i % 20));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let text = format!("file {i} ").repeat(1 + i % 40);
        std::fs::write(dir.join(format!("f{i:04}.txt")), text).expect("write");
    }
    let tree = tree.to_str().expect("utf-8");
    let records = alice.state_dir().join("uploads").join("batches");

    // How long one whole run takes, to spread the kills over it.
    let started = Instant::now();
    alice.run(&["put", "-r", tree, "/first"]).ok();
    let whole = started.elapsed();

    let mut left_by_kills = 0;
    let mut left_before: Vec<i64> = Vec::new();
    for round in 0..20u32 {
        let run_started = Instant::now();
        let mut put = alice.spawn(&["put", "-r", tree, &format!("/run{round}")]);
        // From 5 % to 95 % of a run, in a scattered order.
        let at = whole.mul_f64(0.05 + 0.9 * f64::from((round * 7) % 20) / 19.0);
        // Once this run notes a batch of its own, it has cleaned up what the last kill
        // left: only its own uploads may be open.
        let own = format!("{}-", put.id());
        loop {
            let noted = std::fs::read_dir(&records).is_ok_and(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(&own))
            });
            let exited = put.try_wait().expect("poll vault").is_some();
            if noted || exited {
                let open: Vec<i64> = server.open_uploads().iter().map(|u| u.0).collect();
                let kept: Vec<&i64> = left_before.iter().filter(|id| open.contains(id)).collect();
                assert!(
                    kept.is_empty(),
                    "round {round}: uploads a killed run opened are still open: {kept:?}"
                );
                break;
            }
            assert!(
                run_started.elapsed() < Duration::from_secs(60),
                "round {round}: the run never got going"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(rest) = at.checked_sub(run_started.elapsed()) {
            std::thread::sleep(rest);
        }
        put.kill().expect("kill vault");
        put.wait().expect("wait");
        // The server finishes what had reached it: the open uploads stop changing.
        left_before = server.open_uploads().iter().map(|u| u.0).collect();
        let settle = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now: Vec<i64> = server.open_uploads().iter().map(|u| u.0).collect();
            if now == left_before || settle.elapsed() > Duration::from_secs(10) {
                break;
            }
            left_before = now;
        }
        left_by_kills += left_before.len();
    }
    println!(
        "a whole run took {whole:?}; the 20 kills left {left_by_kills} uploads open for the next \
         command to abort"
    );

    // The last run, to the end: it aborts what the last kill left and finishes.
    let out = alice.run(&["put", "-r", tree, "/run19", "--json"]);
    let done: serde_json::Value = serde_json::from_str(out.ok()).expect("put json");
    assert_eq!(done["files"], 2000, "{}", out.stdout);
    assert_eq!(server.open_uploads(), [], "uploads left open");
    let left: Vec<_> = std::fs::read_dir(&records)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "batch records left: {left:?}");
    assert!(server.admin(&["fsck"]).ok().starts_with("clean: "));

    // The quota is exact: room for 1000 more bytes (1016 sealed) takes a 1000-byte file
    // and then not one byte more.
    let show: serde_json::Value =
        serde_json::from_str(server.admin(&["user", "show", "alice", "--json"]).ok())
            .expect("user show json");
    let used = show["used_bytes"].as_i64().expect("used_bytes");
    let quota = (used + 1016).to_string();
    server.admin(&["user", "set-quota", "alice", &quota]).ok();
    let fits = alice.dir.path().join("fits.bin");
    std::fs::write(&fits, vec![7u8; 1000]).expect("write");
    alice
        .run(&["put", fits.to_str().expect("utf-8"), "/fits.bin"])
        .ok();
    let over = alice.dir.path().join("over.bin");
    std::fs::write(&over, b"x").expect("write");
    alice
        .run(&["put", over.to_str().expect("utf-8"), "/over.bin"])
        .fails_with("quota");
}
