//! End to end: groups through the real binaries — create → invite → join → files both
//! ways; a member added by the operator, before and after key healing, and a group the
//! operator created; a removal (locked out at once, the next upload under the next key
//! generation, the others read old and new files); roles, rename and delete; the group
//! quota; a changed public key refused loudly; sync into a group.

use std::path::{Path, PathBuf};

use vault_e2e::{Client, Out, PASSWORD, TestServer};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Registers each of `names` on its own client.
fn users(server: &TestServer, names: &[&str]) -> Vec<Client> {
    names
        .iter()
        .map(|name| {
            let c = Client::new();
            c.register(server, name, &format!("{name}@example.org"));
            c
        })
        .collect()
}

fn local(c: &Client, name: &str, text: &str) -> PathBuf {
    let p = c.dir.path().join(name);
    std::fs::write(&p, text).expect("write local file");
    p
}

/// Uploads `text` to `remote`.
fn put(c: &Client, remote: &str, text: &str) {
    let p = local(c, "upload.txt", text);
    c.run(&["put", s(&p), remote]).ok();
}

/// Downloads `remote`: its text, or the failed command.
fn get(c: &Client, remote: &str) -> Result<String, Out> {
    let p = c.dir.path().join("download.txt");
    let _ = std::fs::remove_file(&p);
    let out = c.run(&["get", remote, s(&p)]);
    if out.code != 0 {
        return Err(out);
    }
    Ok(std::fs::read_to_string(&p).expect("downloaded file"))
}

/// A refusal that names who may do it.
trait Denied {
    fn denied(&self);
}

impl Denied for Out {
    #[track_caller]
    fn denied(&self) {
        let err = self.fails_with("");
        assert!(
            err.contains("owner") || err.contains("manager"),
            "the refusal should say who may: {err}"
        );
    }
}

#[track_caller]
fn read(c: &Client, remote: &str) -> String {
    get(c, remote).unwrap_or_else(|out| panic!("get {remote}: {}", out.stderr))
}

fn members(c: &Client, group: &str) -> serde_json::Value {
    json(c.run(&["group", "members", group, "--json"]).ok())
}

fn member<'a>(list: &'a serde_json::Value, user: &str) -> &'a serde_json::Value {
    list.as_array()
        .expect("member list")
        .iter()
        .find(|m| m["username"] == user)
        .unwrap_or_else(|| panic!("{user} is not in {list}"))
}

fn info(c: &Client, group: &str) -> serde_json::Value {
    json(c.run(&["group", "info", group, "--json"]).ok())
}

fn invite(c: &Client, group: &str, extra: &[&str]) -> String {
    let mut args = vec!["group", "invite", group];
    args.extend_from_slice(extra);
    c.run(&args).ok().trim().to_string()
}

#[test]
fn invite_join_and_share_files_both_ways() {
    let server = TestServer::start();
    let [alice, bob, carol] = <[Client; 3]>::try_from(users(&server, &["alice", "bob", "carol"]))
        .unwrap_or_else(|_| panic!("three clients"));
    alice.run(&["group", "create", "team"]).ok();
    let list = json(alice.run(&["group", "list", "--json"]).ok());
    assert_eq!(list[0]["name"], "team", "{list}");
    assert_eq!(list[0]["role"], "owner", "{list}");
    assert_eq!(list[0]["generation"], 0, "{list}");
    assert_eq!(list[0]["has_key"], true, "{list}");

    let code = invite(&alice, "team", &[]);
    let (id, secret) = code.split_once('.').expect("ID.SECRET");
    assert!(id.parse::<i64>().is_ok(), "{code}");
    bob.run(&["group", "join", &code]).ok();
    // The code was good for one use, and its secret half never reached the server.
    carol
        .run(&["group", "join", &code])
        .fails_with("invalid, expired or used up");
    assert!(!server.holds(secret), "the server holds the secret");

    put(&alice, "@team/docs/hello.txt", "hello from alice");
    assert_eq!(read(&bob, "@team/docs/hello.txt"), "hello from alice");
    put(&bob, "@team/docs/reply.txt", "hello from bob");
    assert_eq!(read(&alice, "@team/docs/reply.txt"), "hello from bob");
    let listing = bob.run(&["ls", "@team/docs"]).ok().to_string();
    assert!(
        listing.contains("hello.txt") && listing.contains("reply.txt"),
        "{listing}"
    );
    assert!(!server.holds("hello from"), "plaintext on the server");

    let list = members(&alice, "team");
    assert_eq!(member(&list, "alice")["role"], "owner");
    assert_eq!(member(&list, "bob")["role"], "member");
    assert_eq!(member(&list, "bob")["has_key"], true);
    // Carol, not a member, sees nothing of it.
    carol.run(&["ls", "@team"]).fails_with("not a member");
    assert!(get(&carol, "@team/docs/hello.txt").is_err());
    // A code that was never made, and one with a wrong secret, get the same answer.
    carol
        .run(&["group", "join", &format!("{id}.{}", "a".repeat(52))])
        .fails_with("invalid, expired or used up");
    carol
        .run(&["group", "join", &format!("9999.{secret}")])
        .fails_with("invalid, expired or used up");
}

