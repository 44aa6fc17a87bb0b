//! The account commands: register, login, logout, whoami, passwd, reset-password.
//!
//! Each checks what can be checked before it asks for anything: the arguments (offline),
//! then the server and its certificate, then what the server can check on its own (a
//! reset code, the current password, a recovery key). Only then is a new password asked.
//! A registration code can only be sent with the keys made from the password, so it is
//! checked after the password; on a terminal, a wrong one is asked for again.

use anyhow::{Context, bail};
use vault_client::account::{self, CheckedServer, ResetCode, ResetMode, ServerOpts};
use vault_client::files::Files;
use vault_client::state::StateDir;
use vault_core::crypto::RecoveryKey;
use vault_core::proto::names;
use vault_core::units::format_size;
use zeroize::Zeroizing;

use crate::args::{Cli, Command, PasswordArgs, ServerArgs};
use crate::escape::shown;
use crate::out::outln;
use crate::prompt::{self, Source, TRIES};
use crate::warnings;

/// Where a recovery key comes from when it is not on the command line.
const RECOVERY_KEY_VAR: &str = "VAULT_RECOVERY_KEY";

fn opts(s: &ServerArgs) -> ServerOpts {
    ServerOpts {
        server: s.server.clone(),
        fingerprint: s.fingerprint.clone(),
        accept_new_cert: s.accept_new_cert,
    }
}

/// Connects once to check the server and its certificate, and says which certificate is
/// trusted on first use.
async fn check_server(state: &StateDir, server: &ServerArgs) -> anyhow::Result<CheckedServer> {
    let checked = account::check_server(state, &opts(server)).await?;
    if checked.newly_trusted {
        eprintln!(
            "Pinned the server's certificate {} (trusted on first use). Compare it with what \
             `vault-admin cert show` prints on the server.",
            checked.fingerprint
        );
    }
    Ok(checked)
}

fn username(user: &str) -> anyhow::Result<String> {
    names::normalize_username(user).map_err(anyhow::Error::msg)
}

