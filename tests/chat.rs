//! End to end: contacts and chat through the real binaries — the contact request flow;
//! messages to someone offline delivered when they next listen; live delivery to a
//! running `listen` within a second; a group message to three members; history order,
//! inbox unread counts and ordering; refusals (non-contacts, unknown users, groups one
//! has left, oversized messages, floods); plaintext never on the server; a message altered
//! on the server flagged by the receiver; a listener ended by a newer login says why.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary};
use vault_e2e::{Client, Listener, PASSWORD, TestDb, TestServer};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn users<const N: usize>(server: &TestServer, names: [&str; N]) -> [Client; N] {
    names.map(|name| {
        let c = Client::new();
        c.register(server, name, &format!("{name}@example.org"));
        c
    })
}

/// Makes `a` and `b` mutual contacts.
fn befriend(a: (&Client, &str), b: (&Client, &str)) {
    a.0.run(&["contact", "add", b.1]).ok();
    b.0.run(&["contact", "accept", a.1]).ok();
}

fn contacts(c: &Client) -> serde_json::Value {
    json(c.run(&["contact", "list", "--json"]).ok())
}

fn history(c: &Client, target: &str) -> Vec<serde_json::Value> {
    json(c.run(&["chat", "history", target, "--json"]).ok())
        .as_array()
        .expect("history array")
        .clone()
}

fn texts(messages: &[serde_json::Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["text"].as_str().unwrap_or("<no text>").to_string())
        .collect()
}

#[test]
fn contact_requests_are_accepted_rejected_and_removed_on_both_sides() {
    let server = TestServer::start();
    let [alice, bob, carol] = users(&server, ["alice", "bob", "carol"]);
    alice.run(&["contact", "add", "bob"]).ok();
    assert_eq!(contacts(&alice)[0]["state"], "request_sent");
    assert_eq!(contacts(&bob)[0]["username"], "alice");
    assert_eq!(contacts(&bob)[0]["state"], "request_received");
    // No messages before the request is accepted.
    alice
        .run(&["chat", "send", "bob", "too early"])
        .fails_with("not your contact");
    bob.run(&["contact", "accept", "alice"]).ok();
    assert_eq!(contacts(&alice)[0]["state"], "contact");
    assert_eq!(contacts(&bob)[0]["state"], "contact");
    alice.run(&["chat", "send", "bob", "now we talk"]).ok();

    carol.run(&["contact", "add", "alice"]).ok();
    alice.run(&["contact", "reject", "carol"]).ok();
    assert_eq!(contacts(&carol), serde_json::json!([]));
    carol
        .run(&["chat", "send", "alice", "hello?"])
        .fails_with("not your contact");
    alice
        .run(&["contact", "accept", "carol"])
        .fails_with("no contact request");

    bob.run(&["contact", "remove", "alice"]).ok();
    assert_eq!(contacts(&alice), serde_json::json!([]));
    assert_eq!(contacts(&bob), serde_json::json!([]));
    alice
        .run(&["chat", "send", "bob", "still there?"])
        .fails_with("not your contact");
    // Unknown users and oneself.
    alice
        .run(&["chat", "send", "nobody", "hi"])
        .fails_with("nobody");
    alice
        .run(&["contact", "add", "nobody"])
        .fails_with("nobody");

    // A display name shows in the other's contact list.
    befriend((&alice, "alice"), (&carol, "carol"));
    alice
        .run(&["profile", "set", "--display-name", "Alice A."])
        .ok();
    assert_eq!(contacts(&carol)[0]["display_name"], "Alice A.");
}

