//! A small SMTP server for the mail tests, speaking enough real SMTP (RFC 5321) for lettre:
//! `EHLO`/`HELO`, `STARTTLS` (RFC 3207) or implicit TLS, `AUTH PLAIN` and `AUTH LOGIN`
//! (RFC 4954), `MAIL`, `RCPT`, `DATA` with dot-unstuffing, `RSET`, `NOOP`, `QUIT`. It keeps
//! what it receives in memory. TLS is rustls on aws-lc-rs, like everything else here, so
//! the suite needs nothing installed beside the Rust toolchain.

use std::net::TcpListener as StdListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the server offers TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// No TLS and no AUTH (a relay on the same host).
    None,
    /// Plain at first; `STARTTLS` is required before `AUTH`, and `AUTH` before `MAIL`.
    StartTls,
    /// TLS from the first byte (`smtps://`); `AUTH` before `MAIL`.
    Implicit,
}

/// The server's certificate and the one account it accepts.
#[derive(Debug)]
pub struct SmtpAuth {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    pub user: String,
    pub password: String,
}

/// A running server on a loopback port; stopped when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    pub port: u16,
    received: Arc<Mutex<Vec<String>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Settings {
    tls: SmtpTls,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    account: Option<(String, String)>,
    received: Arc<Mutex<Vec<String>>>,
}

impl SmtpServer {
    /// A plain server on a free port.
    pub fn start() -> SmtpServer {
        SmtpServer::start_on(0, SmtpTls::None, None)
    }

    /// A server on `port` (0: a free one) offering `tls`, with `auth` for TLS modes.
    pub fn start_on(port: u16, tls: SmtpTls, auth: Option<SmtpAuth>) -> SmtpServer {
        let listener = StdListener::bind(("127.0.0.1", port)).expect("bind the SMTP port");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (acceptor, account) = match auth {
            Some(auth) => {
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let config = rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("TLS versions")
                    .with_no_client_auth()
                    .with_single_cert(vec![auth.cert], auth.key)
                    .expect("SMTP certificate");
                (
                    Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
                    Some((auth.user, auth.password)),
                )
            }
            None => (None, None),
        };
        assert!(
            (tls == SmtpTls::None) == acceptor.is_none(),
            "TLS modes need a certificate"
        );
        let settings = Arc::new(Settings {
            tls,
            acceptor,
            account,
            received: Arc::clone(&received),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("SMTP runtime");
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&settings)));
            }
        });
        SmtpServer {
            port,
            received,
            runtime: Some(runtime),
        }
    }

    /// Every message received so far (headers and body, as sent after `DATA`).
    pub fn messages(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The first message containing `needle`, waiting up to `within` for it.
    pub fn wait_for(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| m.contains(needle)) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no mail containing {needle:?} arrived within {within:?}; received: {:?}",
                self.messages()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops listening and drops every connection.
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(stream: TcpStream, settings: Arc<Settings>) {
    let result = match (settings.tls, &settings.acceptor) {
        (SmtpTls::Implicit, Some(acceptor)) => match acceptor.accept(stream).await {
            Ok(tls) => session(tls, &settings, true).await.map(|_| ()),
            Err(_) => Ok(()),
        },
        _ => match session(stream, &settings, false).await {
            Ok(Some(plain)) => match &settings.acceptor {
                Some(acceptor) => match acceptor.accept(plain).await {
                    Ok(tls) => session(tls, &settings, true).await.map(|_| ()),
                    Err(_) => Ok(()),
                },
                None => Ok(()),
            },
            other => other.map(|_| ()),
        },
    };
    let _ = result;
}

/// One SMTP session on `stream`. Returns the stream when the client asked for `STARTTLS`
/// (the caller wraps it in TLS and starts a new session, as RFC 3207 says).
async fn session<S>(stream: S, settings: &Settings, tls: bool) -> std::io::Result<Option<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut io = BufReader::new(stream);
    let need_auth = settings.account.is_some();
    let offer_starttls = settings.tls == SmtpTls::StartTls && !tls;
    if settings.tls != SmtpTls::StartTls || !tls {
        reply(&mut io, "220 127.0.0.1 ESMTP test server").await?;
    }
    let mut authed = false;
    let mut in_mail = false;
    loop {
        let Some(line) = read_line(&mut io).await? else {
            return Ok(None);
        };
        let upper = line.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        match verb {
            "EHLO" => {
                let mut lines = vec!["250-127.0.0.1".to_string()];
                if offer_starttls {
                    lines.push("250-STARTTLS".into());
                }
                if need_auth && tls {
                    lines.push("250-AUTH PLAIN LOGIN".into());
                }
                lines.push("250 8BITMIME".into());
                reply(&mut io, &lines.join("\r\n")).await?;
            }
            "HELO" => reply(&mut io, "250 127.0.0.1").await?,
            "STARTTLS" if offer_starttls => {
                reply(&mut io, "220 2.0.0 ready to start TLS").await?;
                return Ok(Some(io.into_inner()));
            }
            "AUTH" if need_auth && tls => {
                let ok = authenticate(&mut io, &line, settings).await?;
                authed = ok;
                let answer = if ok {
                    "235 2.7.0 authentication succeeded"
                } else {
                    "535 5.7.8 Authentication credentials invalid"
                };
                reply(&mut io, answer).await?;
            }
            "MAIL" if need_auth && !authed => {
                reply(&mut io, "530 5.7.0 authentication required").await?;
            }
            "MAIL" => {
                in_mail = true;
                reply(&mut io, "250 2.1.0 ok").await?;
            }
            "RCPT" if in_mail => reply(&mut io, "250 2.1.5 ok").await?,
            "DATA" if in_mail => {
                reply(&mut io, "354 end data with <CR><LF>.<CR><LF>").await?;
                let mut message = String::new();
                loop {
                    let Some(line) = read_line(&mut io).await? else {
                        return Ok(None);
                    };
                    if line == "." {
                        break;
                    }
                    message.push_str(line.strip_prefix('.').unwrap_or(&line));
                    message.push_str("\r\n");
                }
                settings
                    .received
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(message);
                in_mail = false;
                reply(&mut io, "250 2.0.0 queued").await?;
            }
            "RSET" => {
                in_mail = false;
                reply(&mut io, "250 2.0.0 ok").await?;
            }
            "NOOP" => reply(&mut io, "250 2.0.0 ok").await?,
            "QUIT" => {
                reply(&mut io, "221 2.0.0 bye").await?;
                return Ok(None);
            }
            _ => reply(&mut io, "502 5.5.1 command not recognized here").await?,
        }
    }
}

