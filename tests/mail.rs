//! End to end: mail through a real SMTP server. The test starts Python's `aiosmtpd`
//! (`pip install aiosmtpd`) on a loopback port, storing what it receives in a Maildir.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vault_e2e::{Client, PASSWORD, TestServer, code_in};

struct SmtpServer {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl SmtpServer {
    fn start() -> SmtpServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        SmtpServer::start_on(port)
    }

    fn start_on(port: u16) -> SmtpServer {
        let maildir = tempfile::tempdir().expect("maildir");
        let child = Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(maildir.path().join("mail"))
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