fn print_recovery_key(rk: &RecoveryKey) -> std::io::Result<()> {
    outln!()?;
    outln!("Your recovery key (shown only this once):")?;
    outln!()?;
    outln!("    {}", rk.to_display().as_str())?;
    outln!()?;
    outln!("Write it down and keep it somewhere safe and offline. If you forget your password,")?;
    outln!(
        "`vault reset-password` with this key keeps your files readable; without it they are lost."
    )
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let state = StateDir::from_env()?;
    match cli.command {
        Command::Register {
            user,
            email: Some(email),
            invite: Some(invite),
            server,
            password,
            ..
        } => {
            let user = username(&user)?;
            let email = names::normalize_email(&email).map_err(anyhow::Error::msg)?;
            let code = names::normalize_code(&invite).map_err(|_| {
                anyhow::anyhow!(
                    "{invite:?} is not an invitation code: the code in the invitation is 8 \
                     characters of A-Z and 2-9 (no 0, 1, I or O)"
                )
            })?;
            let checked = check_server(&state, &server).await?;
            account::register_start(&state, &checked, &user, &email, Some(&code)).await?;
            let pending = account::pending_registration(&state, &user, None)?;
            let source = new_password_source(password.password_stdin);
            let pw = prompt::new_password("Choose a password: ", source)?;
            // The server has checked the code: it is not asked for again.
            finish_registration(&state, &checked, &pending, code, pw.as_bytes(), false).await?;
        }
        Command::Register {
            user,
            email: Some(email),
            server,
            password,
            ..
        } => {
            let user = username(&user)?;
            let email = names::normalize_email(&email).map_err(anyhow::Error::msg)?;
            let checked = check_server(&state, &server).await?;
            let ttl = account::register_start(&state, &checked, &user, &email, None).await?;
            // True whatever the address: the server answers a taken one as a fresh one.
            outln!(
                "A verification code is on its way to {}, valid for {} minutes, unless the \
                 address already has an account here: then its owner is told instead.",
                shown(&email),
                ttl.div_ceil(60)
            )?;
            outln!(
                "Asking again within the resend cooldown (a minute by default) mails nothing new: use the code already sent."
            )?;
            if prompt::stdin_is_terminal() && !password.password_stdin {
                let pending = account::pending_registration(&state, &user, None)?;
                let code = prompt::code()?;
                let pw = prompt::new_password("Choose a password: ", new_password_source(false))?;
                finish_registration(&state, &checked, &pending, code, pw.as_bytes(), true).await?;
            } else {
                outln!("Finish with: vault register {user} --code CODE")?;
            }
        }
        Command::Register {
            user,
            code: Some(code),
            server,
            password,
            ..
        } => {
            let user = username(&user)?;
            let code = names::normalize_code(&code).map_err(anyhow::Error::msg)?;
            let pending = account::pending_registration(&state, &user, server.server.as_deref())?;
            let checked = check_server(&state, &server).await?;
            let source = new_password_source(password.password_stdin);
            let retype = source.is_terminal();
            let pw = prompt::new_password("Choose a password: ", source)?;
            finish_registration(&state, &checked, &pending, code, pw.as_bytes(), retype).await?;
        }
        Command::Register { .. } => bail!(
            "give --email ADDR (step 1) or --code CODE (step 2), or --email ADDR --invite CODE"
        ),
        Command::Login {
            user,
            server,
            password,
        } => {
            let user = username(&user)?;
            let checked = check_server(&state, &server).await?;
            let pw = prompt::password(
                "Password: ",
                Source {
                    stdin: password.password_stdin,
                    env_var: "VAULT_PASSWORD",
                },
            )?;
            let key_tasks = account::login(&state, &checked, &user, pw.as_bytes()).await?;
            outln!("Logged in as {user}.")?;
            if key_tasks > 0 {
                // Key work for other group members: warnings only, never a failed login.
                match Files::open(&state).await {
                    Ok(files) => {
                        warnings::defer(files.take_warnings());
                        files.close();
                    }
                    Err(e) => warnings::defer(vec![format!(
                        "could not do the group-key work for other members: {e}"
                    )]),
                }
            }
        }
        Command::Logout { forget_server } => {
            let ended = account::logout(&state, forget_server).await?;
            if ended {
                outln!("Logged out; the session token and keys were removed from this machine.")?;
            } else {
                outln!(
                    "Removed the session token and keys from this machine (the server could not be told)."
                )?;
            }
        }
        Command::Whoami { json } => {
            // Through `Files`, which also does the group-key work for other members.
            let files = Files::open(&state).await?;
            let info = account::whoami_on(&files.conn()).await;
            warnings::defer(files.take_warnings());
            files.close();
            let (info, config) = (info?, state.config()?);
            let server = config.server.unwrap_or_default();
            let fingerprint = config.fingerprint.unwrap_or_default();
            if json {
                let value = serde_json::json!({
                    "user": info.username,
                    "email": info.email,
                    "server": server,
                    "fingerprint": fingerprint,
                    "quota": { "used_bytes": info.used_bytes, "limit_bytes": info.quota_bytes },
                    "sessions": info.sessions,
                    "created_at": info.created_at,
                });
                outln!("{}", serde_json::to_string_pretty(&value)?)?;
            } else {
                outln!("{} <{}>", shown(&info.username), shown(&info.email))?;
                outln!("server:      {}", shown(&server))?;
                outln!("certificate: {}", shown(&fingerprint))?;
                outln!(
                    "quota:       {} of {} used",
                    format_size(info.used_bytes),
                    format_size(info.quota_bytes)
                )?;
                outln!("sessions:    {}", info.sessions)?;
            }
        }
        Command::Passwd { password } => {
            // The session first (not logged in: nothing is asked), then the current
            // password, checked against the account key sealed under it, then the new one.
            let check = account::passwd_check(&state).await?;
            let source = Source {
                stdin: false,
                env_var: "VAULT_PASSWORD",
            };
            let mut tries = 0;
            let current = loop {
                let old = prompt::password("Current password: ", source)?;
                tries += 1;
                match check.current(old.as_bytes()) {
                    Ok(current) => break current,
                    Err(e) if source.is_terminal() && tries < TRIES => eprintln!("{e}"),
                    Err(e) => return Err(e.into()),
                }
            };
            let new = prompt::new_password(
                "New password: ",
                Source {
                    stdin: password.password_stdin,
                    env_var: "VAULT_NEW_PASSWORD",
                },
            )?;
            account::passwd(&state, &current, new.as_bytes()).await?;
            outln!("Password changed. Your other sessions were ended; this one stays logged in.")?;
        }
        Command::ResetPassword {
            user,
            code: None,
            server,
            ..
        } => {
            let user = username(&user)?;
            let checked = check_server(&state, &server).await?;
            let ttl = account::reset_start(&state, &checked, &user).await?;
            outln!(
                "If {user} has an account here, a reset code is on its way to its address, valid for {} minutes.",
                ttl.div_ceil(60)
            )?;
            outln!(
                "Asking again within the resend cooldown (a minute by default) mails nothing new: use the code already sent."
            )?;
            outln!(
                "Then: vault reset-password {user} --code CODE   (it asks for your recovery key)"
            )?;
            outln!(
                "  or: vault reset-password {user} --code CODE --discard-encrypted-data   (files become unreadable)"
            )?;
        }
        Command::ResetPassword {
            user,
            code: Some(code),
            recovery_key,
            recovery_key_stdin,
            discard_encrypted_data,
            server,
            password,
        } => {
            let user = username(&user)?;
            let code = names::normalize_code(&code).map_err(anyhow::Error::msg)?;
            let key = recovery_key_given(
                recovery_key.as_deref(),
                recovery_key_stdin,
                discard_encrypted_data,
            )?;
            let checked = check_server(&state, &server).await?;
            let code = account::reset_check_code(&state, &checked, &user, &code).await?;
            let mode = reset_mode(&code, key, discard_encrypted_data)?;
            let discarding = matches!(mode, ResetMode::DiscardEncryptedData);
            reset_finish(&state, &checked, &code, mode, &password, discarding).await?;
        }
        file_command => bail!("not an account command: {file_command:?}"),
    }
    Ok(())
}