#[test]
fn operator_added_members_wait_for_the_key_until_a_keyed_member_connects() {
    let server = TestServer::start();
    let [alice, carol] = <[Client; 2]>::try_from(users(&server, &["alice", "carol"]))
        .unwrap_or_else(|_| panic!("two clients"));

    // A group made by the operator has no key until its owner's client connects.
    server
        .admin(&["group", "create", "ops", "--owner", "alice"])
        .ok();
    let shown = server.admin(&["group", "show", "ops"]).ok().to_string();
    assert!(shown.contains("alice"), "{shown}");
    alice.run(&["whoami"]).ok();
    let list = json(alice.run(&["group", "list", "--json"]).ok());
    assert_eq!(list[0]["generation"], 0, "{list}");
    assert_eq!(list[0]["has_key"], true, "{list}");
    put(&alice, "@ops/plan.txt", "the plan");

    server.admin(&["group", "add-member", "ops", "carol"]).ok();
    let shown = json(server.admin(&["group", "show", "ops", "--json"]).ok());
    let waiting = shown.to_string();
    assert!(waiting.contains("carol"), "{waiting}");
    let text = server.admin(&["group", "show", "ops"]).ok().to_string();
    assert!(text.contains("waiting"), "{text}");
    // Carol sees the group but cannot decrypt yet.
    let list = json(carol.run(&["group", "list", "--json"]).ok());
    assert_eq!(list[0]["name"], "ops", "{list}");
    assert_eq!(list[0]["has_key"], false, "{list}");
    get(&carol, "@ops/plan.txt")
        .expect_err("no key yet")
        .fails_with("do not hold its key yet");

    // Any command of a keyed member heals.
    alice.run(&["ls", "@ops"]).ok();
    assert_eq!(member(&members(&alice, "ops"), "carol")["has_key"], true);
    let text = server.admin(&["group", "show", "ops"]).ok().to_string();
    assert!(!text.contains("waiting"), "{text}");
    assert_eq!(read(&carol, "@ops/plan.txt"), "the plan");
}

