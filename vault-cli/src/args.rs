//! What the user typed: the clap definitions of every `vault` command.

use clap::{Args, Parser, Subcommand};

/// Vault: an end-to-end encrypted file vault for the terminal.
///
/// Client state (server, pinned certificate, session) lives in $VAULT_CONFIG_DIR, else
/// $XDG_CONFIG_HOME/vault, else ~/.config/vault. Passwords come from a terminal prompt,
/// --password-stdin (one line), or VAULT_PASSWORD.
#[derive(Debug, Parser)]
#[command(name = "vault", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the server is and how to trust it.
#[derive(Debug, Args, Clone, Default)]
pub struct ServerArgs {
    /// The server, HOST:PORT (remembered after the first use).
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Pin the server certificate to this fingerprint (from `vault-admin cert show`).
    #[arg(long, value_name = "SHA256:…", conflicts_with = "accept_new_cert")]
    pub fingerprint: Option<String>,
    /// Trust the certificate the server presents now, and pin it (trust on first use).
    #[arg(long)]
    pub accept_new_cert: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct PasswordArgs {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account: first with --email (a code is mailed), then with --code.
    Register {
        /// The username: 3–32 of a-z, 0-9, '_', '.', '-'.
        user: String,
        /// Step 1: the address to mail the verification code to.
        #[arg(
            long,
            value_name = "ADDR",
            required_unless_present = "code",
            conflicts_with = "code"
        )]
        email: Option<String>,
        /// Step 2: the code from the mail.
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Log in and unlock your keys on this machine.
    Login {
        user: String,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// End the session and remove the session token and account key from this machine.
    Logout {
        /// Also forget the server address and its pinned certificate.
        #[arg(long)]
        forget_server: bool,
    },
    /// Show who is logged in, where, and the quota.
    Whoami {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change your password (other sessions end; your files stay readable).
    ///
    /// The current password comes from VAULT_PASSWORD or a prompt; the new one from
    /// --password-stdin, VAULT_NEW_PASSWORD, or a prompt.
    Passwd {
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Reset a forgotten password by mailed code: first without --code, then with it.
    ResetPassword {
        user: String,
        /// Step 2: the code from the mail.
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
        /// Keep your files readable by unlocking your keys with the recovery key.
        #[arg(
            long,
            value_name = "RK",
            requires = "code",
            conflicts_with = "discard_encrypted_data"
        )]
        recovery_key: Option<String>,
        /// Without the recovery key: start over with fresh keys. Everything encrypted so
        /// far becomes unreadable.
        #[arg(long, requires = "code")]
        discard_encrypted_data: bool,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        password: PasswordArgs,
    },
}