#[test]
fn offline_messages_arrive_at_the_next_listen_and_history_and_inbox_follow() {
    let server = TestServer::start();
    let [alice, bob, carol] = users(&server, ["alice", "bob", "carol"]);
    befriend((&alice, "alice"), (&bob, "bob"));
    befriend((&carol, "carol"), (&bob, "bob"));
    alice.run(&["chat", "send", "bob", "one"]).ok();
    alice.run(&["chat", "send", "bob", "two"]).ok();
    carol.run(&["chat", "send", "bob", "from carol"]).ok();
    alice
        .run_stdin(&["chat", "send", "bob"], "three\nlines\n")
        .ok();

    // Inbox: newest conversation first, with unread counts.
    let inbox = json(bob.run(&["chat", "inbox", "--json"]).ok());
    assert_eq!(inbox[0]["target"], "alice", "{inbox}");
    assert_eq!(inbox[0]["unread"], 3, "{inbox}");
    assert_eq!(inbox[1]["target"], "carol", "{inbox}");
    assert_eq!(inbox[1]["unread"], 1, "{inbox}");

    // Bob was offline: his first listen gets everything, in order, verified.
    let listener = Listener::start(&bob);
    let mut got = Vec::new();
    for _ in 0..4 {
        let m = listener.next("message", Duration::from_secs(10));
        assert_eq!(m["verified"], true, "{m}");
        got.push(m["text"].as_str().expect("text").to_string());
    }
    assert_eq!(got, ["one", "two", "from carol", "three\nlines"]);
    listener.stop();

    // History is in order; reading it marks the conversation read.
    let h = history(&bob, "alice");
    assert_eq!(texts(&h), ["one", "two", "three\nlines"]);
    assert!(
        h.iter()
            .all(|m| m["from"] == "alice" && m["verified"] == true)
    );
    let inbox = json(bob.run(&["chat", "inbox", "--json"]).ok());
    assert_eq!(inbox[0]["target"], "alice", "{inbox}");
    assert_eq!(inbox[0]["unread"], 0, "{inbox}");
    assert_eq!(inbox[1]["unread"], 1, "{inbox}");
    // The sender reads the same history.
    assert_eq!(
        texts(&history(&alice, "bob")),
        ["one", "two", "three\nlines"]
    );
    // Paging back with --before.
    let last_id = h[2]["id"].as_i64().expect("id").to_string();
    let older = json(
        bob.run(&[
            "chat", "history", "alice", "--before", &last_id, "--limit", "1", "--json",
        ])
        .ok(),
    );
    assert_eq!(texts(older.as_array().expect("page")), ["two"]);
    // A new message moves its conversation to the top.
    carol.run(&["chat", "send", "bob", "again"]).ok();
    let inbox = json(bob.run(&["chat", "inbox", "--json"]).ok());
    assert_eq!(inbox[0]["target"], "carol", "{inbox}");
    assert_eq!(inbox[0]["unread"], 2, "{inbox}");

    // Nothing the users wrote is on the server in the clear.
    assert!(!server.holds("from carol"));
    assert!(!server.holds("three\nlines"));
}

#[test]
fn a_running_listen_gets_a_message_within_a_second() {
    let server = TestServer::start();
    let [alice, bob] = users(&server, ["alice", "bob"]);
    befriend((&alice, "alice"), (&bob, "bob"));
    let listener = Listener::start(&bob);
    listener.settle();
    for text in ["first live", "second live"] {
        alice.run(&["chat", "send", "bob", text]).ok();
        let sent = Instant::now();
        let m = listener.next("message", Duration::from_secs(5));
        let latency = sent.elapsed();
        assert_eq!(m["text"], text, "{m}");
        assert!(
            latency < Duration::from_secs(1),
            "delivered {latency:?} after the send finished"
        );
    }
    listener.stop();
}

#[test]
fn listen_reconnects_after_a_server_restart_and_shows_each_message_once() {
    let mut server = TestServer::start();
    let [alice, bob] = users(&server, ["alice", "bob"]);
    befriend((&alice, "alice"), (&bob, "bob"));
    let listener = Listener::start(&bob);
    listener.settle();
    alice
        .run(&["chat", "send", "bob", "before the restart"])
        .ok();
    assert_eq!(
        listener.next("message", Duration::from_secs(5))["text"],
        "before the restart"
    );
    server.restart(|_| {});
    // Sent while the listener is still reconnecting: it arrives from the backlog.
    alice
        .run(&["chat", "send", "bob", "after the restart"])
        .ok();
    let m = listener.next("message", Duration::from_secs(30));
    assert_eq!(m["text"], "after the restart", "{m}");
    alice.run(&["chat", "send", "bob", "and live again"]).ok();
    let m = listener.next("message", Duration::from_secs(10));
    assert_eq!(m["text"], "and live again", "{m}");
    listener.stop();
}

