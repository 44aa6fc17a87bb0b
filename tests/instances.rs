//! Several `vault-server` instances of one deployment: one database, one blob store (a
//! bucket when `VAULT_TEST_S3_*` names one), one certificate.

use std::path::Path;

use std::time::{Duration, Instant};

use vault_e2e::{Client, Listener, PASSWORD, TestServer, random_bytes};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `[tls]` naming the certificate and key of `first`, for the other instances.
fn same_certificate(first: &TestServer) -> String {
    let tls = first.data_dir().join("tls");
    format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        tls.join("cert.pem").display(),
        tls.join("key.pem").display()
    )
}

#[test]
fn instances_given_one_certificate_present_one_fingerprint_and_a_missing_one_is_named() {
    let first = TestServer::start();
    let second = first.second_instance(&same_certificate(&first));
    let third = first.second_instance(&same_certificate(&first));
    assert_eq!(second.fingerprint, first.fingerprint);
    assert_eq!(third.fingerprint, first.fingerprint);
    let own = first.second_instance("");
    assert_ne!(own.fingerprint, first.fingerprint, "without [tls] its own");

    // vault-admin shows the configured certificate.
    let shown = second.admin(&["cert", "show", "--json"]);
    let info: serde_json::Value = serde_json::from_str(shown.ok()).expect("json");
    assert_eq!(info["fingerprint"], first.fingerprint.as_str());

    // A client that pinned the first instance's fingerprint logs in on the second.
    Client::new().register(&first, "alice", "alice@example.org");
    let (_client, out) = Client::login_to(&second, "alice", PASSWORD);
    out.ok();

    let mut broken = first.second_instance("");
    broken.stop();
    std::fs::write(
        broken.config_path(),
        std::fs::read_to_string(broken.config_path()).expect("config")
            + "[tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n",
    )
    .expect("config");
    let out = broken.start_that_fails(std::time::Duration::from_secs(20));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("tls.cert_file = /nonexistent/cert.pem: no such file"),
        "{}",
        out.stderr
    );
}

#[test]
fn five_wrong_passwords_spread_over_three_instances_lock_the_account() {
    let a = TestServer::start();
    let b = a.second_instance(&same_certificate(&a));
    let c = a.second_instance(&same_certificate(&a));
    Client::new().register(&a, "alice", "alice@example.org");
    for (i, server) in [&a, &b, &c, &a, &b].into_iter().enumerate() {
        let (_client, out) = Client::login_to(server, "alice", "a wrong password here");
        assert_ne!(out.code, 0, "wrong password #{i} refused");
        assert!(
            out.stderr.contains("invalid username or password"),
            "#{i}: {}",
            out.stderr
        );
    }
    // The right password, now, on the instance that saw only one failure.
    let (_client, out) = Client::login_to(&c, "alice", PASSWORD);
    assert_ne!(out.code, 0, "the account is locked on every instance");
    assert!(
        out.stderr.contains("try again in"),
        "the lock says how long: {}",
        out.stderr
    );
}

/// Needs a shared blob store: on the local store each instance has its own directory.
#[test]
fn a_file_put_on_one_instance_is_listed_and_downloaded_on_the_others() {
    let a = TestServer::start();
    if !a.on_s3() {
        eprintln!("VAULT_TEST_S3_ENDPOINT is not set: instances share no blob store; skipped");
        return;
    }
    let b = a.second_instance(&same_certificate(&a));
    let c = a.second_instance(&same_certificate(&a));
    let alice = Client::new();
    alice.register(&a, "alice", "alice@example.org");
    let data: Vec<u8> = (0..9 * (1 << 20) + 77)
        .map(|i: usize| (i * 7 % 253) as u8)
        .collect();
    let local = alice.dir.path().join("big.bin");
    std::fs::write(&local, &data).expect("write");
    alice.run(&["put", s(&local), "/big.bin"]).ok();

    for server in [&b, &c] {
        let (other, out) = Client::login_to(server, "alice", PASSWORD);
        out.ok();
        assert!(other.run(&["ls"]).ok().contains("big.bin"));
        let back = other.dir.path().join("back.bin");
        other.run(&["get", "/big.bin", s(&back)]).ok();
        assert!(
            std::fs::read(&back).expect("back") == data,
            "the same bytes"
        );
    }
}

