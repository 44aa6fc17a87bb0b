//! End to end: files through pipes, as rclone's `cat` and `rcat` — `vault put - REMOTE`
//! stores standard input (streamed, memory bounded, a second run sends only what the first
//! did not store), `vault get REMOTE -` and `vault cat REMOTE` write the file to standard
//! output and nothing else, in both storage formats; a reader that goes away ends the
//! command quietly; chunks gc freed before the commit fail it with what to do; mistakes
//! get errors that say what to do.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use vault_e2e::{Client, Out, TestServer, random_bytes};

const MIB: usize = 1 << 20;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Runs `vault ARGS` with `input` on standard input; returns the exit code, stdout's bytes
/// and stderr.
fn run_piped(client: &Client, args: &[&str], input: &[u8]) -> (i32, Vec<u8>, String) {
    let mut child = client.spawn_with_input(args);
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        // A command may end without reading all its input (it refused first).
        match stdin.write_all(&input) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
            _ => {}
        }
    });
    let output = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    (
        output.status.code().unwrap_or(-1),
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `vault ARGS` and returns stdout's bytes, asserting success and a silent stderr.
#[track_caller]
fn bytes_out(client: &Client, args: &[&str]) -> Vec<u8> {
    let (code, stdout, stderr) = run_piped(client, args, b"");
    assert_eq!(code, 0, "{args:?}: {stderr}");
    assert_eq!(stderr, "", "{args:?}: nothing but the file is printed");
    stdout
}

fn logged_in() -> (TestServer, Client) {
    let server = TestServer::start();
    let client = Client::new();
    client.register(&server, "alice", "alice@example.org");
    (server, client)
}

#[test]
fn standard_input_goes_up_and_comes_back_on_standard_output() {
    let (_server, alice) = logged_in();
    let data = random_bytes(9 * MIB + 4321, 7);

    let (code, stdout, stderr) = run_piped(&alice, &["put", "-", "/db.dump"], &data);
    assert_eq!(code, 0, "{stderr}");
    let said = String::from_utf8_lossy(&stdout);
    assert!(
        said.contains("from standard input as /db.dump (version 1)"),
        "{said}"
    );
    assert!(bytes_out(&alice, &["get", "/db.dump", "-"]) == data);
    assert!(bytes_out(&alice, &["cat", "/db.dump"]) == data);

    // What a pipe stored is an ordinary file: listed, fetched to a file, private.
    let listed = alice.run(&["ls", "/", "-l"]);
    assert!(listed.ok().contains("db.dump"), "{}", listed.stdout);
    let local = alice.dir.path().join("db.dump");
    alice
        .run(&["get", "/db.dump", local.to_str().expect("utf-8")])
        .ok();
    assert!(std::fs::read(&local).expect("fetched") == data);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&local)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "what came from a pipe is kept private");

    // The same input again: a new version, and nothing sent that the space holds.
    let (code, stdout, stderr) = run_piped(&alice, &["put", "-", "/db.dump", "--json"], &data);
    assert_eq!(code, 0, "{stderr}");
    let again = json(&String::from_utf8_lossy(&stdout));
    assert_eq!(again["version"], 2, "{again}");
    assert_eq!(again["bytes"], data.len() as u64, "{again}");
    assert_eq!(again["reused"], data.len() as u64, "{again}");

    // A small file stored whole (format 1) streams out as well, and so does an empty one.
    let small = random_bytes(70_000, 8);
    let small_path = alice.dir.path().join("small.bin");
    std::fs::write(&small_path, &small).expect("write");
    alice
        .run(&["put", small_path.to_str().expect("utf-8"), "/small.bin"])
        .ok();
    assert!(bytes_out(&alice, &["cat", "/small.bin"]) == small);
    let (code, _, stderr) = run_piped(&alice, &["put", "-", "/empty"], b"");
    assert_eq!(code, 0, "{stderr}");
    assert!(bytes_out(&alice, &["get", "/empty", "-"]).is_empty());
}

