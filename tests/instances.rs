//! Several `vault-server` instances of one deployment: one database, one blob store (a
//! bucket when `VAULT_TEST_S3_*` names one), one certificate.

use std::path::Path;

use vault_e2e::{Client, PASSWORD, TestServer};

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