/// Where a new password comes from: `--password-stdin`, `VAULT_PASSWORD`, or a prompt.
fn new_password_source(stdin: bool) -> Source<'static> {
    Source {
        stdin,
        env_var: "VAULT_PASSWORD",
    }
}

/// Sends the registration with `code`; on a terminal (`retype`), a wrong code is asked
/// for again and sent with the same keys.
async fn finish_registration(
    state: &StateDir,
    checked: &CheckedServer,
    pending: &vault_client::state::PendingRegistration,
    mut code: String,
    password: &[u8],
    retype: bool,
) -> anyhow::Result<()> {
    let keys = account::new_account_keys(pending, password)?;
    let mut tries = 1;
    loop {
        match account::register_finish(state, checked, pending, &code, &keys).await {
            Ok(()) => break,
            Err(e) if retype && tries < TRIES && prompt::code_may_be_retyped(&e) => {
                eprintln!("{e}");
                code = prompt::code()?;
                tries += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    outln!("Account {} created and logged in.", pending.username)?;
    print_recovery_key(&keys.recovery_key)?;
    Ok(())
}

/// The recovery key given before anything is sent: `--recovery-key`, `--recovery-key-stdin`
/// or `VAULT_RECOVERY_KEY`, checked for its form. `None` when it is to be asked for (or not
/// wanted, with `--discard-encrypted-data`); without a terminal to ask on, an error that
/// says how to give it.
fn recovery_key_given(
    argument: Option<&str>,
    from_stdin: bool,
    discard: bool,
) -> anyhow::Result<Option<RecoveryKey>> {
    if discard {
        return Ok(None);
    }
    if let Some(text) = argument {
        return prompt::parse_recovery_key(text).map(Some);
    }
    if from_stdin {
        return prompt::recovery_key_from_stdin().map(Some);
    }
    if let Some(text) = std::env::var_os(RECOVERY_KEY_VAR) {
        let text = Zeroizing::new(text.to_string_lossy().into_owned());
        return prompt::parse_recovery_key(&text)
            .with_context(|| format!("in {RECOVERY_KEY_VAR}"))
            .map(Some);
    }
    if !prompt::stdin_is_terminal() {
        bail!(
            "give the recovery key to keep your files readable: on a terminal it is asked for; \
             otherwise set {RECOVERY_KEY_VAR} or pipe it with --recovery-key-stdin. Without it, \
             --discard-encrypted-data starts over with fresh keys (everything encrypted so far \
             becomes unreadable)"
        );
    }
    Ok(None)
}

/// How the reset treats the keys: opened with the recovery key given (or asked for now,
/// and asked again while it does not open them), or discarded.
fn reset_mode(
    code: &ResetCode,
    given: Option<RecoveryKey>,
    discard: bool,
) -> anyhow::Result<ResetMode> {
    if discard {
        return Ok(ResetMode::DiscardEncryptedData);
    }
    match given {
        Some(rk) => Ok(code.open(&rk)?),
        None => prompt::recovery_key(|rk| Ok(code.open(rk)?)),
    }
}

async fn reset_finish(
    state: &StateDir,
    checked: &CheckedServer,
    code: &ResetCode,
    mode: ResetMode,
    password: &PasswordArgs,
    discarding: bool,
) -> anyhow::Result<()> {
    let pw = prompt::new_password(
        "New password: ",
        new_password_source(password.password_stdin),
    )?;
    let new_rk = account::reset_finish(state, checked, code, mode, pw.as_bytes()).await?;
    if discarding {
        outln!(
            "Password reset with fresh keys. Files and messages encrypted under your old keys can no longer be read"
        )?;
        outln!("by anyone, you included; group members must add you to groups again.")?;
    } else {
        outln!("Password reset; your keys were kept, so your files stay readable.")?;
    }
    if let Some(rk) = new_rk {
        print_recovery_key(&rk)?;
    }
    outln!(
        "Logged in as {}. Your other sessions were ended.",
        code.username()
    )?;
    Ok(())
}
