//! End to end: mail through a real SMTP server (`vault_e2e::smtp`, in process): plain,
//! with STARTTLS and with implicit TLS (both with AUTH, certificates from a private CA made
//! here) on a loopback port. The server sends from its queue after answering: a failure
//! shows in its log (without the address or the code) and the message is tried again,
//! never in the answer.

use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use vault_e2e::smtp::{SmtpAuth, SmtpServer, SmtpTls};
use vault_e2e::{Client, PASSWORD, TestServer, code_in};

/// A private CA (its certificate as a PEM file, for the server's `smtp_ca_file`) and a
/// certificate it signed for 127.0.0.1, for the SMTP server.
struct TestCa {
    _dir: tempfile::TempDir,
    ca_cert: std::path::PathBuf,
    leaf_cert: CertificateDer<'static>,
    leaf_key: Vec<u8>,
}

impl TestCa {
    fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().expect("tls dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("leaf params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf cert");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca_cert.pem()).expect("write PEM");
        TestCa {
            ca_cert: ca_path,
            leaf_cert: leaf.der().clone(),
            leaf_key: leaf_key.serialize_der(),
            _dir: dir,
        }
    }

    /// An SMTP server offering `tls` with this CA's certificate, accepting `user`/`password`.
    fn smtp(&self, tls: SmtpTls, user: &str, password: &str) -> SmtpServer {
        SmtpServer::start_on(
            0,
            tls,
            Some(SmtpAuth {
                cert: self.leaf_cert.clone(),
                key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.clone())),
                user: user.into(),
                password: password.into(),
            }),
        )
    }
}

/// The first mail containing `needle`, waiting up to 10 s.
fn wait_for(smtp: &SmtpServer, needle: &str) -> String {
    smtp.wait_for(needle, Duration::from_secs(10))
}

/// Waits up to 20 s for the server's log to contain `needle`; returns the log.
fn wait_for_log(server: &TestServer, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.log();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "the server's log never said {needle:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn codes_go_through_a_real_smtp_server_and_are_tried_again_while_it_is_down() {
    let mut smtp = SmtpServer::start();
    let smtp_port = smtp.port;
    let server = TestServer::start_with(&format!(
        "[mail]\ntransport = \"smtp\"\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"Vault <vault@example.org>\"\n\
         first_retry_s = 1\n",
        smtp.port
    ));
    let pat = Client::new();
    let base = [
        "--server",
        server.addr.as_str(),
        "--fingerprint",
        server.fingerprint.as_str(),
    ];
    pat.run(
        &[
            &["register", "pat", "--email", "pat@example.org"][..],
            &base,
        ]
        .concat(),
    )
    .ok();
    let mail = wait_for(&smtp, "pat@example.org");
    assert!(mail.contains("From: Vault <vault@example.org>"), "{mail}");
    let code = code_in(&mail).expect("code line in the mail");
    pat.run_stdin(
        &["register", "pat", "--code", &code, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    )
    .ok();
    assert!(
        !server
            .data_dir()
            .join("outbox")
            .read_dir()
            .expect("outbox")
            .any(|_| true),
        "nothing went to the outbox"
    );

    server.admin(&["mail", "test", "ops@example.org"]).ok();
    wait_for(&smtp, "ops@example.org");

    smtp.stop();
    // The operator's direct test still reports the failure.
    server
        .admin(&["mail", "test", "ops@example.org"])
        .fails_with("was not sent");
    // A request is answered as always: the mail waits in the queue and is tried again
    // until the SMTP server is back.
    let quinn = Client::new();
    quinn
        .run(
            &[
                &["register", "quinn", "--email", "quinn@example.org"][..],
                &base,
            ]
            .concat(),
        )
        .ok();
    wait_for_log(&server, "mail could not be sent; trying again");
    let smtp = SmtpServer::start_on(smtp_port, SmtpTls::None, None);
    let mail = wait_for(&smtp, "quinn@example.org");
    let code = code_in(&mail).expect("code line in the mail");
    let log = server.log();
    for secret in ["quinn@example.org", code.as_str()] {
        assert!(
            !log.contains(secret),
            "{secret} in the server's log:\n{log}"
        );
    }
}

/// A server whose mail goes to `smtp_url`, tried twice a second apart, and what the
/// first registration step of `user` printed.
fn register_through(
    smtp_url: &str,
    ca_file: &std::path::Path,
    user: &str,
) -> (TestServer, vault_e2e::Out) {
    let server = TestServer::start_with(&format!(
        "[mail]\ntransport = \"smtp\"\nsmtp_url = \"{smtp_url}\"\nsmtp_ca_file = \"{}\"\n\
         from = \"Vault <vault@example.org>\"\nattempts = 2\nfirst_retry_s = 1\n",
        ca_file.display()
    ));
    let out = Client::new().run(&[
        "register",
        user,
        "--email",
        &format!("{user}@example.org"),
        "--server",
        server.addr.as_str(),
        "--fingerprint",
        server.fingerprint.as_str(),
    ]);
    (server, out)
}

#[test]
fn smtp_with_starttls_or_implicit_tls_and_auth() {
    let ca = TestCa::new();
    let starttls = ca.smtp(SmtpTls::StartTls, "vault", "s3cret");
    let port = starttls.port;
    let (_server, out) = register_through(
        &format!("smtp://vault:s3cret@127.0.0.1:{port}?tls=required"),
        &ca.ca_cert,
        "sam",
    );
    out.ok();
    let mail = wait_for(&starttls, "sam@example.org");
    assert!(code_in(&mail).is_some(), "{mail}");
    // A wrong SMTP password, or a server certificate nobody vouches for: the requester
    // is answered as always, and the server's log says why the mail was given up.
    let (server, out) = register_through(
        &format!("smtp://vault:wrong@127.0.0.1:{port}?tls=required"),
        &ca.ca_cert,
        "sid",
    );
    out.ok();
    let log = wait_for_log(&server, "mail could not be sent; given up");
    assert!(log.contains("Authentication"), "{log}");
    assert!(!log.contains("sid@example.org"), "{log}");
    let stranger = TestCa::new();
    let (server, out) = register_through(
        &format!("smtp://vault:s3cret@127.0.0.1:{port}?tls=required"),
        &stranger.ca_cert,
        "sol",
    );
    out.ok();
    let log = wait_for_log(&server, "mail could not be sent; given up");
    assert!(log.contains("certificate"), "{log}");
    assert!(!log.contains("sol@example.org"), "{log}");
    assert!(starttls.messages().len() == 1, "only sam's mail arrived");

    let smtps = ca.smtp(SmtpTls::Implicit, "vault", "s3cret");
    let (_server, out) = register_through(
        &format!("smtps://vault:s3cret@127.0.0.1:{}", smtps.port),
        &ca.ca_cert,
        "sue",
    );
    out.ok();
    let mail = wait_for(&smtps, "sue@example.org");
    assert!(code_in(&mail).is_some(), "{mail}");
}
