//! The `vault-server` binary: parses flags, loads the configuration, prints the
//! listening address and certificate fingerprint, and serves until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vault_server::config::{Config, Overrides};
use vault_server::{DataDir, Server, fsutil};

/// Vault's end-to-end encrypted file server (QUIC). Runs on embedded defaults with no
/// arguments: SQLite, a local blob store and a mail outbox under ./vault-data.
#[derive(Debug, Parser)]
#[command(name = "vault-server", version)]
struct Args {
    /// TOML configuration file. Every key can also be set as VAULT_<KEY> (nested keys
    /// joined by `_`, e.g. VAULT_MAIL_SMTP_URL); flags win over both.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// UDP address to listen on [default: 127.0.0.1:7443]; port 0 picks a free one.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Data directory [default: ./vault-data, or VAULT_DATA_DIR].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite in the data dir].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Check the configuration and what it points to (certificate, database, blob store,
    /// mail), print what was found, and exit 0 when all is well, else 1. Changes nothing.
    #[arg(long)]
    check_config: bool,
    /// Write this manual page (vault-server.1) into DIR and exit.
    #[arg(long, value_name = "DIR")]
    man: Option<PathBuf>,
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    if let Some(dir) = &args.man {
        return write_man_page(dir);
    }
    init_logging();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs on stderr, filtered by `VAULT_LOG` (default `info,quinn=warn`): text, or with
/// `VAULT_LOG_FORMAT=json` one JSON object per line with the fields of the event and its
/// spans (a request's kind and user id).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VAULT_LOG")
        .unwrap_or_else(|_| "info,quinn=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("VAULT_LOG_FORMAT").as_deref() {
        Ok("json") => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .init(),
        Ok("text") | Err(_) => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        Ok(other) => {
            builder.with_ansi(false).init();
            tracing::warn!(
                value = other,
                "VAULT_LOG_FORMAT is \"json\" or \"text\"; logging text"
            );
        }
    }
}

#[tokio::main]
async fn run(args: Args) -> anyhow::Result<()> {
    let flags = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
        database_url: args.database_url,
    };
    let config = Config::load(args.config.as_deref(), |k| std::env::var(k).ok(), &flags)?;
    if args.check_config {
        return check_config(&config, args.config.as_deref()).await;
    }
    let shutdown = shutdown_signal()?;
    let data = DataDir(config.data_dir.clone());
    let server = Server::bind(config).await?;
    let addr = server.local_addr()?;
    // For scripts that started the server on port 0; serving does not depend on it (on a
    // full disk it cannot be written, and the server still serves reads and deletions).
    if let Err(e) = fsutil::write_atomic(
        &data.server_addr_file(),
        format!("{addr}\n").as_bytes(),
        0o644,
    ) {
        tracing::warn!(error = %e, path = %data.server_addr_file().display(), "cannot write the server's address file");
    }
    println!("vault-server listening on {addr}");
    println!("certificate fingerprint {}", server.fingerprint());
    server.run(shutdown).await?;
    println!("vault-server stopped");
    Ok(())
}

/// `--check-config`: one line per check on stdout; an error (exit 1) when any failed.
async fn check_config(config: &Config, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let source = file.map_or("built-in defaults and VAULT_* variables".to_owned(), |f| {
        f.display().to_string()
    });
    println!("ok    configuration: {source}");
    let findings = vault_server::check::check(config).await;
    let mut failed = 0;
    for finding in &findings {
        match &finding.result {
            Ok(text) => println!("ok    {}: {text}", finding.what),
            Err(text) => {
                failed += 1;
                println!("FAIL  {}: {text}", finding.what);
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} checks failed", findings.len() + 1);
    }
    Ok(())
}

/// Resolves at the first SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives right after the
/// server said it is listening still shuts it down gracefully.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// `--man DIR`: the page, from the clap definitions.
fn write_man_page(dir: &std::path::Path) -> ExitCode {
    use clap::CommandFactory;
    let written =
        std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(Args::command(), dir));
    match written {
        Ok(()) => {
            eprintln!("wrote vault-server.1 into {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: cannot write the manual page into {}: {e}",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}
