//! The `vault` command: thin glue between the command line (`args`), the prompts
//! (`prompt`) and the client library. Exit codes: 0 success, 1 a failed operation (with a
//! one-line `error: …` on stderr), 2 a usage error. A closed stdout (`vault ls | head -1`)
//! ends a command quietly with exit 0: everything is printed through [`out::outln!`].
//!
//! Each command runs on its own runtime with one worker thread (two cost 8–12 % more CPU
//! per transfer). The runtime is kept after the command until every
//! connection's close has been handed to the socket, at most 100 ms
//! (`vault_client::closing`), so that the server frees the connection at once instead of
//! at its idle timeout.

#![deny(clippy::print_stdout)]

mod account;
mod args;
mod chat;
mod docs;
mod escape;
mod files;
mod groups;
mod hidden;
mod listing;
mod out;
mod progress;
mod prompt;
mod sync;
mod warnings;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// How long the runtime may keep running after a command until the connection closes
/// have gone out: usually microseconds, a few milliseconds when a runtime thread was
/// asleep (a fixed 3 ms wait here missed 8 closes in 61 commands on a 2-core VM).
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = args::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VAULT_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(result) = docs::run(&cli.command) {
        return exit_code(result);
    }
    // One worker: the command's own future runs on this thread and the QUIC drivers and
    // transfer tasks on the worker, while sealing, hashing and writing run on blocking
    // threads. More workers only moved tasks between cores and woke each other: with two,
    // a 1 GiB put or get took 8–12 % more CPU and ran 5–13 % slower on two cores.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if cli.command.is_sync() {
        runtime.block_on(sync::run(cli.command))
    } else if cli.command.is_files() {
        runtime.block_on(files::run(cli.command))
    } else if cli.command.is_groups() {
        runtime.block_on(groups::run(cli.command))
    } else if cli.command.is_chat() {
        runtime.block_on(chat::run(cli.command))
    } else {
        runtime.block_on(account::run(cli))
    };
    // A closed QUIC connection tells the server only when its driver next runs: wait for
    // that, or the server keeps the connection (and one of the address's
    // `connections_per_ip` slots) until the idle timeout, and a script that runs many
    // commands a minute gets refused.
    runtime.block_on(vault_client::closing::seen_out(CLOSE_GRACE));
    let code = exit_code(result);
    warnings::print();
    code
}

/// The exit status of a command that ended with `result`, its error printed.
fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away: the command ends as if it had printed all.
        Err(e) if out::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {}", escape::shown(&message(&e)));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause that the text before it
/// already ends with (an error that names its cause in its own message).
fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let named = vault_client::files::FilesError::io("read", "/tmp/x", io);
        let e = anyhow::Error::new(named).context("put failed");
        assert_eq!(message(&e), "put failed: cannot read /tmp/x: no such file");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(message(&plain), "outer: inner");
    }
}