#[test]
fn a_group_message_reaches_every_member_and_only_members() {
    let server = TestServer::start();
    let [alice, bob, carol, dave, eve] = users(&server, ["alice", "bob", "carol", "dave", "eve"]);
    alice.run(&["group", "create", "team"]).ok();
    for who in ["bob", "carol", "dave"] {
        alice.run(&["group", "add", "team", who]).ok();
    }
    alice.run(&["chat", "send", "@team", "hello team"]).ok();
    for member in [&bob, &carol, &dave] {
        let h = history(member, "@team");
        assert_eq!(texts(&h), ["hello team"]);
        assert_eq!(h[0]["from"], "alice");
        assert_eq!(h[0]["verified"], true);
        let inbox = json(member.run(&["chat", "inbox", "--json"]).ok());
        assert_eq!(inbox[0]["target"], "@team", "{inbox}");
    }
    eve.run(&["chat", "send", "@team", "let me in"])
        .fails_with("not a member");
    eve.run(&["chat", "history", "@team"])
        .fails_with("not a member");

    // Someone who left can neither send nor read; the others can after the rotation.
    dave.run(&["group", "leave", "team"]).ok();
    dave.run(&["chat", "send", "@team", "bye"])
        .fails_with("not a member");
    bob.run(&["chat", "send", "@team", "after dave left"]).ok();
    assert_eq!(
        texts(&history(&carol, "@team")),
        ["hello team", "after dave left"]
    );
    assert!(!server.holds("hello team"));
}

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Binary)]
    body: Vec<u8>,
}

/// Plays a malicious server: rewrites the newest stored message with `change`.
fn tamper_with_newest_message(
    server: &TestServer,
    change: impl Fn(&mut vault_core::proto::SealedMessage),
) {
    let select = "SELECT id, body FROM chat_messages ORDER BY id DESC LIMIT 1";
    let rewrite = |row: Stored| {
        let mut message: vault_core::proto::SealedMessage =
            ciborium::from_reader(row.body.as_slice()).expect("stored message");
        change(&mut message);
        let mut body = Vec::new();
        ciborium::into_writer(&message, &mut body).expect("encode");
        (row.id, body)
    };
    match server.open_database() {
        TestDb::Sqlite(mut c) => {
            let row = diesel::sql_query(select)
                .get_result::<Stored>(&mut c)
                .expect("newest message");
            let (id, body) = rewrite(row);
            diesel::sql_query("UPDATE chat_messages SET body = ? WHERE id = ?")
                .bind::<Binary, _>(body)
                .bind::<BigInt, _>(id)
                .execute(&mut c)
                .expect("update");
        }
        TestDb::Pg(mut c) => {
            let row = diesel::sql_query(select)
                .get_result::<Stored>(&mut c)
                .expect("newest message");
            let (id, body) = rewrite(row);
            diesel::sql_query("UPDATE chat_messages SET body = $1 WHERE id = $2")
                .bind::<Binary, _>(body)
                .bind::<BigInt, _>(id)
                .execute(&mut c)
                .expect("update");
        }
    }
}

#[test]
fn a_message_altered_on_the_server_is_flagged_and_never_shown_as_normal() {
    let server = TestServer::start();
    let [alice, bob] = users(&server, ["alice", "bob"]);
    befriend((&alice, "alice"), (&bob, "bob"));
    alice.run(&["chat", "send", "bob", "pay bob 10"]).ok();
    tamper_with_newest_message(&server, |m| {
        let mut ct = m.ciphertext.to_vec();
        ct[20] ^= 1;
        m.ciphertext = ct.into();
    });
    alice.run(&["chat", "send", "bob", "meet at noon"]).ok();
    tamper_with_newest_message(&server, |m| m.sent_at_ms -= 3_600_000);

    let h = history(&bob, "alice");
    assert_eq!(h.len(), 2, "{h:?}");
    for m in &h {
        assert_eq!(m["verified"], false, "{m}");
        assert!(m["error"].as_str().is_some_and(|e| !e.is_empty()), "{m}");
        assert!(m.get("text").is_none_or(serde_json::Value::is_null), "{m}");
    }
    let text = bob.run(&["chat", "history", "alice"]).ok().to_string();
    assert!(
        !text.contains("pay bob") && !text.contains("noon"),
        "{text}"
    );
    assert!(text.contains("refused"), "{text}");
}

#[test]
fn oversized_messages_and_floods_are_refused_with_a_clear_error() {
    let server = TestServer::start_with("[chat]\nmax_text_bytes = 1024\nmessages_per_minute = 5\n");
    let [alice, bob] = users(&server, ["alice", "bob"]);
    befriend((&alice, "alice"), (&bob, "bob"));
    alice
        .run_stdin(&["chat", "send", "bob"], &"x".repeat(4096))
        .fails_with("at most");
    for i in 0..5 {
        alice.run(&["chat", "send", "bob", &format!("m{i}")]).ok();
    }
    alice
        .run(&["chat", "send", "bob", "one too many"])
        .fails_with("too many messages");
    assert_eq!(history(&bob, "alice").len(), 5);
}

