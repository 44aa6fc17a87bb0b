//! Outgoing mail through lettre. The embedded default writes each message as an `.eml`
//! file under `<data_dir>/outbox/` (atomically, mode 0600); with `mail.transport = "smtp"`
//! it goes to an SMTP server (STARTTLS or implicit TLS, with auth, as the URL says).
//! [`Mailer::send`] reports a message that cannot be sent as an error, never as a silent
//! success. The server never sends on a request's path: requests put their mail in the
//! [`queue`], whose worker sends it with retries and logs what could not be sent (the
//! requester's answer does not depend on it); `vault-admin mail test` sends directly and
//! shows the error.

pub mod queue;

use std::path::PathBuf;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailConfig, MailTransport};

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid mail address {0:?}")]
    Address(String),
    /// (The address is left out: this error goes to the server's log.)
    #[error("the recipient's address is not one the mail library accepts")]
    Recipient,
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

impl MailError {
    /// Whether the same message may go through on a later try: not when the message
    /// itself or the configuration is at fault.
    pub fn worth_retrying(&self) -> bool {
        matches!(self, MailError::File(_) | MailError::Smtp(_))
    }
}

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    File {
        outbox: PathBuf,
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
            MailTransport::File => Mailer::File { outbox, from },
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

    /// Whether mail can go out: the outbox directory is there or can be made (file), or
    /// the SMTP server answers and accepts the login (`vault-server --check-config`).
    pub async fn check(&self) -> Result<String, String> {
        match self {
            Mailer::File { outbox, .. } => {
                let writable = match std::fs::metadata(outbox) {
                    Ok(meta) => !meta.permissions().readonly(),
                    Err(_) => outbox.parent().is_some_and(|p| !p.exists() || p.is_dir()),
                };
                if writable {
                    Ok(format!(
                        "written to {} (no SMTP server set)",
                        outbox.display()
                    ))
                } else {
                    Err(format!("the outbox {} is not writable", outbox.display()))
                }
            }
            Mailer::Smtp { transport, .. } => match transport.test_connection().await {
                Ok(true) => Ok("the SMTP server answers".into()),
                Ok(false) => Err("the SMTP server did not answer NOOP".into()),
                Err(e) => Err(format!("cannot reach the SMTP server: {e}")),
            },
        }
    }

    /// Sends a plain-text message.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<Delivery, MailError> {
        let to: Mailbox = to.parse().map_err(|_| MailError::Recipient)?;
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
            Mailer::File { outbox, .. } => {
                let path = outbox.join(format!("{}.eml", message_id()?));
                let (target, bytes) = (path.clone(), message.formatted());
                tokio::task::spawn_blocking(move || {
                    crate::fsutil::write_atomic(&target, &bytes, 0o600)
                })
                .await
                .map_err(|e| MailError::File(e.to_string()))?
                .map_err(|e| MailError::File(e.to_string()))?;
                Ok(Delivery::File(path))
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

/// A fresh name for an outbox file: 16 random bytes in hex.
fn message_id() -> Result<String, MailError> {
    let mut id = [0u8; 16];
    aws_lc_rs::rand::fill(&mut id)
        .map_err(|_| MailError::File("the system random source failed".into()))?;
    Ok(hex::encode(id))
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

/// The body of the mail sent, instead of a code, to the owner of an address that someone
/// tried to register again: what happened, that nothing changed, what they can do.
pub fn notice_body(owner: &str, requested: &str) -> String {
    format!(
        "Hello {owner},\n\n\
         Someone asked to register a new account named \"{requested}\" on your Vault server \
         with this email address. It already belongs to your account {owner}, so no account \
         was made and no code was sent: nothing about your account changed.\n\n\
         If that was you, you already have an account: log in as {owner}, or run \
         `vault reset-password {owner}` if you forgot the password.\n\
         If it was not you, you can ignore this mail.\n"
    )
}
