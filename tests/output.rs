//! End to end: what `vault` and `vault-admin` print — a closed standard output ends any
//! command quietly (exit 0, nothing on stderr), and names with control characters are
//! shown quoted (`$'two\nlines'`) in every human-readable listing and message, raw in JSON.

use std::path::Path;

use vault_e2e::{Client, TestServer, closed_stdout};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[track_caller]
fn quiet_success(what: &str, out: vault_e2e::Out) {
    assert_eq!(
        out.code, 0,
        "{what}: exit {}, stderr: {}",
        out.code, out.stderr
    );
    assert_eq!(out.stderr, "", "{what}: stderr");
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let server = TestServer::start();
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let bob = Client::new();
    bob.register(&server, "bob", "bob@example.org");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "one").expect("write");
    alice.run(&["put", s(&file), "/f.txt"]).ok();
    std::fs::write(&file, "two").expect("write");
    alice.run(&["put", s(&file), "/f.txt"]).ok();
    alice.run(&["mkdir", "/gone"]).ok();
    alice.run(&["rm", "-r", "/gone"]).ok();
    alice.run(&["group", "create", "team"]).ok();
    alice.run(&["contact", "add", "bob"]).ok();
    bob.run(&["contact", "accept", "alice"]).ok();
    alice.run(&["chat", "send", "bob", "hello"]).ok();

    for args in [
        &["ls", "--json", "/"][..],
        &["ls", "/"],
        &["ls", "-l", "-R", "/"],
        &["versions", "--json", "/f.txt"],
        &["versions", "/f.txt"],
        &["trash", "ls"],
        &["trash", "ls", "--json"],
        &["du", "/"],
        &["quota", "--json"],
        &["whoami", "--json"],
        &["whoami"],
        &["group", "list"],
        &["group", "list", "--json"],
        &["group", "members", "team"],
        &["contact", "list"],
        &["contact", "list", "--json"],
        &["chat", "history", "bob"],
        &["chat", "history", "bob", "--json"],
        &["chat", "inbox"],
        &["key", "fingerprint"],
        &["mkdir", "/made"],
    ] {
        quiet_success(
            &format!("vault {args:?}"),
            alice.run_with_stdout_closed(args),
        );
    }
    // `chat listen` ends at its first line.
    alice.run(&["chat", "send", "bob", "for the listener"]).ok();
    quiet_success(
        "vault chat listen",
        bob.run_with_stdout_closed(&["chat", "listen"]),
    );

    for args in [
        &["user", "list"][..],
        &["user", "show", "alice"],
        &["audit"],
        &["audit", "--json"],
        &["stats"],
        &["group", "list"],
        &["fsck"],
        &["gc"],
        &["cert", "show"],
    ] {
        quiet_success(
            &format!("vault-admin {args:?}"),
            closed_stdout(server.admin_command(args)),
        );
    }
}