#[test]
fn a_listener_ended_by_a_newer_login_says_why() {
    let server = TestServer::start_with("single_session = true\n");
    let [alice, bob] = users(&server, ["alice", "bob"]);
    befriend((&alice, "alice"), (&bob, "bob"));
    let listener = Listener::start(&bob);
    listener.settle();
    let (other, out) = Client::login_to(&server, "bob", PASSWORD);
    out.ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut listener = listener;
    let status = loop {
        if let Some(status) = listener.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "listen did not end");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1));
    let out = listener.stop();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(stderr.contains("session ended"), "{stderr}");
    // The newer session works.
    other.run(&["chat", "history", "alice"]).ok();
}

#[test]
fn a_file_sent_in_a_message_is_fetched_by_its_recipient_only() {
    let server = TestServer::start();
    let [alice, bob, carol] = users(&server, ["alice", "bob", "carol"]);
    befriend((&alice, "alice"), (&bob, "bob"));
    befriend((&carol, "carol"), (&bob, "bob"));
    let dir = tempfile::tempdir().expect("tmp");
    // A plaintext marker that must never reach the server, in more than one chunk.
    let marker = "PLAINTEXT-MARKER-of-the-sent-file";
    let mut contents = marker.repeat(40_000).into_bytes();
    contents.extend_from_slice(b"the end");
    let sent = dir.path().join("report.txt");
    std::fs::write(&sent, &contents).expect("write");
    let sent_path = sent.to_str().expect("utf-8 path");
    alice
        .run(&["chat", "send", "bob", "--file", sent_path, "here"])
        .ok();

    // Bob's history shows the text and the file (never its key).
    let h = history(&bob, "alice");
    assert_eq!(texts(&h), ["here"]);
    assert_eq!(h[0]["verified"], true, "{}", h[0]);
    assert_eq!(
        h[0]["file"],
        serde_json::json!({"name": "report.txt", "size": contents.len()})
    );
    let id = h[0]["id"].as_i64().expect("id").to_string();
    let line = bob.run(&["chat", "history", "alice"]).ok().to_string();
    assert!(
        line.contains(&format!(
            "here [file report.txt, 1.3 MiB: vault chat fetch {id}]"
        )),
        "{line}"
    );

    // Bob fetches the same bytes; the file is not overwritten by a second fetch.
    let out = dir.path().join("got.txt");
    let out_path = out.to_str().expect("utf-8 path");
    bob.run(&["chat", "fetch", &id, out_path]).ok();
    assert_eq!(std::fs::read(&out).expect("fetched"), contents);
    bob.run(&["chat", "fetch", &id, out_path])
        .fails_with("exists; name another path");
    // The sender can fetch it too; carol, who has no such message, cannot.
    let again = dir.path().join("alice-copy.txt");
    alice
        .run(&["chat", "fetch", &id, again.to_str().expect("utf-8")])
        .ok();
    assert_eq!(std::fs::read(&again).expect("fetched"), contents);
    let carols = dir.path().join("carol.txt");
    carol
        .run(&["chat", "fetch", &id, carols.to_str().expect("utf-8")])
        .fails_with("you have no message");
    assert!(!carols.exists());

    // A group message with a file and no text.
    alice.run(&["group", "create", "team"]).ok();
    alice.run(&["group", "add", "team", "bob"]).ok();
    let small = dir.path().join("small.bin");
    std::fs::write(&small, b"small file for the team").expect("write");
    alice
        .run(&[
            "chat",
            "send",
            "@team",
            "--file",
            small.to_str().expect("utf-8"),
        ])
        .ok();
    let g = history(&bob, "@team");
    assert_eq!(g[0]["text"], "", "{}", g[0]);
    // Without TEXT, the text comes from standard input, as for a message without a file.
    alice
        .run_stdin(
            &[
                "chat",
                "send",
                "@team",
                "--file",
                small.to_str().expect("utf-8"),
            ],
            "the text from stdin\n",
        )
        .ok();
    let with_text = history(&bob, "@team");
    let newest = with_text.last().expect("a message");
    assert_eq!(newest["text"], "the text from stdin", "{newest}");
    assert_eq!(newest["file"]["name"], "small.bin", "{newest}");
    assert_eq!(g[0]["file"]["name"], "small.bin", "{}", g[0]);
    let gid = g[0]["id"].as_i64().expect("id").to_string();
    let team_copy = dir.path().join("team.bin");
    bob.run(&["chat", "fetch", &gid, team_copy.to_str().expect("utf-8")])
        .ok();
    assert_eq!(
        std::fs::read(&team_copy).expect("fetched"),
        b"small file for the team"
    );

    // Once alice removes the file, the message stays and the file is gone.
    let ls = alice.run(&["ls", "-R", "/.vault-chat"]).ok().to_string();
    assert!(ls.contains("report.txt"), "{ls}");
    alice.run(&["rm", "-r", "/.vault-chat"]).ok();
    let gone = dir.path().join("gone.txt");
    bob.run(&["chat", "fetch", &id, gone.to_str().expect("utf-8")])
        .fails_with("the sender has removed this file");
    assert!(!gone.exists());

    // Nothing of the file's contents or name reached the server in the clear.
    assert!(!server.holds(marker));
    assert!(!server.holds("report.txt"));
    assert!(!server.holds("small file for the team"));
}

