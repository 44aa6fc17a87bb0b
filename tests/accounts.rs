//! End to end: accounts through the real `vault`, `vault-server` and `vault-admin`
//! binaries — registration by mailed code, login throttling, sessions, password change
//! and reset, operator lock and kick, certificate pinning.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use vault_e2e::{Client, PASSWORD, TestServer, code_in};

#[test]
fn register_through_the_outbox_code_then_whoami() {
    let server = TestServer::start();
    let alice = Client::new();
    let out = alice.run(&[
        "register",
        "Alice",
        "--email",
        "alice@example.org",
        "--server",
        &server.addr,
        "--accept-new-cert",
    ]);
    assert!(
        out.ok()
            .contains("A verification code is on its way to alice@example.org"),
        "{}",
        out.stdout
    );
    let code = server.outbox_code("alice@example.org");
    assert_eq!(code.len(), 8);
    assert!(
        code.chars()
            .all(|c| "ABCDEFGHJKLMNPQRSTUVWXYZ23456789".contains(c)),
        "{code}"
    );
    let out = alice.run_stdin(
        &[
            "register",
            "alice",
            "--code",
            &code.to_lowercase(),
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    let rk = out
        .ok()
        .split_whitespace()
        .find(|w| w.starts_with("vault-rk-"))
        .expect("recovery key")
        .to_string();
    assert_eq!(rk.len(), "vault-rk-".len() + 13 * 4 + 12, "{rk}");

    let who: serde_json::Value =
        serde_json::from_str(alice.run(&["whoami", "--json"]).ok()).expect("json");
    assert_eq!(who["user"], "alice");
    assert_eq!(who["email"], "alice@example.org");
    assert_eq!(who["server"], server.addr.as_str());
    assert_eq!(who["fingerprint"], server.fingerprint.as_str());
    assert_eq!(who["quota"]["limit_bytes"], 10u64 << 30);
    for name in ["client.toml", "session", "account.key"] {
        let mode = std::fs::metadata(alice.state_dir().join(name))
            .expect(name)
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    // The code is single-use.
    alice.run(&["logout"]).ok();
    let again = Client::new();
    again
        .register_start(&server, "alice2", "a2@example.org")
        .ok();
    let out = again.run_stdin(
        &["register", "alice", "--code", &code, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    out.fails_with("no registration of alice is in progress");

    let (_, out) = Client::login_to(&server, "alice", PASSWORD);
    out.ok();
    let audit = server.admin(&["audit", "--user", "alice", "--json"]);
    let audit = audit.ok();
    for event in ["registration_started", "registered", "login"] {
        assert!(
            audit.contains(&format!("\"{event}\"")),
            "{event} missing from audit: {audit}"
        );
    }
}

#[test]
fn wrong_codes_use_up_tries_and_a_right_code_still_works_before_that() {
    let server = TestServer::start();
    let bob = Client::new();
    bob.register_start(&server, "bob", "bob@example.org").ok();
    let out = bob.run_stdin(
        &["register", "bob", "--code", "AAAAAAAA", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    out.fails_with("wrong verification code (4 tries left)");
    let code = server.outbox_code("bob@example.org");
    bob.run_stdin(
        &["register", "bob", "--code", &code, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    )
    .ok();
    // The operator sees the wrong code in the audit log, as a failed login is.
    let audit = server.admin(&["audit", "--user", "bob"]);
    assert!(
        audit.ok().contains("code_rejected") && audit.stdout.contains("4 tries left"),
        "{}",
        audit.stdout
    );

    let carol = Client::new();
    carol
        .register_start(&server, "carol", "carol@example.org")
        .ok();
    for _ in 0..5 {
        carol.run_stdin(
            &[
                "register",
                "carol",
                "--code",
                "AAAAAAAA",
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        );
    }
    let code = server.outbox_code("carol@example.org");
    let out = carol.run_stdin(
        &["register", "carol", "--code", &code, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    out.fails_with("too many wrong tries");
    let audit = server.admin(&["audit", "--user", "carol"]);
    assert!(
        audit.ok().contains("wrong register code, 1 try left"),
        "{}",
        audit.stdout
    );
}

#[test]
fn an_expired_code_is_refused() {
    let server = TestServer::start_with("[codes]\nttl_s = 1\n");
    let dan = Client::new();
    dan.register_start(&server, "dan", "dan@example.org").ok();
    let code = server.outbox_code("dan@example.org");
    std::thread::sleep(Duration::from_millis(2100));
    let out = dan.run_stdin(
        &["register", "dan", "--code", &code, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    out.fails_with("expired");
}

#[test]
fn a_second_request_within_the_cooldown_mails_nothing_new_and_the_first_code_stays() {
    let server = TestServer::start();
    let erin = Client::new();
    let args = [
        "register",
        "erin",
        "--email",
        "erin@example.org",
        "--server",
        &server.addr,
        "--fingerprint",
        &server.fingerprint,
    ];
    let first = erin.run(&args).ok().to_string();
    let second = erin.run(&args);
    assert_eq!(second.ok(), first, "the same answer, the same words");
    assert!(first.contains("mails nothing new"), "{first}");
    let code = server.outbox_code("erin@example.org");
    let audit = server.admin(&["audit", "--user", "erin", "--json"]);
    assert!(
        audit
            .ok()
            .contains("within the resend cooldown: nothing mailed"),
        "{}",
        audit.stdout
    );
    assert_eq!(
        server.outbox_mails("erin@example.org").len(),
        1,
        "no second mail was sent"
    );
    erin.run_stdin(
        &["register", "erin", "--code", &code, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    )
    .ok();
}

#[test]
fn a_taken_email_is_answered_like_a_fresh_one_and_its_owner_is_told() {
    // No resend cooldown: frank's own registration a moment ago would hold the notice back.
    let server = TestServer::start_with("[codes]\nresend_cooldown_s = 0\n");
    Client::new().register(&server, "frank", "frank@example.org");
    let base = [
        "--server",
        server.addr.as_str(),
        "--fingerprint",
        server.fingerprint.as_str(),
    ];
    let register = |client: &Client, user: &str, email: &str| {
        client.run(&[&["register", user, "--email", email][..], &base].concat())
    };
    let (taker, newcomer) = (Client::new(), Client::new());
    let taken = register(&taker, "mallory", "frank@example.org");
    let fresh = register(&newcomer, "nora", "nora@example.org");
    let said = |out: &vault_e2e::Out, user: &str, email: &str| {
        out.ok().replace(email, "ADDR").replace(user, "USER")
    };
    assert_eq!(
        said(&taken, "mallory", "frank@example.org"),
        said(&fresh, "nora", "nora@example.org"),
        "the same words for a taken and a fresh address"
    );
    assert_eq!(taken.stderr, fresh.stderr);

    // The owner is told, without a code; the newcomer gets one.
    let notice = server.wait_for_mail("frank@example.org", |m| {
        m.contains("Someone asked to register")
    });
    assert!(
        code_in(&notice).is_none(),
        "no code in the notice: {notice}"
    );
    for says in [
        "\"mallory\"",
        "nothing about your account changed",
        "ignore this mail",
    ] {
        assert!(notice.contains(says), "{says:?} in {notice}");
    }
    server.outbox_code("nora@example.org");

    // Finishing the attempt fails as a wrong code does.
    let finish = |client: &Client, user: &str| {
        client.run_stdin(
            &["register", user, "--code", "AAAAAAAA", "--password-stdin"],
            &format!("{PASSWORD}\n"),
        )
    };
    let taken = finish(&taker, "mallory");
    taken.fails_with("wrong verification code (4 tries left)");
    assert_eq!(taken.stderr, finish(&newcomer, "nora").stderr);

    let audit = server.admin(&["audit", "--user", "frank", "--json"]);
    assert!(
        audit.ok().contains("\"registration_email_taken\""),
        "{}",
        audit.stdout
    );

    // Usernames are public: a taken one is refused.
    let other = Client::new();
    register(&other, "frank", "new@example.org").fails_with("username is already taken");
    let bad = register(&other, "x", "new@example.org");
    bad.fails_with("invalid username");
    let bad = register(&other, "valid_name", "not-an-address");
    bad.fails_with("invalid email address");
}

#[test]
fn unknown_user_and_wrong_password_look_the_same() {
    let server = TestServer::start();
    Client::new().register(&server, "grace", "grace@example.org");
    let (_, wrong_password) = Client::login_to(&server, "grace", "not the password");
    let (_, unknown_user) = Client::login_to(&server, "nobody", "not the password");
    wrong_password.fails_with("invalid username or password");
    assert_eq!(wrong_password.stderr, unknown_user.stderr);
}

#[test]
fn five_failures_lock_the_account_until_the_operator_resets_it() {
    let server = TestServer::start();
    Client::new().register(&server, "heidi", "heidi@example.org");
    let (client, _) = Client::login_to(&server, "heidi", "wrong password 1");
    for i in 2..=5 {
        client
            .login("heidi", &format!("wrong password {i}"))
            .fails_with("invalid username or password");
    }
    // Locked now: even the right password is refused, and the answer says when to retry.
    let out = client.login("heidi", PASSWORD);
    out.fails_with("too many failed logins; try again in");
    let listed = server.admin(&["throttle", "list", "--json"]);
    assert!(listed.ok().contains("user:heidi"), "{}", listed.stdout);
    let audit = server.admin(&["audit", "--user", "heidi"]);
    assert!(audit.ok().contains("lockout"), "{}", audit.stdout);

    server.admin(&["user", "reset-throttle", "heidi"]).ok();
    client.login("heidi", PASSWORD).ok();
    client.run(&["whoami"]).ok();
}

#[test]
fn failures_from_one_address_across_accounts_slow_that_address() {
    let server = TestServer::start_with("[throttle]\nip_failures = 3\n");
    Client::new().register(&server, "olga", "olga@example.org");
    let (client, _) = Client::login_to(&server, "nobody1", "wrong password");
    client
        .login("nobody2", "wrong password")
        .fails_with("invalid username or password");
    client
        .login("nobody3", "wrong password")
        .fails_with("invalid username or password");
    // The address is slowed now, for every account, even with the right password.
    client
        .login("olga", PASSWORD)
        .fails_with("too many failed logins; try again in");
    server.admin(&["throttle", "reset"]).ok();
    client.login("olga", PASSWORD).ok();
}

#[test]
fn passwd_keeps_the_keys_and_ends_other_sessions() {
    let server = TestServer::start();
    let laptop = Client::new();
    laptop.register(&server, "ivan", "ivan@example.org");
    let key_before = laptop.account_key_file();
    let (desktop, out) = Client::login_to(&server, "ivan", PASSWORD);
    out.ok();
    desktop.run(&["whoami"]).ok();

    let new_password = "a much better passphrase";
    laptop
        .run_stdin(
            &["passwd", "--password-stdin"],
            &format!("{new_password}\n"),
        )
        .fails_with("no password given");
    let out = laptop.run_env(
        &["passwd"],
        &[
            ("VAULT_PASSWORD", PASSWORD),
            ("VAULT_NEW_PASSWORD", new_password),
        ],
    );
    out.ok();
    laptop.run(&["whoami"]).ok();
    desktop
        .run(&["whoami"])
        .fails_with("session ended: password changed");

    let (_, old) = Client::login_to(&server, "ivan", PASSWORD);
    old.fails_with("invalid username or password");
    let (fresh, new) = Client::login_to(&server, "ivan", new_password);
    new.ok();
    assert_eq!(
        fresh.account_key_file(),
        key_before,
        "the account key survives a password change"
    );

    let out = laptop.run_env(
        &["passwd"],
        &[
            ("VAULT_PASSWORD", "wrong one"),
            ("VAULT_NEW_PASSWORD", "whatever else"),
        ],
    );
    out.fails_with("the current password is wrong");
}

#[test]
fn reset_with_the_recovery_key_keeps_the_account_key() {
    let server = TestServer::start_with("[codes]\nresend_cooldown_s = 0\n");
    let judy = Client::new();
    let rk = judy.register(&server, "judy", "judy@example.org");
    let key_before = judy.account_key_file();
    let (other, _) = Client::login_to(&server, "judy", PASSWORD);

    let phone = Client::new();
    let base = [
        "--server",
        server.addr.as_str(),
        "--fingerprint",
        server.fingerprint.as_str(),
    ];
    phone
        .run(&[&["reset-password", "judy"][..], &base].concat())
        .ok();
    let code = server.outbox_code("judy@example.org");
    let new_password = "a brand new password";
    let out = phone.run_stdin(
        &[
            "reset-password",
            "judy",
            "--code",
            &code,
            "--password-stdin",
        ],
        &format!("{new_password}\n"),
    );
    out.fails_with("--recovery-key");
    let wrong_rk = "vault-rk-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA";
    let out = phone.run_stdin(
        &[
            "reset-password",
            "judy",
            "--code",
            &code,
            "--recovery-key",
            wrong_rk,
            "--password-stdin",
        ],
        &format!("{new_password}\n"),
    );
    out.fails_with("recovery key does not open");
    let out = phone.run_stdin(
        &[
            "reset-password",
            "judy",
            "--code",
            &code,
            "--recovery-key",
            &rk.to_lowercase(),
            "--password-stdin",
        ],
        &format!("{new_password}\n"),
    );
    assert!(out.ok().contains("keys were kept"), "{}", out.stdout);
    assert_eq!(
        phone.account_key_file(),
        key_before,
        "the same account key opens after the reset"
    );
    other
        .run(&["whoami"])
        .fails_with("session ended: password reset");
    Client::login_to(&server, "judy", new_password).1.ok();
    // The code was used up.
    let out = phone.run_stdin(
        &[
            "reset-password",
            "judy",
            "--code",
            &code,
            "--recovery-key",
            &rk,
            "--password-stdin",
        ],
        &format!("{new_password}\n"),
    );
    out.fails_with("no verification code is pending");
}

#[test]
fn reset_without_the_recovery_key_discards_the_old_keys() {
    let server = TestServer::start_with("[codes]\nresend_cooldown_s = 0\n");
    let ken = Client::new();
    let rk = ken.register(&server, "ken", "ken@example.org");
    let key_before = ken.account_key_file();
    ken.run(&["reset-password", "ken"]).ok();
    let code = server.outbox_code("ken@example.org");
    let out = ken.run_stdin(
        &[
            "reset-password",
            "ken",
            "--code",
            &code,
            "--discard-encrypted-data",
            "--password-stdin",
        ],
        &format!("{PASSWORD} 2\n"),
    );
    let text = out.ok();
    assert!(text.contains("can no longer be read"), "{text}");
    let new_rk = text
        .split_whitespace()
        .find(|w| w.starts_with("vault-rk-"))
        .expect("new recovery key");
    assert_ne!(new_rk, rk);
    assert_ne!(ken.account_key_file(), key_before);
    ken.run(&["whoami"]).ok();
    // Unknown users get the same answer to a reset request, and no mail.
    let known = ken.run(&["reset-password", "ken"]);
    server.outbox_code("ken@example.org");
    let mails = std::fs::read_dir(server.data_dir().join("outbox"))
        .expect("outbox")
        .count();
    let unknown = ken.run(&["reset-password", "nobody"]);
    assert_eq!(
        known.ok().replace("ken", "USER"),
        unknown.ok().replace("nobody", "USER")
    );
    assert_eq!(
        std::fs::read_dir(server.data_dir().join("outbox"))
            .expect("outbox")
            .count(),
        mails
    );
}

async fn closed_within(session: &vault_client::account::Session, limit: Duration) -> String {
    tokio::time::timeout(limit, session.conn.closed_reason())
        .await
        .expect("connection closed in time")
}

#[tokio::test(flavor = "multi_thread")]
async fn kick_and_lock_end_live_sessions_within_seconds() {
    vault_e2e::init_tls();
    let server = TestServer::start();
    let mallory = Client::new();
    mallory.register(&server, "mallory", "mallory@example.org");

    let live = mallory.live_session().await;
    let started = Instant::now();
    server.admin(&["user", "kick", "mallory"]).ok();
    let reason = closed_within(&live, Duration::from_secs(5)).await;
    assert!(reason.contains("ended by the operator"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(5));
    mallory
        .run(&["whoami"])
        .fails_with("session ended: ended by the operator");

    mallory.login("mallory", PASSWORD).ok();
    let live = mallory.live_session().await;
    server.admin(&["user", "lock", "mallory"]).ok();
    let reason = closed_within(&live, Duration::from_secs(5)).await;
    assert!(reason.contains("locked"), "{reason}");
    mallory
        .login("mallory", PASSWORD)
        .fails_with("locked by the operator");
    server.admin(&["user", "unlock", "mallory"]).ok();
    mallory.login("mallory", PASSWORD).ok();
    let audit = server.admin(&["audit", "--user", "mallory"]);
    for event in ["lock", "kick", "unlock"] {
        assert!(audit.ok().contains(event), "{event}: {}", audit.stdout);
    }
}

#[test]
fn single_session_ends_the_older_session_and_says_why() {
    let server = TestServer::start_with("single_session = true\n");
    let first = Client::new();
    first.register(&server, "nina", "nina@example.org");
    let (second, out) = Client::login_to(&server, "nina", PASSWORD);
    out.ok();
    second.run(&["whoami"]).ok();
    first.run(&["whoami"]).fails_with("logged in elsewhere");
}

#[test]
fn a_changed_certificate_is_refused_showing_both_fingerprints() {
    let mut server = TestServer::start();
    let oscar = Client::new();
    oscar.register(&server, "oscar", "oscar@example.org");
    let old = server.fingerprint.clone();
    server.restart(|data| std::fs::remove_dir_all(data.join("tls")).expect("remove tls"));
    assert_ne!(server.fingerprint, old);
    let out = oscar.run(&["whoami"]);
    let err = out.fails_with("certificate has changed");
    assert!(
        err.contains(&old) && err.contains(&server.fingerprint),
        "{err}"
    );

    // A client that never pinned is told what the server presents.
    let newcomer = Client::new();
    let out = newcomer.run_stdin(
        &[
            "login",
            "oscar",
            "--server",
            &server.addr,
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    out.fails_with(&format!(
        "not pinned yet; it presented {}",
        server.fingerprint
    ));
    // Accepting the new fingerprint explicitly works again.
    let out = oscar.run_stdin(
        &[
            "login",
            "oscar",
            "--fingerprint",
            &server.fingerprint,
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    out.ok();
    oscar.run(&["whoami"]).ok();
}

#[test]
fn usage_errors_exit_2_and_missing_state_says_what_to_do() {
    let server = TestServer::start();
    let client = Client::new();
    assert_eq!(client.run(&["register", "x"]).code, 2);
    assert_eq!(client.run(&["frobnicate"]).code, 2);
    client
        .run(&["whoami"])
        .fails_with("not logged in: run `vault login USER` first");
    client
        .run_stdin(&["login", "someone", "--password-stdin"], "pw\n")
        .fails_with("no server known yet");
    let out = client.run(&[
        "register",
        "pat1",
        "--email",
        "p@example.org",
        "--server",
        &server.addr,
        "--fingerprint",
        "SHA256:zz",
    ]);
    out.fails_with("invalid fingerprint");
    let _ = code_in;
}

/// How long a command may take to fail a check that needs no input.
const NO_INPUT: Duration = Duration::from_secs(30);

fn register_start(client: &Client, server: &TestServer, user: &str) {
    client
        .register_start(server, user, &format!("{user}@example.org"))
        .ok();
}

#[test]
fn register_checks_the_code_the_registration_and_the_server_before_reading_the_password() {
    let server = TestServer::start();
    let tim = Client::new();
    let step2 = |code: &str, extra: &[&str]| {
        let args = [
            &["register", "tim", "--code", code, "--password-stdin"][..],
            extra,
        ]
        .concat();
        tim.run_without_reading_stdin(&args, &[], NO_INPUT)
    };
    step2("ABCD2345", &[]).fails_with("no registration of tim is in progress here");
    register_start(&tim, &server, "tim");
    step2("WRONG", &[]).fails_with("\"WRONG\" is not a verification code");
    step2("ABCD-23456", &[]).fails_with("is not a verification code");
    step2("ABCD2345", &["--server", "127.0.0.1:9"])
        .fails_with(&format!("in progress here is with {}", server.addr));
    let typo = format!("SHA256:{}", "0".repeat(64));
    let err = step2("ABCD2345", &["--fingerprint", &typo])
        .fails_with("does not match the fingerprint you typed")
        .to_string();
    assert!(
        err.contains(&server.fingerprint) && !err.contains("has changed"),
        "{err}"
    );
    // A well-formed code is checked by the server, which needs the keys the password makes.
    let code = server.outbox_code("tim@example.org");
    tim.run_stdin(
        &["register", "tim", "--code", &code, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    )
    .ok();
}

#[test]
fn login_reports_a_bad_server_or_fingerprint_before_reading_the_password() {
    let server = TestServer::start();
    Client::new().register(&server, "uma", "uma@example.org");
    let fresh = Client::new();
    let login = |extra: &[&str]| {
        let args = [&["login", "uma", "--password-stdin"][..], extra].concat();
        fresh.run_without_reading_stdin(&args, &[], NO_INPUT)
    };
    login(&["--server", "no-such-host.invalid:7443"]).fails_with("cannot reach the server");
    login(&["--server", &server.addr]).fails_with("not pinned yet");
    let typo = format!("SHA256:{}", "ab".repeat(32));
    let err = login(&["--server", &server.addr, "--fingerprint", &typo])
        .fails_with("does not match the fingerprint you typed")
        .to_string();
    assert!(
        err.contains(&typo) && err.contains(&server.fingerprint),
        "{err}"
    );
    login(&["--server", &server.addr, "--fingerprint", "SHA256:zz"])
        .fails_with("invalid fingerprint");
    // Trust on first use names what it pinned.
    let out = fresh.run_stdin(
        &[
            "login",
            "uma",
            "--server",
            &server.addr,
            "--accept-new-cert",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    out.ok();
    assert!(
        out.stderr.contains(&format!(
            "Pinned the server's certificate {}",
            server.fingerprint
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn passwd_checks_the_current_password_before_reading_the_new_one() {
    let server = TestServer::start();
    let vera = Client::new();
    vera.register(&server, "vera", "vera@example.org");
    vera.run_without_reading_stdin(
        &["passwd", "--password-stdin"],
        &[("VAULT_PASSWORD", "not the password")],
        NO_INPUT,
    )
    .fails_with("the current password is wrong");
    let out = vera.run_stdin(&["passwd", "--password-stdin"], "a new passphrase\n");
    out.fails_with("no password given");
    let out = vera.run_stdin_env(
        &["passwd", "--password-stdin"],
        &[("VAULT_PASSWORD", PASSWORD)],
        "a new passphrase\n",
    );
    out.ok();
    Client::login_to(&server, "vera", "a new passphrase").1.ok();
}

#[test]
fn reset_checks_the_code_and_the_recovery_key_before_reading_the_password() {
    let server = TestServer::start_with("[codes]\nresend_cooldown_s = 0\n");
    let walt = Client::new();
    let rk = walt.register(&server, "walt", "walt@example.org");
    walt.run(&["reset-password", "walt"]).ok();
    let code = server.outbox_code("walt@example.org");
    let wrong_rk = "vault-rk-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA";
    let reset = |args: &[&str], env: &[(&str, &str)]| {
        let args = [&["reset-password", "walt", "--password-stdin"][..], args].concat();
        walt.run_without_reading_stdin(&args, env, NO_INPUT)
    };
    reset(&["--code", "AAAAAAAA", "--recovery-key", &rk], &[])
        .fails_with("wrong verification code");
    reset(&["--code", "AAAAAAAA", "--discard-encrypted-data"], &[])
        .fails_with("wrong verification code");
    reset(
        &["--code", &code, "--recovery-key", "vault-rk-nonsense"],
        &[],
    )
    .fails_with("recovery key");
    reset(&["--code", &code, "--recovery-key", wrong_rk], &[])
        .fails_with("recovery key does not open");
    reset(&["--code", &code], &[("VAULT_RECOVERY_KEY", wrong_rk)])
        .fails_with("recovery key does not open");
    reset(&["--code", &code], &[]).fails_with("VAULT_RECOVERY_KEY");
    // The key from the environment, then from the first line of stdin.
    let out = walt.run_stdin_env(
        &[
            "reset-password",
            "walt",
            "--code",
            &code,
            "--password-stdin",
        ],
        &[("VAULT_RECOVERY_KEY", &rk)],
        "first new password\n",
    );
    assert!(out.ok().contains("keys were kept"), "{}", out.stdout);
    walt.run(&["reset-password", "walt"]).ok();
    let code = server.outbox_code("walt@example.org");
    let out = walt.run_stdin(
        &[
            "reset-password",
            "walt",
            "--code",
            &code,
            "--recovery-key-stdin",
            "--password-stdin",
        ],
        &format!("{rk}\nsecond new password\n"),
    );
    assert!(out.ok().contains("keys were kept"), "{}", out.stdout);
    Client::login_to(&server, "walt", "second new password")
        .1
        .ok();
}

/// How long a step on the terminal may take (key derivation included).
const STEP: Duration = Duration::from_secs(60);

#[test]
fn on_a_terminal_a_wrong_code_is_asked_for_again_and_the_password_only_once() {
    let server = TestServer::start();
    let xena = Client::new();
    register_start(&xena, &server, "xena");
    let code = server.outbox_code("xena@example.org");
    let mut term = xena.terminal(&["register", "xena", "--code", "AAAAAAAA"], &[]);
    term.expect("Choose a password: ", STEP);
    term.type_line(PASSWORD);
    term.expect("Repeat the password: ", STEP);
    term.type_line(PASSWORD);
    term.expect("wrong verification code (4 tries left)", STEP);
    term.expect("Verification code from the mail: ", STEP);
    term.type_line("nonsense");
    term.expect("is not a verification code", STEP);
    term.expect("Verification code from the mail: ", STEP);
    term.type_line(&code.to_lowercase());
    let (status, screen) = term.finish(STEP);
    assert_eq!(status, 0, "{screen}");
    assert!(screen.contains("Account xena created"), "{screen}");
    assert_eq!(screen.matches("Choose a password").count(), 1, "{screen}");
    assert!(!screen.contains(PASSWORD), "no echo: {screen}");
    xena.run(&["whoami"]).ok();
}

#[test]
fn on_a_terminal_the_recovery_key_and_the_current_password_are_asked_for_again() {
    let server = TestServer::start_with("[codes]\nresend_cooldown_s = 0\n");
    let yuri = Client::new();
    let rk = yuri.register(&server, "yuri", "yuri@example.org");
    yuri.run(&["reset-password", "yuri"]).ok();
    let code = server.outbox_code("yuri@example.org");
    let mut term = yuri.terminal(&["reset-password", "yuri", "--code", &code], &[]);
    term.expect("Recovery key (vault-rk-…): ", STEP);
    term.type_line("vault-rk-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA");
    term.expect("does not open this account's key", STEP);
    term.expect("Recovery key (vault-rk-…): ", STEP);
    term.type_line(&rk);
    term.expect("New password: ", STEP);
    term.type_line("reset on a terminal");
    term.expect("Repeat the password: ", STEP);
    term.type_line("reset on a terminal");
    let (status, screen) = term.finish(STEP);
    assert_eq!(status, 0, "{screen}");
    assert!(screen.contains("keys were kept"), "{screen}");
    assert!(
        !screen.contains(&rk),
        "the recovery key is not echoed: {screen}"
    );

    let mut term = yuri.terminal(&["passwd"], &[]);
    term.expect("Current password: ", STEP);
    term.type_line("not it at all");
    term.expect("the current password is wrong", STEP);
    term.expect("Current password: ", STEP);
    term.type_line("reset on a terminal");
    term.expect("New password: ", STEP);
    term.type_line("changed on a terminal");
    term.expect("Repeat the password: ", STEP);
    term.type_line("changed on a terminal");
    let (status, screen) = term.finish(STEP);
    assert_eq!(status, 0, "{screen}");
    Client::login_to(&server, "yuri", "changed on a terminal")
        .1
        .ok();
}
