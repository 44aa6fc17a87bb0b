//! End to end: mail through a real SMTP server: Python's `aiosmtpd`, plain, with STARTTLS
//! and with implicit TLS (both with AUTH, certificates from a private CA made here)
//! (`pip install aiosmtpd`) on a loopback port, storing what it receives in a Maildir.
//! The server sends from its queue after answering: a failure shows in its log (without
//! the address or the code) and the message is tried again, never in the answer.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vault_e2e::{Client, PASSWORD, TestServer, code_in};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// A private CA and a certificate it signed for 127.0.0.1, as PEM files.
struct TestCa {
    _dir: tempfile::TempDir,
    ca_cert: std::path::PathBuf,
    leaf_cert: std::path::PathBuf,
    leaf_key: std::path::PathBuf,
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
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write PEM");
            path
        };
        TestCa {
            ca_cert: write("ca.pem", ca_cert.pem()),
            leaf_cert: write("leaf.pem", leaf.pem()),
            leaf_key: write("leaf.key", leaf_key.serialize_pem()),
            _dir: dir,
        }
    }
}

struct SmtpServer {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl SmtpServer {
    fn start() -> SmtpServer {
        SmtpServer::start_on(free_port())
    }

    fn start_on(port: u16) -> SmtpServer {
        let maildir = tempfile::tempdir().expect("maildir");
        let mut command = Command::new("python3");
        command
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(maildir.path().join("mail"));
        SmtpServer::spawn(command, port, maildir)
    }

    /// aiosmtpd with TLS (`starttls` or `smtps`) and AUTH as `user`/`password`, from
    /// `support/smtp_tls_server.py`.
    fn start_tls(mode: &str, tls: &TestCa, user: &str, password: &str) -> SmtpServer {
        let port = free_port();
        let maildir = tempfile::tempdir().expect("maildir");
        let mut command = Command::new("python3");
        command
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/support/smtp_tls_server.py"
            ))
            .arg(mode)
            .arg(port.to_string())
            .arg(maildir.path().join("mail"))
            .arg(&tls.leaf_cert)
            .arg(&tls.leaf_key)
            .args([user, password]);
        SmtpServer::spawn(command, port, maildir)
    }

    fn spawn(mut command: Command, port: u16, maildir: tempfile::TempDir) -> SmtpServer {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed for the SMTP test");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start; install it with `pip install aiosmtpd`"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        SmtpServer {
            child,
            port,
            maildir,
        }
    }

    /// Every received message, as text.
    fn messages(&self) -> Vec<String> {
        let new = self.maildir.path().join("mail").join("new");
        std::fs::read_dir(new)
            .map(|dir| {
                dir.flatten()
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| m.contains(needle)) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no mail containing {needle:?} arrived"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let mail = smtp.wait_for("pat@example.org");
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
    smtp.wait_for("ops@example.org");

    let _ = smtp.child.kill();
    let _ = smtp.child.wait();
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
    let smtp = SmtpServer::start_on(smtp.port);
    let mail = smtp.wait_for("quinn@example.org");
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
    let starttls = SmtpServer::start_tls("starttls", &ca, "vault", "s3cret");
    let port = starttls.port;
    let (_server, out) = register_through(
        &format!("smtp://vault:s3cret@127.0.0.1:{port}?tls=required"),
        &ca.ca_cert,
        "sam",
    );
    out.ok();
    let mail = starttls.wait_for("sam@example.org");
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

    let smtps = SmtpServer::start_tls("smtps", &ca, "vault", "s3cret");
    let (_server, out) = register_through(
        &format!("smtps://vault:s3cret@127.0.0.1:{}", smtps.port),
        &ca.ca_cert,
        "sue",
    );
    out.ok();
    let mail = smtps.wait_for("sue@example.org");
    assert!(code_in(&mail).is_some(), "{mail}");
}
