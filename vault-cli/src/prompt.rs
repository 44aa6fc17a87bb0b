//! Reading secrets and codes: from a terminal prompt, `--password-stdin`, or environment
//! variables, in that documented order. Secrets stay in `Zeroizing` buffers. A terminal
//! prompt asks again after an answer that cannot be right ([`TRIES`] times at most).

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use vault_client::ClientError;
use vault_core::crypto::RecoveryKey;
use vault_core::proto::{ErrorCode, names};
use zeroize::Zeroizing;

/// How often a terminal prompt asks for the same thing.
pub const TRIES: usize = 3;

/// The shortest password accepted for a new or changed password.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Where a password comes from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub stdin: bool,
    pub env_var: &'a str,
}

impl Source<'_> {
    /// Whether the password will be typed at a terminal prompt: neither standard input nor
    /// the environment variable gives it, and standard input is a terminal.
    pub fn is_terminal(&self) -> bool {
        !self.stdin && std::env::var_os(self.env_var).is_none() && stdin_is_terminal()
    }
}

/// The next line of standard input without its line break; `what` names it in errors.
fn read_stdin_line(what: &str) -> anyhow::Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    let trimmed = Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_string());
    if trimmed.is_empty() {
        bail!("standard input held no {what} line");
    }
    Ok(trimmed)
}

/// Reads an existing password.
pub fn password(prompt: &str, source: Source<'_>) -> anyhow::Result<Zeroizing<String>> {
    if source.stdin {
        return read_stdin_line("password");
    }
    if let Ok(p) = std::env::var(source.env_var) {
        return Ok(Zeroizing::new(p));
    }
    if std::io::stdin().is_terminal() {
        return crate::hidden::ask(prompt).context("cannot read the password");
    }
    bail!(
        "no password given: run in a terminal, pipe it with --password-stdin, or set {}",
        source.env_var
    )
}

/// Reads a new password and checks its length. On a terminal it is asked twice, and a
/// too-short or mismatched entry is asked again (three rounds at most).
pub fn new_password(prompt: &str, source: Source<'_>) -> anyhow::Result<Zeroizing<String>> {
    if !source.is_terminal() {
        let password = password(prompt, source)?;
        check_length(&password)?;
        return Ok(password);
    }
    for _ in 0..TRIES {
        let first = crate::hidden::ask(prompt).context("cannot read the password")?;
        if let Err(e) = check_length(&first) {
            eprintln!("{e}");
            continue;
        }
        let again =
            crate::hidden::ask("Repeat the password: ").context("cannot read the password")?;
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

/// Asks for a mailed code on a terminal until it has the form of one.
pub fn code() -> anyhow::Result<String> {
    for _ in 0..TRIES {
        eprint!("Verification code from the mail: ");
        let mut line = String::new();
        let read = std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the code")?;
        if read == 0 {
            break;
        }
        match names::normalize_code(&line) {
            Ok(code) => return Ok(code),
            Err(e) => eprintln!("{e}"),
        }
    }
    bail!("no verification code was typed; nothing was changed")
}

/// Whether typing the code again may help after `e`: the server found it wrong and tries
/// are left (an expired or used-up code needs a new mail instead).
pub fn code_may_be_retyped(e: &ClientError) -> bool {
    match e {
        ClientError::Api(api) => {
            api.code == ErrorCode::Forbidden
                && api.message.starts_with("wrong verification code")
                && !api.message.contains("last try")
        }
        _ => false,
    }
}

/// A recovery key given as text (an argument, the environment or standard input), checked
/// for its form.
pub fn parse_recovery_key(text: &str) -> anyhow::Result<RecoveryKey> {
    RecoveryKey::parse(text.trim()).context("the recovery key")
}

/// A recovery key from the next line of standard input.
pub fn recovery_key_from_stdin() -> anyhow::Result<RecoveryKey> {
    parse_recovery_key(&read_stdin_line("recovery key")?)
}

/// Asks for the recovery key on a terminal, without echo, until one has the right form
/// and `accept` takes it (`accept`'s error is shown and the question asked again).
pub fn recovery_key<T>(
    mut accept: impl FnMut(&RecoveryKey) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    for _ in 0..TRIES {
        let text = crate::hidden::ask("Recovery key (vault-rk-…): ")
            .context("cannot read the recovery key")?;
        let checked = parse_recovery_key(&text).and_then(|rk| accept(&rk));
        match checked {
            Ok(done) => return Ok(done),
            Err(e) => eprintln!("{}", crate::escape::shown(&format!("{e:#}"))),
        }
    }
    bail!("no recovery key that opens your keys was typed; nothing was changed")
}

pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

#[cfg(test)]
mod tests {
    use vault_core::proto::ApiError;

    use super::*;

    fn forbidden(message: &str) -> ClientError {
        ClientError::Api(ApiError::new(ErrorCode::Forbidden, message))
    }

    #[test]
    fn a_wrong_code_with_tries_left_is_asked_again_and_nothing_else_is() {
        assert!(code_may_be_retyped(&forbidden(
            "wrong verification code (4 tries left)"
        )));
        assert!(code_may_be_retyped(&forbidden(
            "wrong verification code (1 try left)"
        )));
        for gone in [
            "wrong verification code, and that was the last try; run `vault register USER \
             --email ADDR` again for a new one",
            "the verification code has expired; run `vault register USER --email ADDR` again",
            "too many wrong tries for this code; run `vault register USER --email ADDR` again",
            "no verification code is pending for alice; run `vault register ...` again",
        ] {
            assert!(!code_may_be_retyped(&forbidden(gone)), "{gone}");
        }
        let other = ClientError::Api(ApiError::new(
            ErrorCode::Conflict,
            "wrong verification code (4 tries left)",
        ));
        assert!(!code_may_be_retyped(&other));
        assert!(!code_may_be_retyped(&ClientError::Closed("bye".into())));
    }
}