/// `AUTH PLAIN [initial]` or `AUTH LOGIN`, with their challenges; whether the credentials
/// are the server's account.
async fn authenticate<S>(
    io: &mut BufReader<S>,
    line: &str,
    settings: &Settings,
) -> std::io::Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some((user, password)) = &settings.account else {
        return Ok(false);
    };
    let mut words = line.split_whitespace().skip(1);
    let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
    let initial = words.next().map(str::to_string);
    let decode = |b64: &str| {
        data_encoding::BASE64
            .decode(b64.trim().as_bytes())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
    };
    let (given_user, given_password) = match mechanism.as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(r) => r,
                None => {
                    reply(io, "334 ").await?;
                    read_line(io).await?.unwrap_or_default()
                }
            };
            // authzid NUL authcid NUL password
            let Some(text) = decode(&response) else {
                return Ok(false);
            };
            let mut parts = text.split('\0').skip(1);
            (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            )
        }
        "LOGIN" => {
            reply(io, "334 VXNlcm5hbWU6").await?;
            let u = read_line(io).await?.unwrap_or_default();
            reply(io, "334 UGFzc3dvcmQ6").await?;
            let p = read_line(io).await?.unwrap_or_default();
            (
                decode(&u).unwrap_or_default(),
                decode(&p).unwrap_or_default(),
            )
        }
        _ => return Ok(false),
    };
    Ok(&given_user == user && &given_password == password)
}

async fn read_line<S: AsyncRead + Unpin>(io: &mut BufReader<S>) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    let n = tokio::time::timeout(Duration::from_secs(30), io.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client too slow"))??;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}

async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    text: &str,
) -> std::io::Result<()> {
    let stream = io.get_mut();
    stream.write_all(text.as_bytes()).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}
