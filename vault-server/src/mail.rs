//! Outgoing mail through lettre. The embedded default writes each message as an `.eml`
//! file under `<data_dir>/outbox/`; with `mail.transport = "smtp"` it goes to an SMTP
//! server (STARTTLS or implicit TLS, with auth, as the URL says). A message that cannot
//! be sent is an error for the caller, never a silent success.

use std::path::PathBuf;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailConfig, MailTransport};

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid mail address {0:?}")]
    Address(String),
    #[error("invalid SMTP URL (expected smtp://… or smtps://…): {0}")]
    Url(String),
    #[error("cannot use the SMTP CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("could not build the message: {0}")]
    Build(String),
    #[error("could not write the message to the outbox: {0}")]
    File(String),
    #[error("the SMTP server did not accept the message: {0}")]
    Smtp(String),
}

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    File {
        outbox: PathBuf,
        transport: AsyncFileTransport<Tokio1Executor>,
        from: Mailbox,
    },
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::File { outbox, .. } => write!(f, "Mailer::File({})", outbox.display()),
            Mailer::Smtp { .. } => f.write_str("Mailer::Smtp"),
        }
    }
}

/// Where a sent message went, for the log.
#[derive(Debug)]
pub enum Delivery {
    /// Written to this file.
    File(PathBuf),
    /// Accepted by the SMTP server.
    Smtp,
}

impl Mailer {
    pub fn from_config(config: &MailConfig, outbox: PathBuf) -> Result<Mailer, MailError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|_| MailError::Address(config.from.clone()))?;
        Ok(match config.transport {
            MailTransport::File => Mailer::File {
                transport: AsyncFileTransport::new(&outbox),
                outbox,
                from,
            },
            MailTransport::Smtp => {
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.smtp_url)
                    .map_err(|e| MailError::Url(e.to_string()))?
                    .timeout(Some(std::time::Duration::from_secs(20)));
                if !config.smtp_ca_file.as_os_str().is_empty() {
                    builder = builder.tls(tls_with_ca(&config.smtp_url, &config.smtp_ca_file)?);
                }
                Mailer::Smtp {
                    transport: builder.build(),
                    from,
                }
            }
        })
    }

    /// Sends a plain-text message.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<Delivery, MailError> {
        let to: Mailbox = to.parse().map_err(|_| MailError::Address(to.to_string()))?;
        let from = match self {
            Mailer::File { from, .. } | Mailer::Smtp { from, .. } => from.clone(),
        };
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Build(e.to_string()))?;
        match self {
            Mailer::File {
                outbox, transport, ..
            } => {
                let id = transport
                    .send(message)
                    .await
                    .map_err(|e| MailError::File(e.to_string()))?;
                Ok(Delivery::File(outbox.join(format!("{id}.eml"))))
            }
            Mailer::Smtp { transport, .. } => {
                transport
                    .send(message)
                    .await
                    .map_err(|e| MailError::Smtp(e.to_string()))?;
                Ok(Delivery::Smtp)
            }
        }
    }
}

/// The TLS settings the SMTP URL asks for (`smtps://` implicit TLS, `?tls=required` or
/// `?tls=opportunistic` STARTTLS), trusting the CA certificates in `ca_file` as well as
/// the web roots.
fn tls_with_ca(smtp_url: &str, ca_file: &std::path::Path) -> Result<Tls, MailError> {
    let ca_error = |reason: String| MailError::CaFile {
        path: ca_file.to_path_buf(),
        reason,
    };
    let url = url::Url::parse(smtp_url).map_err(|e| MailError::Url(e.to_string()))?;
    let host = url
        .host_str()
        .ok_or_else(|| MailError::Url("the SMTP URL has no host".into()))?;
    let pem = std::fs::read(ca_file).map_err(|e| ca_error(e.to_string()))?;
    let ca = Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?;
    let params = TlsParameters::builder(host.to_owned())
        .add_root_certificate(ca)
        .build()
        .map_err(|e| ca_error(e.to_string()))?;
    let mode = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v);
    match (url.scheme(), mode.as_deref()) {
        ("smtps", _) => Ok(Tls::Wrapper(params)),
        ("smtp", Some("required")) => Ok(Tls::Required(params)),
        ("smtp", Some("opportunistic")) => Ok(Tls::Opportunistic(params)),
        _ => Err(ca_error(
            "a CA file needs TLS: use smtps://… or smtp://…?tls=required".into(),
        )),
    }
}

/// The body of a verification-code mail. The `Verification code:` line is what people
/// and scripts look for.
pub fn code_body(purpose: &str, username: &str, code: &str, ttl_s: u64) -> String {
    format!(
        "Hello {username},\n\n\
         Use this code to {purpose} on your Vault server:\n\n\
         Verification code: {code}\n\n\
         It expires in {} minutes and works once. If you did not ask for it, ignore this mail.\n",
        ttl_s.div_ceil(60)
    )
}
