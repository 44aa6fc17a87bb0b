//! End to end: the server's defences under attack, with real floods from several loopback
//! addresses (Linux answers for all of 127/8) against the real binary. Memory before login
//! stays bounded and a logged-in user elsewhere keeps working; connections that never say
//! hello or never log in are closed; a burst of concurrent logins is throttled exactly as
//! the same logins one after another, also across two server instances on one database;
//! a login flood leaves other addresses' logins fast.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vault_core::proto::{self, CLOSE_TOO_SLOW, ErrorCode, Request, Response, SecretBytes};
use vault_e2e::{Client, PASSWORD, TestServer, init_tls, raw};

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A frame header declaring `len` body bytes.
fn header(len: u32) -> [u8; 4] {
    len.to_be_bytes()
}

/// What the attackers saw.
#[derive(Debug, Default)]
struct FloodStats {
    connected: AtomicU64,
    refused: AtomicU64,
    /// Connections the server closed for not saying hello or not logging in in time.
    closed_too_slow: AtomicU64,
    streams: AtomicU64,
}

/// One attacking connection, again and again until `stop`: connect (some say hello first),
/// open up to 64 streams that each send only a header declaring 1 MiB, or a 60 KiB frame
/// with half its body, and hold them until the server closes the connection.
async fn attack_connection(
    endpoint: quinn::Endpoint,
    server: String,
    say_hello: bool,
    stop: Arc<AtomicBool>,
    stats: Arc<FloodStats>,
) {
    while !stop.load(Ordering::SeqCst) {
        let connected = if say_hello {
            raw::connect_with_hello(&endpoint, &server).await
        } else {
            raw::connect(&endpoint, &server).await
        };
        let Ok(conn) = connected else {
            stats.refused.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        stats.connected.fetch_add(1, Ordering::SeqCst);
        let mut streams = Vec::new();
        for i in 0..64u32 {
            let (conn, stats) = (conn.clone(), Arc::clone(&stats));
            streams.push(tokio::spawn(async move {
                let Ok((mut send, recv)) = conn.open_bi().await else {
                    return;
                };
                stats.streams.fetch_add(1, Ordering::SeqCst);
                let sent = if i % 2 == 0 {
                    send.write_all(&header(1 << 20)).await
                } else {
                    let mut frame = header(60 << 10).to_vec();
                    frame.resize(4 + (30 << 10), 0xA5);
                    send.write_all(&frame).await
                };
                if sent.is_ok() {
                    conn.closed().await;
                }
                drop((send, recv));
            }));
        }
        let reason = conn.closed().await;
        if let quinn::ConnectionError::ApplicationClosed(close) = &reason
            && close.error_code == quinn::VarInt::from_u32(CLOSE_TOO_SLOW)
        {
            stats.closed_too_slow.fetch_add(1, Ordering::SeqCst);
        }
        for s in streams {
            s.abort();
        }
    }
}

/// Runs `vault ls /` every `every` until `stop`; returns how long each took and the
/// failures' messages.
fn keep_listing(
    client: &Client,
    stop: &AtomicBool,
    every: Duration,
) -> (Vec<Duration>, Vec<String>) {
    let (mut took, mut failures) = (Vec::new(), Vec::new());
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let out = client.run(&["ls", "/"]);
        took.push(started.elapsed());
        if out.code != 0 || !out.stdout.contains("notes.txt") {
            failures.push(format!("exit {}: {}{}", out.code, out.stdout, out.stderr));
        }
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
    (took, failures)
}

fn percentile(mut samples: Vec<Duration>, p: f64) -> Duration {
    samples.sort();
    let rank = ((samples.len() as f64) * p).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

#[test]
fn a_flood_before_login_from_four_addresses_keeps_memory_bounded_and_other_users_working() {
    init_tls();
    let server = TestServer::start();
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let notes = alice.dir.path().join("notes.txt");
    std::fs::write(&notes, "a file to list").expect("write");
    alice
        .run(&["put", notes.to_str().expect("utf-8"), "/"])
        .ok();
    let rss_before = server.memory_kib("VmRSS");

    let flood_for = Duration::from_secs(60);
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(FloodStats::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut endpoints = Vec::new();
    for last in 2..=5 {
        let endpoint = {
            let _entered = runtime.enter();
            raw::endpoint_from(loopback(last))
        };
        for c in 0..64 {
            runtime.spawn(attack_connection(
                endpoint.clone(),
                server.addr.clone(),
                c % 2 == 0,
                Arc::clone(&stop),
                Arc::clone(&stats),
            ));
        }
        endpoints.push(endpoint);
    }

    let sampler = {
        let (stop, pid) = (Arc::clone(&stop), server.pid());
        std::thread::spawn(move || {
            let mut most = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let rss = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .unwrap_or(0);
                most = most.max(rss);
                std::thread::sleep(Duration::from_millis(100));
            }
            most
        })
    };
    let stopper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(flood_for);
            stop.store(true, Ordering::SeqCst);
        })
    };
    // Let the flood build up before the first measured listing.
    std::thread::sleep(Duration::from_secs(2));
    let (took, failures) = keep_listing(&alice, &stop, Duration::from_millis(250));
    stopper.join().expect("stopper");
    let sampled_peak = sampler.join().expect("sampler");
    let peak_kib = server.memory_kib("VmHWM");

    for endpoint in &endpoints {
        endpoint.close(0u8.into(), b"done");
    }
    std::thread::sleep(Duration::from_millis(500));
    runtime.shutdown_timeout(Duration::from_secs(1));
    // Give the server a moment to see the closes and free what the connections held.
    std::thread::sleep(Duration::from_secs(3));
    let rss_after = server.memory_kib("VmRSS");

    let p99 = percentile(took.clone(), 0.99);
    let report = format!(
        "flood: {stats:?}; listings {}, p50 {:?}, p99 {p99:?}, failures {failures:?}; \
         server RSS before {rss_before} KiB, sampled peak {sampled_peak} KiB, VmHWM {peak_kib} KiB, \
         after {rss_after} KiB",
        took.len(),
        percentile(took.clone(), 0.5),
    );
    println!("{report}");
    // The flood got what an address may have before login, and no more: 16 connections
    // at a time each (the rest refused), 4 streams on each.
    assert!(
        stats.connected.load(Ordering::SeqCst) >= 64
            && stats.streams.load(Ordering::SeqCst) >= 4 * 64
            && stats.refused.load(Ordering::SeqCst) > 0,
        "the flood reached the server: {report}"
    );
    assert!(
        stats.closed_too_slow.load(Ordering::SeqCst) > 0,
        "connections that never said hello were closed: {report}"
    );
    assert!(failures.is_empty(), "{report}");
    assert!(took.len() >= 100, "{report}");
    assert!(p99 <= Duration::from_secs(1), "{report}");
    assert!(peak_kib <= 256 * 1024, "{report}");
    assert!(
        rss_after <= rss_before + 32 * 1024,
        "memory is given back when the attackers leave: {report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_that_never_say_hello_or_never_log_in_are_closed() {
    init_tls();
    let server = TestServer::start_with("[limits]\nhello_timeout_s = 1\nlogin_timeout_s = 3\n");
    let endpoint = raw::endpoint_from(loopback(30));

    let silent = raw::connect(&endpoint, &server.addr)
        .await
        .expect("connect");
    let started = Instant::now();
    let reason = silent.closed().await;
    assert!(
        reason.to_string().contains("no hello within 1 s"),
        "{reason}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let idle = raw::connect_with_hello(&endpoint, &server.addr)
        .await
        .expect("connect");
    let started = Instant::now();
    let reason = idle.closed().await;
    assert!(
        reason.to_string().contains("not logged in within 3 s"),
        "{reason}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A logged-in connection stays, and so does its client's work.
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let session = alice.live_session().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !session.conn.is_closed(),
        "a logged-in connection is not closed"
    );
    vault_client::account::whoami_on(&session.conn)
        .await
        .expect("still serving after the deadlines");
}

#[tokio::test(flavor = "multi_thread")]
async fn before_login_frames_streams_and_connections_are_few_and_small() {
    init_tls();
    let server = TestServer::start_with("[limits]\nprelogin_connections_per_ip = 3\n");
    let endpoint = raw::endpoint_from(loopback(31));
    let conn = raw::connect_with_hello(&endpoint, &server.addr)
        .await
        .expect("connect");

    // A frame over the limit before login is refused from its header, saying why.
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(&header(65 << 10)).await.expect("write");
    let mut head = [0u8; 4];
    recv.read_exact(&mut head).await.expect("answer");
    let mut body = vec![0u8; proto::parse_header(head).expect("header")];
    recv.read_exact(&mut body).await.expect("answer body");
    match proto::decode_body::<Response>(&body).expect("decode") {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::TooLarge);
            assert!(
                e.message.contains("before login; log in first"),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }
    drop((send, recv, conn));

    // Four streams may be open before login; a fifth waits for one of them.
    let conn = raw::connect_with_hello(&endpoint, &server.addr)
        .await
        .expect("connect");
    let mut held = Vec::new();
    for _ in 0..4 {
        let (mut send, recv) = conn.open_bi().await.expect("stream");
        send.write_all(&header(100)).await.expect("write");
        held.push((send, recv));
    }
    let fifth = tokio::time::timeout(Duration::from_millis(500), conn.open_bi()).await;
    assert!(fifth.is_err(), "a fifth stream before login must wait");
    drop((held, conn));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Three connections of this address may be not logged in; a fourth is refused, and a
    // connection from another address is not affected.
    let _first = raw::connect(&endpoint, &server.addr).await.expect("first");
    let _second = raw::connect(&endpoint, &server.addr).await.expect("second");
    let _third = raw::connect(&endpoint, &server.addr).await.expect("third");
    assert!(raw::connect(&endpoint, &server.addr).await.is_err());
    let elsewhere = raw::endpoint_from(loopback(32));
    raw::connect_with_hello(&elsewhere, &server.addr)
        .await
        .expect("another address");
}

/// The auth key `password` gives for `username` on `server` (what `vault login` sends).
async fn auth_key(conn: &quinn::Connection, username: &str, password: &str) -> Vec<u8> {
    let (salt, kdf) = match raw::call(
        conn,
        &Request::Prelogin {
            username: username.into(),
        },
    )
    .await
    .expect("prelogin")
    {
        Response::Prelogin { salt, kdf } => (salt, kdf),
        other => panic!("{other:?}"),
    };
    let keys = vault_client::keys::derive(password.as_bytes(), &salt, &kdf).expect("derive");
    keys.auth_key.dangerously_leak_secret().to_vec()
}

fn login(username: &str, auth_key: &[u8]) -> Request {
    Request::Login {
        username: username.into(),
        auth_key: SecretBytes::new(auth_key.to_vec()),
    }
}

/// How a burst of logins was answered.
#[derive(Debug, Default)]
struct Answers {
    wrong_password: usize,
    throttled: usize,
    logged_in: usize,
    other: Vec<String>,
}

impl Answers {
    fn count(&mut self, answer: &Result<Response, String>) {
        match answer {
            Ok(Response::Error(e)) if e.code == ErrorCode::InvalidCredentials => {
                self.wrong_password += 1
            }
            Ok(Response::Error(e)) if matches!(e.code, ErrorCode::Throttled { .. }) => {
                self.throttled += 1
            }
            Ok(Response::LoggedIn(_)) => self.logged_in += 1,
            other => self.other.push(format!("{other:?}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_wrong_logins_across_two_instances_checks_at_most_five_and_refuses_the_right_one()
 {
    init_tls();
    let first = TestServer::start();
    let second = first.second_instance("");
    Client::new().register(&first, "alice", "alice@example.org");

    // 16 connections from 8 addresses, half to each instance, all said hello.
    let mut conns = Vec::new();
    for i in 0..16u8 {
        let endpoint = raw::endpoint_from(loopback(40 + i / 2));
        let server = if i % 2 == 0 { &first } else { &second };
        conns.push(
            raw::connect_with_hello(&endpoint, &server.addr)
                .await
                .expect("connect"),
        );
    }
    let right = auth_key(&conns[0], "alice", PASSWORD).await;
    let wrong = auth_key(&conns[0], "alice", "not the password at all").await;

    let mut burst = Vec::new();
    for i in 0..200usize {
        let conn = conns[i % conns.len()].clone();
        let request = login("alice", &wrong);
        burst.push(tokio::spawn(
            async move { raw::call(&conn, &request).await },
        ));
    }
    let last = {
        let conn = conns[7].clone();
        let request = login("alice", &right);
        tokio::spawn(async move { raw::call(&conn, &request).await })
    };
    let mut answers = Answers::default();
    for answer in burst {
        answers.count(&answer.await.expect("join"));
    }
    let last = last.await.expect("join");
    println!("burst: {answers:?}; the right password: {last:?}");
    assert!(answers.other.is_empty(), "{answers:?}");
    assert_eq!(answers.logged_in, 0);
    assert!(
        (1..=5).contains(&answers.wrong_password),
        "at most five checked before the lock: {answers:?}"
    );
    assert_eq!(answers.wrong_password + answers.throttled, 200);
    match last {
        Ok(Response::Error(e)) => assert!(matches!(e.code, ErrorCode::Throttled { .. }), "{e:?}"),
        other => panic!("the right password in the burst must be refused: {other:?}"),
    }
}

#[test]
fn a_login_flood_from_four_addresses_leaves_a_login_elsewhere_fast() {
    init_tls();
    let server = TestServer::start_with_default_auth_hash("");
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    alice.run(&["logout"]).ok();
    let started = Instant::now();
    alice.login("alice", PASSWORD).ok();
    let unhurried = started.elapsed();
    alice.run(&["logout"]).ok();

    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let sent = Arc::new(AtomicU64::new(0));
    for last in 50..54 {
        let endpoint = {
            let _entered = runtime.enter();
            raw::endpoint_from(loopback(last))
        };
        for c in 0..4 {
            let (endpoint, server, stop, sent) = (
                endpoint.clone(),
                server.addr.clone(),
                Arc::clone(&stop),
                Arc::clone(&sent),
            );
            runtime.spawn(async move {
                let Ok(conn) = raw::connect_with_hello(&endpoint, &server).await else {
                    return;
                };
                // 1,000 at once across the 16 connections, then as fast as answered.
                let mut inflight = tokio::task::JoinSet::new();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    while inflight.len() < 63 {
                        let request = login(&format!("user{:02}", (n + c) % 50), &[7u8; 32]);
                        let conn = conn.clone();
                        inflight.spawn(async move { raw::call(&conn, &request).await });
                        n += 1;
                        sent.fetch_add(1, Ordering::SeqCst);
                    }
                    inflight.join_next().await;
                }
            });
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut took = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        alice.login("alice", PASSWORD).ok();
        took.push(started.elapsed());
        alice.run(&["logout"]).ok();
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::SeqCst);
    runtime.shutdown_timeout(Duration::from_secs(1));
    let sent = sent.load(Ordering::SeqCst);
    println!(
        "wrong logins sent: {sent}; alice's logins took {took:?} (before the flood: {unhurried:?})"
    );
    assert!(sent >= 1000, "{sent}");
    let slowest = took.iter().max().copied().unwrap_or_default();
    assert!(slowest <= Duration::from_secs(2), "{took:?}");
}
