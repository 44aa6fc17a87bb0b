//! `vault-admin`: the operator's tool. It loads the server's configuration the
//! way `vault-server` does (`--config`, `VAULT_*`, flags) and works on the server's
//! database and data directory directly, whether or not the server is running; a
//! running server picks up ended sessions from the database within about a second.
//! Every change is written to the audit log with actor `admin`. A closed stdout
//! (`vault-admin audit | head -1`) ends a command quietly with exit 0.

#![deny(clippy::print_stdout)]

mod audit;
mod backup;
mod cert;
mod context;
mod fsck;
mod gc;
mod groups;
mod invitations;
mod mail;
mod migrate_blobs;
mod out;
mod output;
mod stats;
mod throttle;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use vault_server::config::{Config, Overrides};

use crate::context::Ctx;
use crate::out::outln;

/// Run a Vault server's users, groups, throttling, audit log, certificate, mail and file
/// store from its host.
#[derive(Debug, Parser)]
#[command(name = "vault-admin", version)]
struct Args {
    /// The server's TOML configuration file. VAULT_* variables apply as for the server.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The server's data directory [default: ./vault-data, or VAULT_DATA_DIR].
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite in the data dir].
    #[arg(long, value_name = "URL", global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Accounts: list, show, invite, create, invites, lock, unlock, delete, set-quota,
    /// reset-throttle, sessions, kick.
    #[command(subcommand)]
    User(users::UserCommand),
    /// Groups: list, show, create, delete, add-member, remove-member, set-owner, set-quota.
    #[command(subcommand)]
    Group(groups::GroupCommand),
    /// Login throttling by account and source address.
    #[command(subcommand)]
    Throttle(throttle::ThrottleCommand),
    /// Counts: users, locked users, live sessions, throttled subjects, groups, files, bytes.
    Stats(stats::StatsArgs),
    /// The audit log, oldest first.
    Audit(audit::AuditArgs),
    /// The server's TLS certificate.
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Outgoing mail.
    #[command(subcommand)]
    Mail(mail::MailCommand),
    /// Run pending database migrations and say how many ran.
    Migrate,
    /// Check that the database and the blob store agree, with --read-data that every blob
    /// holds the bytes stored (exit 1 when not).
    Fsck(fsck::FsckArgs),
    /// Remove expired uploads and trash, versions past retention, deleted and orphan blobs.
    Gc(gc::GcArgs),
    /// Copy the database and blobs, consistently, into a new directory (server may run).
    Backup(backup::BackupArgs),
    /// Copy every blob from the store in use into the other (the storage.s3_* bucket, or
    /// <data-dir>/blobs) before changing storage.kind; the server may run.
    MigrateBlobs(migrate_blobs::MigrateBlobsArgs),
    /// Print the completion script for SHELL on stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages of vault-admin and each of its commands into DIR
    /// (`vault-server --man DIR` writes the server's).
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VAULT_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args) {
        Ok(code) => code,
        // The reader of stdout went away: the command ends as if it had printed all.
        Err(e) if out::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    // These two need no configuration.
    match &args.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Args::command(), "vault-admin", &mut script);
            out::out!("{}", String::from_utf8_lossy(&script))?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir } => {
            write_man_pages(Args::command(), dir)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let flags = Overrides {
        listen: None,
        data_dir: args.data_dir,
        database_url: args.database_url,
    };
    // `ConfigError`'s message already names its cause; `{:#}` would print it twice.
    let config = Config::load(args.config.as_deref(), |k| std::env::var(k).ok(), &flags)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ctx = Ctx { config };
    let done = match args.command {
        Command::User(c) => users::run(&ctx, c),
        Command::Group(c) => groups::run(&ctx, c),
        Command::Throttle(c) => throttle::run(&ctx, c),
        Command::Stats(a) => stats::run(&ctx, a),
        Command::Audit(a) => audit::run(&ctx, a),
        Command::Cert(c) => cert::run(&ctx, c),
        Command::Mail(c) => mail::run(&ctx, c),
        Command::Migrate => migrate(&ctx),
        // These report problems by their exit code.
        Command::Fsck(a) => return fsck::run(&ctx, a),
        Command::Gc(a) => return gc::run(&ctx, a),
        Command::Backup(a) => backup::run(&ctx, a),
        Command::MigrateBlobs(a) => migrate_blobs::run(&ctx, a),
        Command::Completions { .. } | Command::Man { .. } => Ok(()),
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// `man DIR`: the pages of `command` and each of its subcommands, from the clap
/// definitions.
fn write_man_pages(command: clap::Command, dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
    eprintln!("wrote the manual pages into {}", dir.display());
    Ok(())
}

/// `migrate`: runs pending migrations (which every other command also does on open).
fn migrate(ctx: &Ctx) -> anyhow::Result<()> {
    let db = ctx.db_unmigrated()?;
    let ran = db.migrate()?;
    outln!(
        "{} ran on {}",
        output::plural(ran, "migration", "migrations"),
        vault_server::db::redact_url(&ctx.config.database_url())
    )?;
    Ok(())
}