fn on_postgres() -> bool {
    std::env::var("VAULT_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty())
}

/// A client of `user` logged in on `server` (registered elsewhere).
fn logged_in(server: &TestServer, user: &str) -> Client {
    let (client, out) = Client::login_to(server, user, PASSWORD);
    out.ok();
    client
}

/// On PostgreSQL the relay (`LISTEN`/`NOTIFY`) carries wake-ups and events between
/// instances at once; on SQLite a listener reads the database every 2 s, and events such as
/// contact requests stay on their instance.
#[test]
fn chat_crosses_instances_messages_at_once_and_events_on_postgresql() {
    let a = TestServer::start();
    let b = a.second_instance(&same_certificate(&a));
    let alice = Client::new();
    alice.register(&a, "alice", "alice@example.org");
    Client::new().register(&b, "bob", "bob@example.org");
    Client::new().register(&b, "carol", "carol@example.org");
    let bob = logged_in(&b, "bob");
    let listener = Listener::start(&bob);
    listener.settle();

    alice.run(&["contact", "add", "bob"]).ok();
    if on_postgres() {
        let request = listener.next("contact_request", Duration::from_secs(2));
        assert_eq!(request["from"], "alice", "{request}");
    }
    bob.run(&["contact", "accept", "alice"]).ok();

    let limit = if on_postgres() {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3)
    };
    for text in ["across instances", "and again"] {
        alice.run(&["chat", "send", "bob", text]).ok();
        let sent = Instant::now();
        let m = listener.next("message", Duration::from_secs(10));
        let latency = sent.elapsed();
        assert_eq!(m["text"], text, "{m}");
        assert!(
            latency < limit,
            "delivered {latency:?} after the send on the other instance finished"
        );
        println!("message from instance A to a listener on B: {latency:?}");
    }

    // An operator's kick reaches the listener's instance.
    let kicked = Instant::now();
    a.admin(&["user", "kick", "bob"]).ok();
    let mut listener = listener;
    loop {
        if listener.child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(
            kicked.elapsed() < Duration::from_secs(10),
            "listen did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "kick on A ended the listener on B after {:?}",
        kicked.elapsed()
    );
    let out = listener.stop();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("session ended"), "{stderr}");
}

/// Whether `who` shows as online in `c`'s contact list.
fn shows_online(c: &Client, who: &str) -> bool {
    let list: serde_json::Value =
        serde_json::from_str(c.run(&["contact", "list", "--json"]).ok()).expect("json");
    let entry = list
        .as_array()
        .expect("contacts")
        .iter()
        .find(|e| e["username"] == who)
        .unwrap_or_else(|| panic!("{who} not in {list}"))
        .clone();
    entry["online"].as_bool().expect("online flag")
}

