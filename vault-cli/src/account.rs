//! The account commands: register, login, logout, whoami, passwd, reset-password.

use anyhow::{Context, bail};
use vault_client::account::{self, ResetMode, ServerOpts};
use vault_client::files::Files;
use vault_client::state::StateDir;
use vault_core::crypto::RecoveryKey;
use vault_core::units::format_size;

use crate::args::{Cli, Command, ServerArgs};
use crate::prompt::{self, Source};
use crate::warnings;

fn opts(s: &ServerArgs) -> ServerOpts {
    ServerOpts {
        server: s.server.clone(),
        fingerprint: s.fingerprint.clone(),
        accept_new_cert: s.accept_new_cert,
    }
}

fn print_recovery_key(rk: &RecoveryKey) {
    println!();
    println!("Your recovery key (shown only this once):");
    println!();
    println!("    {}", rk.to_display().as_str());
    println!();
    println!("Write it down and keep it somewhere safe and offline. If you forget your password,");
    println!(
        "`vault reset-password` with this key keeps your files readable; without it they are lost."
    );
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let state = StateDir::from_env()?;
    match cli.command {
        Command::Register {
            user,
            email: Some(email),
            server,
            password,
            ..
        } => {
            let ttl = account::register_start(&state, &opts(&server), &user, &email).await?;
            // True whatever the address: the server answers a taken one as a fresh one.
            println!(
                "A verification code is on its way to {email}, valid for {} minutes, unless the \
                 address already has an account here: then its owner is told instead.",
                ttl.div_ceil(60)
            );
            println!(
                "Asking again within the resend cooldown (a minute by default) mails nothing new: use the code already sent."
            );
            if prompt::stdin_is_terminal() && !password.password_stdin {
                let code = prompt::code()?;
                let pw = prompt::new_password(
                    "Choose a password: ",
                    Source {
                        stdin: false,
                        env_var: "VAULT_PASSWORD",
                    },
                )?;
                finish_registration(&state, &server, &user, &code, pw.as_bytes()).await?;
            } else {
                println!("Finish with: vault register {user} --code CODE");
            }
        }
        Command::Register {
            user,
            code: Some(code),
            server,
            password,
            ..
        } => {
            let pw = prompt::new_password(
                "Choose a password: ",
                Source {
                    stdin: password.password_stdin,
                    env_var: "VAULT_PASSWORD",
                },
            )?;
            finish_registration(&state, &server, &user, &code, pw.as_bytes()).await?;
        }
        Command::Register { .. } => bail!("give --email ADDR (step 1) or --code CODE (step 2)"),
        Command::Login {
            user,
            server,
            password,
        } => {
            let pw = prompt::password(
                "Password: ",
                Source {
                    stdin: password.password_stdin,
                    env_var: "VAULT_PASSWORD",
                },
            )?;
            let key_tasks = account::login(&state, &opts(&server), &user, pw.as_bytes()).await?;
            println!("Logged in as {}.", user.to_lowercase());
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
                println!("Logged out; the session token and keys were removed from this machine.");
            } else {
                println!(
                    "Removed the session token and keys from this machine (the server could not be told)."
                );
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
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("{} <{}>", info.username, info.email);
                println!("server:      {server}");
                println!("certificate: {fingerprint}");
                println!(
                    "quota:       {} of {} used",
                    format_size(info.used_bytes),
                    format_size(info.quota_bytes)
                );
                println!("sessions:    {}", info.sessions);
            }
        }
        Command::Passwd { password } => {
            let old = prompt::password(
                "Current password: ",
                Source {
                    stdin: false,
                    env_var: "VAULT_PASSWORD",
                },
            )?;
            let new = prompt::new_password(
                "New password: ",
                Source {
                    stdin: password.password_stdin,
                    env_var: "VAULT_NEW_PASSWORD",
                },
            )?;
            account::passwd(&state, old.as_bytes(), new.as_bytes()).await?;
            println!("Password changed. Your other sessions were ended; this one stays logged in.");
        }
        Command::ResetPassword {
            user,
            code: None,
            server,
            ..
        } => {
            let ttl = account::reset_start(&state, &opts(&server), &user).await?;
            println!(
                "If {user} has an account here, a reset code is on its way to its address, valid for {} minutes.",
                ttl.div_ceil(60)
            );
            println!(
                "Asking again within the resend cooldown (a minute by default) mails nothing new: use the code already sent."
            );
            println!("Then: vault reset-password {user} --code CODE --recovery-key vault-rk-…");
            println!(
                "  or: vault reset-password {user} --code CODE --discard-encrypted-data   (files become unreadable)"
            );
        }
        Command::ResetPassword {
            user,
            code: Some(code),
            recovery_key,
            discard_encrypted_data,
            server,
            password,
        } => {
            let mode = match (recovery_key, discard_encrypted_data) {
                (Some(rk), _) => {
                    ResetMode::Recovery(RecoveryKey::parse(&rk).context("the recovery key")?)
                }
                (None, true) => ResetMode::DiscardEncryptedData,
                (None, false) => bail!(
                    "pass --recovery-key vault-rk-… to keep your files readable, or --discard-encrypted-data \
                     to start over with fresh keys (everything encrypted so far becomes unreadable)"
                ),
            };
            let discarding = matches!(mode, ResetMode::DiscardEncryptedData);
            let pw = prompt::new_password(
                "New password: ",
                Source {
                    stdin: password.password_stdin,
                    env_var: "VAULT_PASSWORD",
                },
            )?;
            let new_rk =
                account::reset_finish(&state, &opts(&server), &user, &code, mode, pw.as_bytes())
                    .await?;
            if discarding {
                println!(
                    "Password reset with fresh keys. Files and messages encrypted under your old keys can no longer be read"
                );
                println!("by anyone, you included; group members must add you to groups again.");
            } else {
                println!("Password reset; your keys were kept, so your files stay readable.");
            }
            if let Some(rk) = new_rk {
                print_recovery_key(&rk);
            }
            println!(
                "Logged in as {}. Your other sessions were ended.",
                user.to_lowercase()
            );
        }
        file_command => bail!("not an account command: {file_command:?}"),
    }
    Ok(())
}

async fn finish_registration(
    state: &StateDir,
    server: &ServerArgs,
    user: &str,
    code: &str,
    password: &[u8],
) -> anyhow::Result<()> {
    let rk = account::register_finish(state, &opts(server), user, code, password).await?;
    println!("Account {} created and logged in.", user.to_lowercase());
    print_recovery_key(&rk);
    Ok(())
}