#[test]
fn mistakes_with_pipes_say_what_to_do_and_print_nothing_on_stdout() {
    let (_server, alice) = logged_in();
    alice.run(&["mkdir", "/docs"]).ok();
    let cases: [(&[&str], &str); 7] = [
        (&["get", "/nope", "-"], "/nope: no such file"),
        (&["cat", "/docs"], "/docs is a folder"),
        (
            &["get", "/docs", "-", "--json"],
            "--json does not go with -",
        ),
        (&["get", "/a", "/b", "-"], "name one remote file"),
        (&["put", "-", "/docs"], "/docs is a folder"),
        (&["put", "-", "/docs/"], "needs the remote file's path"),
        (
            &["put", "-", "/x", "--whole-file"],
            "--whole-file does not go with -",
        ),
    ];
    for (args, needle) in cases {
        let (code, stdout, stderr) = run_piped(&alice, args, b"some input");
        let out = Out {
            code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
        };
        out.fails_with(needle);
        assert!(stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
    let listed = alice.run(&["ls", "/", "-R"]);
    assert!(
        !listed.ok().contains("/x"),
        "nothing was stored: {}",
        listed.stdout
    );
}

#[test]
fn a_reader_that_goes_away_ends_cat_quietly() {
    let (_server, alice) = logged_in();
    let data = random_bytes(24 * MIB, 9);
    let (code, _, stderr) = run_piped(&alice, &["put", "-", "/big"], &data);
    assert_eq!(code, 0, "{stderr}");
    let mut child = alice.spawn_piped(&["cat", "/big"]);
    let mut head = [0u8; 10];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut head)
        .expect("the first bytes");
    // stdout is closed here, as `vault cat /big | head -c 10` does.
    let output = child.wait_with_output().expect("wait");
    assert_eq!(head, data[..10]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

#[test]
fn a_stopped_pipe_upload_is_finished_by_the_next_run_without_sending_it_again() {
    let (server, alice) = logged_in();
    let data = random_bytes(96 * MIB, 10);

    // The first try gets a third of the input, then is killed.
    let mut first = alice.spawn_with_input(&["put", "-", "/stream.bin"]);
    let mut stdin = first.stdin.take().expect("stdin");
    stdin.write_all(&data[..32 * MIB]).expect("write");
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.chunks().len() < 8 {
        assert!(Instant::now() < deadline, "no chunks arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    // While it runs, what it holds in memory is bounded whatever the input's size.
    let status = std::fs::read_to_string(format!("/proc/{}/status", first.id())).expect("status");
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB");
    first.kill().expect("kill");
    first.wait().expect("wait");
    drop(stdin);
    // What the first try stored: a chunk's plaintext is its sealed size less at most the
    // padding (to 64 KiB), the end mark and the tag.
    let stored: i64 = server
        .chunks()
        .iter()
        .map(|(_, sealed)| sealed - (64 << 10) - 17)
        .sum();
    let listed = alice.run(&["ls", "/"]);
    assert!(!listed.ok().contains("stream.bin"), "{}", listed.stdout);

    let (code, stdout, stderr) = run_piped(&alice, &["put", "-", "/stream.bin", "--json"], &data);
    assert_eq!(code, 0, "{stderr}");
    let done = json(&String::from_utf8_lossy(&stdout));
    let reused = done["reused"].as_u64().expect("reused");
    assert!(
        reused >= stored as u64,
        "what the first try stored ({stored} bytes at least) is not sent again: {done}"
    );
    assert!(reused < 32 * MIB as u64, "{done}");
    assert!(bytes_out(&alice, &["cat", "/stream.bin"]) == data);
    assert_eq!(server.open_uploads().len(), 0, "no upload left open");
}

#[test]
fn chunks_the_server_freed_during_a_long_pipe_fail_the_upload_with_what_to_do() {
    // No grace: gc frees chunks no version uses at once, as it would those of a pipe that
    // outlasted the grace between two marks.
    let server = TestServer::start_with("[files]\nblob_grace_s = 0\n");
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let data = random_bytes(16 * MIB, 11);
    let mut put = alice.spawn_with_input(&["put", "-", "/long.bin"]);
    let mut stdin = put.stdin.take().expect("stdin");
    stdin.write_all(&data[..12 * MIB]).expect("write");
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.chunks().len() < 3 {
        assert!(Instant::now() < deadline, "no chunks arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = server.chunks().len();
    // gc counts in whole seconds.
    std::thread::sleep(Duration::from_millis(1100));
    server.admin(&["gc"]).ok();
    assert!(server.chunks().len() < sent, "gc freed the chunks sent");
    stdin.write_all(&data[12 * MIB..]).expect("write");
    drop(stdin);
    let output = put.wait_with_output().expect("wait");
    let out = Out::from(output);
    out.fails_with("run the command again with the same input");
    let listed = alice.run(&["ls", "/"]);
    assert!(!listed.ok().contains("long.bin"), "{}", listed.stdout);

    let (code, _, stderr) = run_piped(&alice, &["put", "-", "/long.bin"], &data);
    assert_eq!(code, 0, "{stderr}");
    assert!(bytes_out(&alice, &["cat", "/long.bin"]) == data);
}

#[test]
fn a_pipe_over_the_quota_fails_and_says_what_stays_counted() {
    let server = TestServer::start_with("default_quota = \"4MiB\"\n");
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let (code, stdout, stderr) =
        run_piped(&alice, &["put", "-", "/big"], &random_bytes(12 * MIB, 12));
    let out = Out {
        code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
    };
    out.fails_with("quota exceeded");
    out.fails_with("stays stored and counted until the server's gc frees it");
    assert!(stdout.is_empty(), "{}", out.stdout);
    let listed = alice.run(&["ls", "/"]);
    assert!(!listed.ok().contains("big"), "{}", listed.stdout);
}
