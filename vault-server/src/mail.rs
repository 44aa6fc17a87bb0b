//! Outgoing mail through lettre. The embedded default writes each message as an `.eml`
//! file under `<data_dir>/outbox/`; with `mail.transport = "smtp"` it goes to an SMTP
//! server (STARTTLS or implicit TLS, with auth, as the URL says). A message that cannot
//! be sent is an error for the caller, never a silent success.

use std::path::PathBuf;

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailConfig, MailTransport};

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid mail address {0:?}")]
    Address(String),
    #[error("invalid SMTP URL (expected smtp://… or smtps://…): {0}")]
    Url(String),
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
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.smtp_url)
                    .map_err(|e| MailError::Url(e.to_string()))?
                    .timeout(Some(std::time::Duration::from_secs(20)))
                    .build();
                Mailer::Smtp { transport, from }
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
