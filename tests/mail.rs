//! End to end: mail through a real SMTP server: Python's `aiosmtpd`, plain, with STARTTLS
//! and with implicit TLS (both with AUTH, certificates from a private CA made here)
//! (`pip install aiosmtpd`) on a loopback port, storing what it receives in a Maildir.

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

#[test]
fn codes_go_through_a_real_smtp_server_and_a_dead_one_is_an_error() {
    let mut smtp = SmtpServer::start();
    let server = TestServer::start_with(&format!(
        "[mail]\ntransport = \"smtp\"\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"Vault <vault@example.org>\"\n",
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
    let quinn = Client::new();
    let args = [
        &["register", "quinn", "--email", "quinn@example.org"][..],
        &base,
    ]
    .concat();
    quinn
        .run(&args)
        .fails_with("could not send the verification mail");
    // The failed mail does not hold back a retry once mail works again.
    let smtp = SmtpServer::start_on(smtp.port);
    quinn.run(&args).ok();
    smtp.wait_for("quinn@example.org");
}

/// Registers `user` against a server whose mail goes to `smtp_url`; returns what the
/// first registration step printed.
fn register_through(smtp_url: &str, ca_file: &std::path::Path, user: &str) -> vault_e2e::Out {
    let server = TestServer::start_with(&format!(
        "[mail]\ntransport = \"smtp\"\nsmtp_url = \"{smtp_url}\"\nsmtp_ca_file = \"{}\"\n\
         from = \"Vault <vault@example.org>\"\n",
        ca_file.display()
    ));
    Client::new().run(&[
        "register",
        user,
        "--email",
        &format!("{user}@example.org"),
        "--server",
        server.addr.as_str(),
        "--fingerprint",
        server.fingerprint.as_str(),
    ])
}

#[test]
fn smtp_with_starttls_or_implicit_tls_and_auth() {
    let ca = TestCa::new();
    let starttls = SmtpServer::start_tls("starttls", &ca, "vault", "s3cret");
    let port = starttls.port;
    register_through(
        &format!("smtp://vault:s3cret@127.0.0.1:{port}?tls=required"),
        &ca.ca_cert,
        "sam",
    )
    .ok();
    let mail = starttls.wait_for("sam@example.org");
    assert!(code_in(&mail).is_some(), "{mail}");
    // A wrong SMTP password, or a server certificate nobody vouches for, is an error
    // for the requester, not a silent success.
    register_through(
        &format!("smtp://vault:wrong@127.0.0.1:{port}?tls=required"),
        &ca.ca_cert,
        "sid",
    )
    .fails_with("could not send the verification mail");
    let stranger = TestCa::new();
    register_through(
        &format!("smtp://vault:s3cret@127.0.0.1:{port}?tls=required"),
        &stranger.ca_cert,
        "sol",
    )
    .fails_with("could not send the verification mail");
    assert!(starttls.messages().len() == 1, "only sam's mail arrived");

    let smtps = SmtpServer::start_tls("smtps", &ca, "vault", "s3cret");
    register_through(
        &format!("smtps://vault:s3cret@127.0.0.1:{}", smtps.port),
        &ca.ca_cert,
        "sue",
    )
    .ok();
    let mail = smtps.wait_for("sue@example.org");
    assert!(code_in(&mail).is_some(), "{mail}");
}
