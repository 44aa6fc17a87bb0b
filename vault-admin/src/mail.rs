//! `vault-admin mail test ADDR`: sends a test message the way the server sends its mail
//! (same configuration, same transport) and says where it went. A message that cannot be
//! sent is an error with the transport's reason. Needs no database.

use anyhow::Context as _;
use clap::Subcommand;
use vault_server::mail::Delivery;

use crate::context::Ctx;
use crate::out::outln;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Send a test message to ADDR through the configured transport.
    Test {
        #[arg(value_name = "ADDR")]
        addr: String,
    },
}

pub fn run(ctx: &Ctx, command: MailCommand) -> anyhow::Result<()> {
    match command {
        MailCommand::Test { addr } => test(ctx, &addr),
    }
}

fn test(ctx: &Ctx, addr: &str) -> anyhow::Result<()> {
    let body = format!(
        "This is a test message from vault-admin, sent at {}.\n\n\
         If you can read it, mail from this Vault server reaches {addr}.\n",
        output::iso_time(output::now())
    );
    let delivery = send(ctx, addr, "Vault test message", body)
        .with_context(|| format!("the test message to {addr} was not sent"))?;
    outln!("test message to {addr} {}", delivered(&delivery))?;
    Ok(())
}

/// Sends one message now through the configured transport (the outbox is made if it is
/// missing, under an existing data directory).
pub fn send(ctx: &Ctx, to: &str, subject: &str, body: String) -> anyhow::Result<Delivery> {
    let config = &ctx.config;
    let mailer = vault_server::mailer(config)?;
    if let vault_server::mail::Mailer::File { outbox, .. } = &mailer {
        if !config.data_dir.is_dir() {
            anyhow::bail!(
                "no data directory at {}: check --data-dir or --config (vault-server creates it on first start)",
                config.data_dir.display()
            );
        }
        vault_server::fsutil::create_private_dir(outbox)
            .with_context(|| format!("cannot create the outbox {}", outbox.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(mailer.send(to, subject, body))?)
}

/// Where a message went: `written to PATH (mail.transport = "file")` or `accepted by the
/// SMTP server`.
pub fn delivered(delivery: &Delivery) -> String {
    match delivery {
        Delivery::File(path) => {
            format!("written to {} (mail.transport = \"file\")", path.display())
        }
        Delivery::Smtp => "accepted by the SMTP server".into(),
    }
}