/// Presence is the deployment's, not an instance's: a user listening on instance A is
/// online in a contact list read through B, and offline there once A notices their
/// listen has gone; on PostgreSQL B's listeners also hear both changes at once.
#[test]
fn presence_is_shared_by_the_instances() {
    // A notices a killed client's connection within seconds.
    let a = TestServer::start_with("[limits]\nidle_timeout_s = 3\n");
    let b = a.second_instance(&same_certificate(&a));
    let alice = Client::new();
    alice.register(&a, "alice", "alice@example.org");
    let bob = Client::new();
    bob.register(&b, "bob", "bob@example.org");
    alice.run(&["contact", "add", "bob"]).ok();
    bob.run(&["contact", "accept", "alice"]).ok();
    let bob_hears = Listener::start(&bob);
    bob_hears.settle();
    assert!(!shows_online(&bob, "alice"));

    let alice_listens = Listener::start(&alice);
    if on_postgres() {
        let came = bob_hears.next("presence", Duration::from_secs(5));
        assert_eq!(
            (&came["username"], &came["online"]),
            (&"alice".into(), &true.into()),
            "{came}"
        );
    } else {
        alice_listens.settle();
    }
    assert!(
        shows_online(&bob, "alice"),
        "alice listens on A; bob asks B"
    );
    assert!(shows_online(&alice, "bob"), "and the other way round");

    alice_listens.stop();
    let gone = Instant::now();
    if on_postgres() {
        let went = bob_hears.next("presence", Duration::from_secs(15));
        assert_eq!(
            (&went["username"], &went["online"]),
            (&"alice".into(), &false.into()),
            "{went}"
        );
        assert!(went["last_seen"].is_number(), "{went}");
        println!(
            "a listen killed on A was offline on B after {:?}",
            gone.elapsed()
        );
    }
    while shows_online(&bob, "alice") {
        assert!(
            gone.elapsed() < Duration::from_secs(15),
            "alice still online"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    bob_hears.stop();
}

/// A client of alice logged in with every address of `list` (`--server a,b,c`).
fn logged_in_to_all(list: &str, fingerprint: &str) -> Client {
    let alice = Client::new();
    alice
        .run_stdin(
            &[
                "login",
                "alice",
                "--server",
                list,
                "--fingerprint",
                fingerprint,
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        )
        .ok();
    alice
}

/// With several addresses the client remembers, in its state directory, which one answered
/// last: once the first-listed instance is gone, one command waits for it and the next
/// ones go straight to the instance that works.
#[test]
fn after_an_instance_dies_only_the_first_command_waits_for_it() {
    let mut a = TestServer::start();
    let b = a.second_instance(&same_certificate(&a));
    Client::new().register(&a, "alice", "alice@example.org");
    let list = format!("{},{}", a.addr, b.addr);
    let alice = logged_in_to_all(&list, &a.fingerprint);
    alice.run(&["ls", "/"]).ok();
    a.kill_hard();
    let timed = |args: &[&str]| {
        let started = Instant::now();
        alice.run(args).ok();
        started.elapsed()
    };
    let first = timed(&["ls", "/"]);
    let next = [timed(&["ls", "/"]), timed(&["whoami"])];
    println!("after the kill: first command {first:?}, the next {next:?}");
    assert!(
        first >= Duration::from_secs(3),
        "the first command waited for the dead instance: {first:?}"
    );
    for took in next {
        assert!(
            took < Duration::from_secs(2),
            "later commands go straight to the live instance: {took:?}"
        );
    }
    let remembered =
        std::fs::read_to_string(alice.state_dir().join("last-server")).expect("last-server");
    assert_eq!(remembered.trim(), b.addr);
}

/// A client given three instances (`--server a,b,c`) keeps going when the one it uses is
/// killed in the middle of a 200 MiB upload: it reconnects to another, resumes the upload
/// where the store holds it, and the bytes come back equal. Needs a shared blob store.
#[test]
fn an_upload_interrupted_by_a_killed_instance_finishes_on_another() {
    let mut a = TestServer::start();
    if !a.on_s3() {
        eprintln!("VAULT_TEST_S3_ENDPOINT is not set: instances share no blob store; skipped");
        return;
    }
    let b = a.second_instance(&same_certificate(&a));
    let c = a.second_instance(&same_certificate(&a));
    Client::new().register(&a, "alice", "alice@example.org");
    let list = format!("{},{},{}", a.addr, b.addr, c.addr);
    let alice = logged_in_to_all(&list, &a.fingerprint);

    let data = random_bytes(200 << 20, 11);
    let local = alice.dir.path().join("big.bin");
    std::fs::write(&local, &data).expect("write");
    let mut put = alice.spawn(&["put", "--bwlimit", "25MiB", s(&local), "/big.bin"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while a.upload_bytes() < 40 << 20 {
        assert!(Instant::now() < deadline, "the upload did not get going");
        std::thread::sleep(Duration::from_millis(100));
    }
    a.kill_hard();
    let killed = Instant::now();
    let status = put.wait().expect("wait for put");
    assert!(
        status.success(),
        "put finished on another instance: {status:?}"
    );
    println!("put finished {:?} after the kill", killed.elapsed());

    let back = alice.dir.path().join("back.bin");
    alice.run(&["get", "/big.bin", s(&back)]).ok();
    assert!(
        std::fs::read(&back).expect("back") == data,
        "the same bytes"
    );
    // Consistent, but for chunks the killed instance stored and had not yet recorded:
    // blobs nothing names, which gc collects after the grace period.
    let fsck = b.admin(&["fsck", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&fsck.stdout).expect("fsck --json");
    let findings = report["findings"].as_array().expect("findings");
    assert!(
        findings.iter().all(|f| f["kind"] == "orphan_blob"),
        "fsck finds nothing but orphan blobs: {report}"
    );
    assert!(
        findings.len() <= 4,
        "at most the chunks in flight: {report}"
    );
    assert!(a.partial_lens().is_empty(), "no partial is left");
}

/// `vault sync --watch` connected to one instance hears of an upload through another at
/// once: the new revision crosses through the relay (PostgreSQL), not at the next
/// rescan (10 minutes away). Instances share files only through a bucket.
#[test]
fn a_watch_on_one_instance_hears_of_an_upload_through_another() {
    let a = TestServer::start();
    if !a.on_s3() || !on_postgres() {
        eprintln!("needs VAULT_TEST_S3_ENDPOINT and VAULT_TEST_POSTGRES_URL; skipped");
        return;
    }
    let b = a.second_instance(&same_certificate(&a));
    let alice = Client::new();
    alice.register(&a, "alice", "alice@example.org");
    let watcher = logged_in(&b, "alice");
    let dir = watcher.dir.path().join("W");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut child = watcher.spawn(&["sync", s(&dir), "/w", "--watch"]);
    let state = dir.join(".vault-sync").join("state.json");
    let start = Instant::now();
    while !state.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "the first round");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));

    let local = alice.dir.path().join("x.txt");
    std::fs::write(&local, "put through instance A").expect("write");
    alice.run(&["put", s(&local), "/w/x.txt"]).ok();
    let put = Instant::now();
    while std::fs::read_to_string(dir.join("x.txt")).ok().as_deref()
        != Some("put through instance A")
    {
        assert!(
            put.elapsed() < Duration::from_secs(15),
            "the watch on instance B did not hear of the upload through A"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "an upload through A reached a watch on B in {:?}",
        put.elapsed()
    );
    let _ = child.kill();
    let _ = child.wait();
}