#[test]
fn a_removed_member_is_locked_out_and_new_files_use_the_next_generation() {
    let server = TestServer::start();
    let [alice, bob, carol] = <[Client; 3]>::try_from(users(&server, &["alice", "bob", "carol"]))
        .unwrap_or_else(|_| panic!("three clients"));
    alice.run(&["group", "create", "team"]).ok();
    let code = invite(&alice, "team", &["--uses", "3"]);
    bob.run(&["group", "join", &code]).ok();
    alice.run(&["group", "add", "team", "carol"]).ok();
    put(&alice, "@team/old.txt", "before the removal");
    assert_eq!(read(&bob, "@team/old.txt"), "before the removal");

    alice.run(&["group", "remove", "team", "bob"]).ok();
    bob.run(&["ls", "@team"]).fails_with("not a member");
    get(&bob, "@team/old.txt")
        .expect_err("removed")
        .fails_with("not a member");
    bob.run(&["group", "members", "team"])
        .fails_with("not a member");
    let list = json(bob.run(&["group", "list", "--json"]).ok());
    assert_eq!(list, serde_json::json!([]));
    // The code he joined with had uses left; a removal ends every code of the group.
    bob.run(&["group", "join", &code])
        .fails_with("invalid, expired or used up");

    assert_eq!(info(&alice, "team")["generation"], 1);
    put(&carol, "@team/new.txt", "after the removal");
    let versions = json(alice.run(&["versions", "@team/new.txt", "--json"]).ok());
    assert_eq!(versions["versions"][0]["generation"], 1, "{versions}");
    let versions = json(alice.run(&["versions", "@team/old.txt", "--json"]).ok());
    assert_eq!(versions["versions"][0]["generation"], 0, "{versions}");
    assert_eq!(read(&carol, "@team/old.txt"), "before the removal");
    assert_eq!(read(&alice, "@team/new.txt"), "after the removal");
    let list = members(&alice, "team");
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    assert_eq!(member(&list, "carol")["has_key"], true);

    // Leaving rotates too.
    carol.run(&["group", "leave", "team"]).ok();
    assert_eq!(info(&alice, "team")["generation"], 2);
    carol.run(&["ls", "@team"]).fails_with("not a member");
}

#[test]
fn roles_rename_and_delete() {
    let server = TestServer::start();
    let [alice, bob, carol, dave] =
        <[Client; 4]>::try_from(users(&server, &["alice", "bob", "carol", "dave"]))
            .unwrap_or_else(|_| panic!("four clients"));
    alice.run(&["group", "create", "team"]).ok();
    alice.run(&["group", "add", "team", "bob"]).ok();
    alice.run(&["group", "add", "team", "carol"]).ok();
    alice.run(&["group", "role", "team", "bob", "manager"]).ok();
    put(&alice, "@team/a.txt", "a");

    // Members cannot manage.
    carol.run(&["group", "add", "team", "dave"]).denied();
    carol.run(&["group", "rename", "team", "crew"]).denied();
    carol.run(&["group", "remove", "team", "bob"]).denied();
    carol.run(&["group", "delete", "team", "--yes"]).denied();
    // Managers manage members, but not the owner or the group's existence.
    bob.run(&["group", "add", "team", "dave"]).ok();
    assert_eq!(read(&dave, "@team/a.txt"), "a");
    bob.run(&["group", "role", "team", "alice", "member"])
        .denied();
    bob.run(&["group", "remove", "team", "alice"]).denied();
    bob.run(&["group", "delete", "team", "--yes"]).denied();
    bob.run(&["group", "rename", "team", "crew"]).ok();
    assert_eq!(read(&carol, "@crew/a.txt"), "a");
    carol.run(&["ls", "@team"]).fails_with("team");
    // The owner cannot leave without handing the group over.
    alice.run(&["group", "leave", "crew"]).fails_with("owner");

    // Deleting needs a confirmation, then the group and its files are gone.
    alice.run(&["group", "delete", "crew"]).fails_with("--yes");
    alice.run(&["group", "delete", "crew", "--yes"]).ok();
    for c in [&alice, &bob, &carol, &dave] {
        let list = json(c.run(&["group", "list", "--json"]).ok());
        assert_eq!(list, serde_json::json!([]));
    }
    let groups = json(server.admin(&["group", "list", "--json"]).ok());
    assert_eq!(groups, serde_json::json!([]));
    // The name is free again.
    bob.run(&["group", "create", "crew"]).ok();
    bob.run(&["ls", "@crew"]).ok();
}

#[test]
fn the_group_quota_refuses_an_upload() {
    let server = TestServer::start();
    let [alice] = <[Client; 1]>::try_from(users(&server, &["alice"]))
        .unwrap_or_else(|_| panic!("one client"));
    alice.run(&["group", "create", "team"]).ok();
    server.admin(&["group", "set-quota", "team", "4KiB"]).ok();
    put(&alice, "@team/small.txt", "fits");
    let big = local(&alice, "big.bin", &"x".repeat(16 * 1024));
    alice
        .run(&["put", s(&big), "@team/big.bin"])
        .fails_with("quota exceeded");
    assert_eq!(info(&alice, "team")["quota_bytes"], 4096);
    // The personal space is not affected.
    alice.run(&["put", s(&big), "/big.bin"]).ok();
}