#[test]
fn names_with_control_characters_are_quoted_in_listings_and_messages_and_raw_in_json() {
    let server = TestServer::start();
    let carol = Client::new();
    carol.register(&server, "carol", "carol@example.org");
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("odd");
    std::fs::create_dir(&tree).expect("mkdir");
    let names = [
        "two\nlines",
        "tab\there",
        "esc\u{1b}[31mred",
        "plain name.txt",
    ];
    for name in names {
        std::fs::write(tree.join(name), name).expect("write");
    }
    carol.run(&["put", "-r", s(&tree), "/"]).ok();

    let ls = carol.run(&["ls", "/odd"]);
    let lines: Vec<&str> = ls.ok().lines().collect();
    assert_eq!(
        lines,
        [
            r"$'esc\e[31mred'",
            "plain name.txt",
            r"$'tab\there'",
            r"$'two\nlines'",
        ],
        "{}",
        ls.stdout
    );
    let long = carol.run(&["ls", "-l", "/odd"]);
    let lines: Vec<&str> = long.ok().lines().collect();
    assert_eq!(lines.len(), 4, "{}", long.stdout);
    assert!(lines[3].ends_with(r"  $'two\nlines'"), "{}", long.stdout);
    assert!(!long.stdout.contains('\u{1b}') && !long.stdout.contains('\t'));
    let recursive = carol.run(&["ls", "-R", "/"]);
    assert!(
        recursive.ok().lines().any(|l| l == r"$'odd/two\nlines'"),
        "{}",
        recursive.stdout
    );

    // JSON carries the names as they are.
    let listed: serde_json::Value =
        serde_json::from_str(carol.run(&["ls", "--json", "/odd"]).ok()).expect("json");
    let mut json_names: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    json_names.sort_unstable();
    let mut want = names.to_vec();
    want.sort_unstable();
    assert_eq!(json_names, want);

    // Messages name the same quoted form, which a shell turns back into the name.
    let out = carol.run(&["rm", "/odd/two\nlines"]);
    assert_eq!(
        out.ok(),
        "Moved $'/odd/two\\nlines' to the trash; `vault trash restore $'/odd/two\\nlines'` \
         undoes it.\n"
    );
    let trash = carol.run(&["trash", "ls"]);
    assert!(
        trash.ok().contains(r"$'/odd/two\nlines'"),
        "{}",
        trash.stdout
    );
    assert_eq!(trash.stdout.lines().count(), 1, "{}", trash.stdout);
    let got = dir.path().join("got");
    std::fs::create_dir(&got).expect("mkdir");
    let out = carol.run(&["get", "/odd/tab\there", &format!("{}/", s(&got))]);
    assert!(out.ok().contains(r"tab\there'"), "{}", out.stdout);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    // An error that names such a path stays on one line too.
    let out = carol.run(&["rm", "/odd/no\nsuch"]);
    let err = out.fails_with("no\\nsuch");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn with_vault_log_format_json_the_server_logs_one_object_per_line_with_each_request() {
    let mut server = TestServer::start();
    let mut env = server.storage_env().to_vec();
    env.push(("VAULT_LOG_FORMAT".into(), "json".into()));
    server.set_storage_env(env);
    server.restart(|_| {});
    let before = server.log().len();
    let alice = Client::new();
    alice.register(&server, "alice", "alice@example.org");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("quarterly-secret-plan.txt");
    std::fs::write(&file, "text").expect("write");
    alice
        .run(&["put", s(&file), "/quarterly-secret-plan.txt"])
        .ok();
    alice.run(&["ls", "/"]).ok();
    alice
        .run(&["get", "/no-such-file", s(&dir.path().join("x"))])
        .fails_with("no-such-file");

    let log = server.log()[before..].to_owned();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {e}: {l}")))
        .collect();
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "vault_server::access")
        .collect();
    let request = |l: &serde_json::Value| {
        l["spans"]
            .as_array()
            .and_then(|spans| spans.iter().find(|s| s["name"] == "request"))
            .cloned()
            .unwrap_or_default()
    };
    let list = access
        .iter()
        .find(|l| request(l)["kind"] == "list")
        .unwrap_or_else(|| panic!("a line for `ls`: {log}"));
    assert_eq!(list["fields"]["result"], "ok", "{list}");
    assert!(list["fields"]["duration_ms"].as_f64().is_some(), "{list}");
    assert!(
        request(list)["user"].as_i64().is_some(),
        "the user id: {list}"
    );
    // Each command resumes the saved session on a new connection: the line names the user
    // the request logged in.
    assert!(
        access.iter().any(|l| request(l)["kind"] == "resume"
            && l["fields"]["result"] == "ok"
            && request(l)["user"].as_i64().is_some()),
        "a resume names the user it logged in: {log}"
    );
    assert!(
        access.iter().any(|l| l["fields"]["result"] == "not_found"),
        "the failed get says how it ended: {log}"
    );
    assert!(
        !log.contains("quarterly-secret-plan") && !log.contains(vault_e2e::PASSWORD),
        "no name and no secret in the log"
    );
}