#[test]
fn listen_says_it_listens_on_a_terminal_only() {
    let server = TestServer::start();
    let [alice, bob] = users(&server, ["alice", "bob"]);
    befriend((&alice, "alice"), (&bob, "bob"));
    let mut term = bob.terminal(&["chat", "listen"], &[]);
    term.expect(
        "Listening for messages to bob; Ctrl-C stops.",
        Duration::from_secs(20),
    );
    alice
        .run(&["chat", "send", "bob", "seen on the terminal"])
        .ok();
    term.expect("alice → you: seen on the terminal", Duration::from_secs(10));
    let screen = term.stop();
    assert_eq!(screen.matches("Listening").count(), 1, "{screen}");

    let listener = Listener::start(&bob);
    listener.settle();
    alice.run(&["chat", "send", "bob", "seen by a script"]).ok();
    let m = listener.next("message", Duration::from_secs(10));
    assert_eq!(m["text"], "seen by a script", "{m}");
    let out = listener.stop();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Listening"), "{stderr}");
}

#[test]
fn listen_notices_a_killed_and_restarted_server_within_seconds() {
    let mut server = TestServer::start();
    let [alice, bob] = users(&server, ["alice", "bob"]);
    befriend((&alice, "alice"), (&bob, "bob"));
    let listener = Listener::start(&bob);
    listener.settle();
    // Killed, so no close reaches the listener; the new process answers the old
    // connection's next ping with a stateless reset.
    server.kill_hard();
    server.restart(|_| {});
    let restarted = Instant::now();
    alice.run(&["chat", "send", "bob", "after a crash"]).ok();
    let m = listener.next("message", Duration::from_secs(20));
    assert_eq!(m["text"], "after a crash", "{m}");
    assert!(
        restarted.elapsed() < Duration::from_secs(12),
        "noticed after {:?}",
        restarted.elapsed()
    );
    let out = listener.stop();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the connection was lost (the server restarted"),
        "{stderr}"
    );
}

#[test]
fn a_fetch_cut_off_is_finished_by_the_next_one_without_fetching_it_again() {
    let server = TestServer::start();
    let [alice, bob] = users(&server, ["alice", "bob"]);
    befriend((&alice, "alice"), (&bob, "bob"));
    let dir = tempfile::tempdir().expect("tmp");
    let contents = vault_e2e::random_bytes(128 << 20, 5);
    let sent = dir.path().join("image.bin");
    std::fs::write(&sent, &contents).expect("write");
    alice
        .run(&[
            "chat",
            "send",
            "bob",
            "--file",
            sent.to_str().expect("utf-8"),
            "big",
        ])
        .ok();
    let id = history(&bob, "alice")[0]["id"]
        .as_i64()
        .expect("id")
        .to_string();

    // The first fetch is stopped, then killed, once some of the file is written.
    let got = dir.path().join("got");
    std::fs::create_dir(&got).expect("mkdir");
    let target = got.join("image.bin");
    let mut first = bob.spawn(&["chat", "fetch", &id, target.to_str().expect("utf-8")]);
    let parts = got.join(".vault-part");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let written: u64 = std::fs::read_dir(&parts)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_none())
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        if written >= 4 << 20 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing was written");
        std::thread::sleep(Duration::from_millis(2));
    }
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &first.id().to_string()])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());
    first.kill().expect("kill");
    first.wait().expect("wait");
    assert!(
        !target.exists(),
        "nothing is in place before the whole checks out"
    );

    let out = bob.run(&["chat", "fetch", &id, target.to_str().expect("utf-8")]);
    assert!(out.ok().contains("(resumed: "), "{}", out.stdout);
    assert!(std::fs::read(&target).expect("fetched") == contents);
    assert!(!parts.exists(), "the part folder is gone");
}
