//! Reading secrets and codes: from a terminal prompt, `--password-stdin`, or environment
//! variables, in that documented order. Secrets stay in `Zeroizing` buffers.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use zeroize::Zeroizing;

/// The shortest password accepted for a new or changed password.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Where a password comes from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub stdin: bool,
    pub env_var: &'a str,
}

fn read_stdin_line() -> anyhow::Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let trimmed = Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_string());
    if trimmed.is_empty() {
        bail!("standard input held no password line");
    }
    Ok(trimmed)
}

/// Reads an existing password.
pub fn password(prompt: &str, source: Source<'_>) -> anyhow::Result<Zeroizing<String>> {
    if source.stdin {
        return read_stdin_line();
    }
    if let Ok(p) = std::env::var(source.env_var) {
        return Ok(Zeroizing::new(p));
    }
    if std::io::stdin().is_terminal() {
        return Ok(Zeroizing::new(
            rpassword::prompt_password(prompt).context("cannot read the password")?,
        ));
    }
    bail!(
        "no password given: run in a terminal, pipe it with --password-stdin, or set {}",
        source.env_var
    )
}

/// Reads a new password and checks its length. On a terminal it is asked twice, and a
/// too-short or mismatched entry is asked again (three rounds at most).
pub fn new_password(prompt: &str, source: Source<'_>) -> anyhow::Result<Zeroizing<String>> {
    let from_terminal =
        !source.stdin && std::env::var(source.env_var).is_err() && std::io::stdin().is_terminal();
    if !from_terminal {
        let password = password(prompt, source)?;
        check_length(&password)?;
        return Ok(password);
    }
    for _ in 0..3 {
        let first =
            Zeroizing::new(rpassword::prompt_password(prompt).context("cannot read the password")?);
        if let Err(e) = check_length(&first) {
            eprintln!("{e}");
            continue;
        }
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat the password: ")
                .context("cannot read the password")?,
        );
        if *again == *first {
            return Ok(first);
        }
        eprintln!("the two passwords differ; try again");
    }
    bail!("no password was chosen; nothing was changed")
}

fn check_length(password: &str) -> anyhow::Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        bail!("the password is too short: use at least {MIN_PASSWORD_LEN} characters");
    }
    Ok(())
}

/// Asks for a mailed code on a terminal.
pub fn code() -> anyhow::Result<String> {
    eprint!("Verification code from the mail: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the code")?;
    Ok(line.trim().to_string())
}

pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}