#[test]
fn keys_of_people_are_pinned_and_a_changed_key_is_refused() {
    let server = TestServer::start_with("[codes]\nresend_cooldown_s = 0\n");
    let [alice, bob] = <[Client; 2]>::try_from(users(&server, &["alice", "bob"]))
        .unwrap_or_else(|_| panic!("two clients"));
    let fingerprint = |c: &Client, user: Option<&str>| -> String {
        let mut args = vec!["key", "fingerprint"];
        args.extend(user);
        c.run(&args)
            .ok()
            .split_whitespace()
            .next()
            .expect("fingerprint")
            .to_string()
    };
    let alice_fp = fingerprint(&alice, None);
    assert!(alice_fp.starts_with("SHA256:"), "{alice_fp}");
    assert_eq!(fingerprint(&bob, Some("alice")), alice_fp);
    let wrong = format!("SHA256:{}", "0".repeat(64));
    let err = bob
        .run(&["key", "verify", "alice", &wrong])
        .fails_with(&wrong)
        .to_string();
    assert!(err.contains(&alice_fp), "{err}");
    bob.run(&["key", "verify", "alice", &alice_fp]).ok();

    // Alice sees bob's key when she adds him, then bob gets fresh keys.
    let bob_fp = fingerprint(&alice, Some("bob"));
    alice.run(&["group", "create", "team"]).ok();
    alice.run(&["group", "add", "team", "bob"]).ok();
    bob.run(&["reset-password", "bob"]).ok();
    let code = server.outbox_code("bob@example.org");
    bob.run_stdin(
        &[
            "reset-password",
            "bob",
            "--code",
            &code,
            "--discard-encrypted-data",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    )
    .ok();
    let new_fp = fingerprint(&bob, None);
    assert_ne!(new_fp, bob_fp);
    alice.run(&["group", "create", "other"]).ok();
    let err = alice
        .run(&["group", "add", "other", "bob"])
        .fails_with(&bob_fp)
        .to_string();
    assert!(err.contains(&new_fp), "{err}");
    assert!(err.contains("vault key verify bob"), "{err}");
    // Once alice has checked the new fingerprint with bob, adding works.
    alice.run(&["key", "verify", "bob", &new_fp]).ok();
    alice.run(&["group", "add", "other", "bob"]).ok();
    put(&alice, "@other/x.txt", "for the new key");
    assert_eq!(read(&bob, "@other/x.txt"), "for the new key");
}

#[test]
fn sync_two_members_through_a_group_folder() {
    let server = TestServer::start();
    let [alice, bob] = <[Client; 2]>::try_from(users(&server, &["alice", "bob"]))
        .unwrap_or_else(|_| panic!("two clients"));
    alice.run(&["group", "create", "team"]).ok();
    let code = invite(&alice, "team", &["--uses", "2", "--expires", "1h"]);
    bob.run(&["group", "join", &code]).ok();
    let dir_a = alice.dir.path().join("A");
    let dir_b = bob.dir.path().join("B");
    std::fs::create_dir_all(dir_a.join("sub")).expect("A");
    std::fs::create_dir_all(&dir_b).expect("B");
    std::fs::write(dir_a.join("sub/one.txt"), "one").expect("write");
    alice.run(&["sync", s(&dir_a), "@team/shared"]).ok();
    bob.run(&["sync", s(&dir_b), "@team/shared"]).ok();
    assert_eq!(
        std::fs::read_to_string(dir_b.join("sub/one.txt")).expect("synced"),
        "one"
    );
    std::fs::write(dir_b.join("two.txt"), "two").expect("write");
    bob.run(&["sync", s(&dir_b), "@team/shared"]).ok();
    alice.run(&["sync", s(&dir_a), "@team/shared"]).ok();
    assert_eq!(
        std::fs::read_to_string(dir_a.join("two.txt")).expect("synced"),
        "two"
    );
}
