//! End to end: `[metrics] listen` serves Prometheus metrics over plain HTTP from the real
//! `vault-server`. A scrape before and after real work through `vault` (register, login,
//! an upload, a wrong password) shows the request, login, mail, byte, database,
//! blob-store and gc counters moving; another path is 404; nothing names a user or a
//! file; and a server without the key listens on no TCP port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use vault_e2e::{Client, PASSWORD, TestServer};

/// `GET path` over a fresh TCP connection: the status line and the body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("the endpoint answers and closes");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

fn scrape(addr: &str) -> String {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    body
}

/// The sum of every series of `name` whose labels include all of `labels`.
fn value(body: &str, name: &str, labels: &[&str]) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name && labels.iter().all(|label| rest.contains(label))
        })
        .map(|(_, v)| v.parse::<f64>().expect("a number"))
        .sum()
}

/// The metrics address the server logged at start.
fn metrics_addr(server: &TestServer) -> String {
    let log = server.log();
    let at = log
        .find("metrics served at http://")
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
    let rest = &log[at + "metrics served at http://".len()..];
    rest[..rest.find("/metrics").expect("the path")].to_owned()
}

#[test]
fn the_metrics_endpoint_counts_requests_logins_bytes_and_storage() {
    let server =
        TestServer::start_with("[metrics]\nlisten = \"127.0.0.1:0\"\n[files]\ngc_interval_s = 1\n");
    let addr = metrics_addr(&server);
    assert_eq!(
        tcp_listeners(server.pid()),
        1,
        "the metrics socket, and only it"
    );
    let before = scrape(&addr);

    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    alice.login("alice", PASSWORD).ok();
    let local = alice.state_dir().join("report-2026.bin");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &content).expect("write");
    alice
        .run(&["put", local.to_str().expect("utf-8"), "/report-2026.bin"])
        .ok();
    let (_, out) = Client::login_to(&server, "alice", "not the password");
    out.fails_with("invalid username or password");

    // gc runs every second; wait for its first round.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let body = scrape(&addr);
        if value(&body, "vault_gc_runs_total", &[]) >= 1.0 || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let moved =
        |name: &str, labels: &[&str]| value(&after, name, labels) - value(&before, name, labels);

    let ok_logins = ["kind=\"login\"", "result=\"ok\""];
    assert!(moved("vault_requests_total", &ok_logins) >= 1.0, "{after}");
    let refused = ["kind=\"login\"", "result=\"invalid_credentials\""];
    assert!(moved("vault_requests_total", &refused) >= 1.0, "{after}");
    assert!(
        moved("vault_requests_total", &["kind=\"register_start\""]) >= 1.0,
        "{after}"
    );
    assert!(
        moved("vault_request_duration_seconds_count", &["kind=\"login\""]) >= 2.0,
        "{after}"
    );
    // A real histogram, with buckets.
    assert!(
        after.contains("vault_request_duration_seconds_bucket{kind=\"login\",le=\"0.001\"}"),
        "{after}"
    );
    assert_eq!(
        moved("vault_logins_total", &["result=\"ok\""]),
        1.0,
        "{after}"
    );
    assert_eq!(
        moved("vault_logins_total", &["result=\"failed\""]),
        1.0,
        "{after}"
    );
    assert!(
        moved("vault_mails_total", &["result=\"sent\""]) >= 1.0,
        "{after}"
    );
    assert!(
        moved("vault_bytes_received_total", &[]) > content.len() as f64,
        "{after}"
    );
    assert!(moved("vault_bytes_sent_total", &[]) > 0.0, "{after}");
    assert!(
        moved("vault_db_duration_seconds_count", &[]) >= 10.0,
        "{after}"
    );
    assert!(
        moved("vault_blob_duration_seconds_count", &[]) >= 1.0,
        "{after}"
    );
    assert!(
        value(&after, "vault_gc_runs_total", &["result=\"ok\""]) >= 1.0,
        "{after}"
    );
    for gauge in ["vault_connections_active", "vault_sessions_active"] {
        assert!(
            after.lines().any(|l| l.starts_with(&format!("{gauge} "))),
            "{gauge}: {after}"
        );
    }
    // Labels are kinds and codes, never who or what.
    for secret in ["alice", "report-2026", "example.org"] {
        assert!(!after.contains(secret), "{secret} in the metrics: {after}");
    }

    let (status, body) = get(&addr, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert!(!body.contains("vault_"), "{body}");
    let (status, _) = get(&addr, "/metrics/../config");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[test]
fn without_the_key_there_is_no_endpoint() {
    let server = TestServer::start();
    assert!(
        !server.log().contains("metrics served at"),
        "{}",
        server.log()
    );
    assert_eq!(tcp_listeners(server.pid()), 0, "the server listens on TCP");
}

/// How many listening TCP sockets process `pid` holds (Linux: its socket descriptors
/// looked up in its network namespace's tables).
fn tcp_listeners(pid: u32) -> usize {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's descriptors")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        // st 0A is LISTEN; the tenth column is the inode.
        .filter(|cols| cols.len() > 9 && cols[3] == "0A" && inodes.contains(&cols[9]))
        .count()
}
