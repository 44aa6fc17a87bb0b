//! Account operations as the `vault` command performs them: register (two steps), login,
//! resume, logout, whoami, passwd, and the mailed-code password reset. Each connects,
//! talks to the server, and keeps the state directory up to date.

use vault_core::crypto::{KdfParams, Key32, RecoveryKey};
use vault_core::proto::{
    AccountInfo, AccountKeys, LoggedIn, Request, ResetMaterial, Response, SecretBytes, names,
};

use crate::ClientError;
use crate::keys;
use crate::state::{ClientConfig, PendingRegistration, StateDir};
use crate::transport::{self, Connection, Pin};

/// How to find and trust the server: `--server`, `--fingerprint`, `--accept-new-cert`.
#[derive(Clone, Debug, Default)]
pub struct ServerOpts {
    pub server: Option<String>,
    pub fingerprint: Option<String>,
    pub accept_new_cert: bool,
}

/// A connection with a live session.
#[derive(Debug)]
pub struct Session {
    pub conn: Connection,
    pub config: ClientConfig,
    pub username: String,
    /// The account's sealed key material as the server returned it on `resume`.
    pub keys: AccountKeys,
    /// How much group-key work the server has for this client (`key_tasks`).
    pub key_tasks: u32,
}

fn unexpected(what: &str, r: Response) -> ClientError {
    ClientError::Protocol(format!("unexpected answer to {what}: {r:?}"))
}

/// Checks the `SHA256:<64 hex>` form of a fingerprint given on the command line.
pub fn parse_fingerprint(text: &str) -> Result<String, ClientError> {
    let hex_part = text
        .strip_prefix("SHA256:")
        .or_else(|| text.strip_prefix("sha256:"))
        .unwrap_or("");
    if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ClientError::Usage(format!(
            "invalid fingerprint {text:?}: expected SHA256: followed by 64 hex digits, as `vault-admin cert show` prints"
        )));
    }
    Ok(format!("SHA256:{}", hex_part.to_ascii_lowercase()))
}

/// The server `opts` and the saved state name, and the certificate to accept from it.
fn target(config: &ClientConfig, opts: &ServerOpts) -> Result<(String, Pin), ClientError> {
    let server = opts
        .server
        .clone()
        .or_else(|| config.server.clone())
        .ok_or_else(|| ClientError::Usage("no server known yet: pass --server HOST:PORT".into()))?;
    let same_server = config.server.as_deref() == Some(server.as_str());
    let pin = match (
        &opts.fingerprint,
        same_server.then_some(config.fingerprint.as_ref()).flatten(),
    ) {
        (Some(given), _) => Pin::Fingerprint(parse_fingerprint(given)?),
        (None, Some(saved)) => Pin::Fingerprint(saved.clone()),
        (None, None) if opts.accept_new_cert => Pin::TrustOnFirstUse,
        (None, None) => Pin::Unpinned,
    };
    Ok((server, pin))
}

/// Connects to `server` accepting `pin`; a certificate that is not the one the user typed
/// with `--fingerprint` (`typed`) is reported as such, not as a changed certificate.
async fn open(
    state: &StateDir,
    server: &str,
    pin: &Pin,
    typed: bool,
) -> Result<Connection, ClientError> {
    let several = transport::addresses(server).len() > 1;
    // Only a hint: a command that cannot read or write it still works.
    let before = if several {
        state
            .read(crate::state::LAST_SERVER)
            .ok()
            .flatten()
            .map(|a| a.trim().to_owned())
    } else {
        None
    };
    if let Some(address) = &before {
        transport::prefer(address);
    }
    let conn = connect_to(server, pin, typed).await?;
    if several {
        let now = transport::last_good();
        if now.is_some() && now != before {
            let _ = state.write(
                crate::state::LAST_SERVER,
                now.unwrap_or_default().as_bytes(),
            );
        }
    }
    Ok(conn)
}

async fn connect_to(server: &str, pin: &Pin, typed: bool) -> Result<Connection, ClientError> {
    transport::connect(server, pin).await.map_err(|e| match e {
        ClientError::CertificateChanged { pinned, presented } if typed => {
            ClientError::FingerprintMismatch {
                typed: pinned,
                presented,
            }
        }
        other => other,
    })
}

/// Saves `server` and the certificate `conn` presented as the ones to use from now on.
/// Moving to another server starts the state afresh (and forgets other people's keys).
fn remember(
    state: &StateDir,
    mut config: ClientConfig,
    server: String,
    conn: &Connection,
) -> Result<ClientConfig, ClientError> {
    let same_server = config.server.as_deref() == Some(server.as_str());
    // Written only when it changes: every command connects, and a rewrite is an fsync.
    let changed = !same_server || config.fingerprint.as_ref() != Some(&conn.fingerprint);
    if !same_server {
        if config.server.is_some() {
            state.forget_known_keys()?;
        }
        config = ClientConfig::default();
    }
    config.server = Some(server);
    config.fingerprint = Some(conn.fingerprint.clone());
    if changed {
        state.save_config(&config)?;
    }
    Ok(config)
}

/// Connects per `opts` and the saved state, then saves the server and the pin.
pub async fn connect(
    state: &StateDir,
    opts: &ServerOpts,
) -> Result<(Connection, ClientConfig), ClientError> {
    let config = state.config()?;
    let (server, pin) = target(&config, opts)?;
    let conn = open(state, &server, &pin, opts.fingerprint.is_some()).await?;
    let config = remember(state, config, server, &conn)?;
    Ok((conn, config))
}

/// A server whose address and certificate were checked before anything was asked of the
/// user. The connections after the prompt accept only the certificate seen then.
#[derive(Clone, Debug)]
pub struct CheckedServer {
    server: String,
    /// The certificate's fingerprint.
    pub fingerprint: String,
    /// Trusted on first use just now (`--accept-new-cert`, nothing pinned before): the
    /// caller shows the fingerprint, which the next connection pins.
    pub newly_trusted: bool,
}

/// Connects once per `opts` and the saved state, says `hello` and closes again: a wrong
/// address, a server that does not answer or a certificate that does not match is
/// reported before any prompt. Nothing is saved yet.
pub async fn check_server(
    state: &StateDir,
    opts: &ServerOpts,
) -> Result<CheckedServer, ClientError> {
    let (server, pin) = target(&state.config()?, opts)?;
    let conn = open(state, &server, &pin, opts.fingerprint.is_some()).await?;
    let fingerprint = conn.fingerprint.clone();
    conn.close();
    Ok(CheckedServer {
        server,
        fingerprint,
        newly_trusted: pin == Pin::TrustOnFirstUse,
    })
}

/// Connects to a checked server (its certificate must not have changed since), then saves
/// the server and the pin.
async fn connect_checked(
    state: &StateDir,
    checked: &CheckedServer,
) -> Result<(Connection, ClientConfig), ClientError> {
    let pin = Pin::Fingerprint(checked.fingerprint.clone());
    let conn = open(state, &checked.server, &pin, false).await?;
    let config = remember(state, state.config()?, checked.server.clone(), &conn)?;
    Ok((conn, config))
}

/// Registration step 1: asks the server to mail a code, or, with `invite`, to check an
/// invitation's code (which then serves as the verification code). Returns the code's
/// lifetime.
pub async fn register_start(
    state: &StateDir,
    server: &CheckedServer,
    username: &str,
    email: &str,
    invite: Option<&str>,
) -> Result<u64, ClientError> {
    let username = names::normalize_username(username).map_err(ClientError::Usage)?;
    let email = names::normalize_email(email).map_err(ClientError::Usage)?;
    let (conn, mut config) = connect_checked(state, server).await?;
    let request = Request::RegisterStart {
        username: username.clone(),
        email: email.clone(),
        invite: invite.map(str::to_owned),
    };
    match conn.call(&request).await? {
        Response::RegisterStarted { kdf, code_ttl_s } => {
            config.pending_registration = Some(PendingRegistration {
                username,
                email,
                kdf,
            });
            state.save_config(&config)?;
            conn.close();
            Ok(code_ttl_s)
        }
        other => Err(unexpected("register", other)),
    }
}

/// Registration step 2, before anything is asked: the registration of `username` started
/// on this machine (with `server`, when one is named). Offline.
pub fn pending_registration(
    state: &StateDir,
    username: &str,
    server: Option<&str>,
) -> Result<PendingRegistration, ClientError> {
    let username = names::normalize_username(username).map_err(ClientError::Usage)?;
    let config = state.config()?;
    let start_again =
        || format!("start with `vault register {username} --email ADDR --server HOST:PORT`");
    let pending = config
        .pending_registration
        .clone()
        .filter(|p| p.username == username)
        .ok_or_else(|| {
            ClientError::Usage(format!(
                "no registration of {username} is in progress here; {}",
                start_again()
            ))
        })?;
    if let (Some(named), Some(saved)) = (server, config.server.as_deref())
        && named != saved
    {
        return Err(ClientError::Usage(format!(
            "the registration of {username} in progress here is with {saved}, not {named}: \
             leave out --server, or {}",
            start_again()
        )));
    }
    Ok(pending)
}

/// The keys of a new account, made on this machine from the password (Argon2id with the
/// parameters the server asked for, and an RSA key pair): slow, offline. Made once, they
/// can be sent again with another code.
pub fn new_account_keys(
    pending: &PendingRegistration,
    password: &[u8],
) -> Result<keys::CreatedAccount, ClientError> {
    keys::create_account(&pending.username, password, &pending.kdf)
}

/// Registration step 2: sends the keys with the mailed code, saves the session. A wrong
/// code leaves `created` as it was, for another try.
pub async fn register_finish(
    state: &StateDir,
    server: &CheckedServer,
    pending: &PendingRegistration,
    code: &str,
    created: &keys::CreatedAccount,
) -> Result<(), ClientError> {
    let (conn, mut config) = connect_checked(state, server).await?;
    let username = pending.username.clone();
    let request = Request::RegisterFinish {
        username: username.clone(),
        code: code.to_string(),
        account: created.account.clone(),
    };
    let logged_in = match conn.call(&request).await? {
        Response::LoggedIn(l) => l,
        other => return Err(unexpected("register", other)),
    };
    let token = logged_in
        .token
        .ok_or_else(|| ClientError::Protocol("no session token after registering".into()))?;
    state.save_session(&token, &created.account_key)?;
    config.pending_registration = None;
    config.username = Some(username);
    state.save_config(&config)?;
    conn.close();
    Ok(())
}

async fn prelogin(conn: &Connection, username: &str) -> Result<(Vec<u8>, KdfParams), ClientError> {
    match conn
        .call(&Request::Prelogin {
            username: username.to_string(),
        })
        .await?
    {
        Response::Prelogin { salt, kdf } => Ok((salt.into_vec(), kdf)),
        other => Err(unexpected("prelogin", other)),
    }
}

/// Logs in with a password: prelogin, derive, login, unlock and save the account key.
/// Returns how much group-key work the server has for this client (`key_tasks`).
pub async fn login(
    state: &StateDir,
    server: &CheckedServer,
    username: &str,
    password: &[u8],
) -> Result<u32, ClientError> {
    let username = names::normalize_username(username).map_err(ClientError::Usage)?;
    let (conn, config) = connect_checked(state, server).await?;
    let key_tasks = login_on(state, &conn, config, &username, password).await?;
    conn.close();
    Ok(key_tasks)
}

async fn login_on(
    state: &StateDir,
    conn: &Connection,
    mut config: ClientConfig,
    username: &str,
    password: &[u8],
) -> Result<u32, ClientError> {
    let (salt, kdf) = prelogin(conn, username).await?;
    let derived = keys::derive(password, &salt, &kdf)?;
    let auth_key = SecretBytes::new(derived.auth_key.dangerously_leak_secret().to_vec());
    let LoggedIn {
        token,
        keys: account_keys,
        key_tasks,
    } = match conn
        .call(&Request::Login {
            username: username.to_string(),
            auth_key,
        })
        .await?
    {
        Response::LoggedIn(l) => l,
        other => return Err(unexpected("login", other)),
    };
    let account_key = keys::unlock(&account_keys, &derived.kek)?;
    let token =
        token.ok_or_else(|| ClientError::Protocol("no session token after login".into()))?;
    state.wipe_session()?;
    state.save_session(&token, &account_key)?;
    config.username = Some(username.to_string());
    state.save_config(&config)?;
    Ok(key_tasks)
}

/// Reconnects with the saved session.
pub async fn resume(state: &StateDir) -> Result<Session, ClientError> {
    let not_logged_in = || ClientError::Usage("not logged in: run `vault login USER` first".into());
    let config = state.config()?;
    let token = state.token()?.ok_or_else(not_logged_in)?;
    if config.server.is_none() {
        return Err(not_logged_in());
    }
    let (conn, config) = connect(state, &ServerOpts::default()).await?;
    match conn.call(&Request::Resume { token }).await {
        Ok(Response::LoggedIn(l)) => Ok(Session {
            conn,
            config,
            username: l.keys.username.clone(),
            keys: l.keys,
            key_tasks: l.key_tasks,
        }),
        Ok(other) => Err(unexpected("resume", other)),
        Err(e) => {
            if matches!(&e, ClientError::Api(api) if matches!(api.code.as_str(), "forbidden" | "invalid_credentials"))
            {
                state.wipe_session()?;
            }
            Err(e)
        }
    }
}

/// Ends the session on the server (if reachable) and wipes it locally. With `forget`,
/// the server address and pinned fingerprint go too.
pub async fn logout(state: &StateDir, forget: bool) -> Result<bool, ClientError> {
    let ended_on_server = match resume(state).await {
        Ok(session) => {
            let ok = session.conn.call(&Request::Logout).await.is_ok();
            session.conn.close();
            ok
        }
        Err(_) => false,
    };
    if forget {
        state.wipe_all()?
    } else {
        state.wipe_session()?
    }
    Ok(ended_on_server)
}

/// The account's details and where it lives.
pub async fn whoami(state: &StateDir) -> Result<(AccountInfo, ClientConfig), ClientError> {
    let session = resume(state).await?;
    let info = whoami_on(&session.conn).await?;
    session.conn.close();
    Ok((info, session.config))
}

/// The account's details, asked on a connection with a live session.
pub async fn whoami_on(conn: &Connection) -> Result<AccountInfo, ClientError> {
    match conn.call(&Request::Whoami).await? {
        Response::Whoami(info) => Ok(info),
        other => Err(unexpected("whoami", other)),
    }
}

/// What `passwd` needs to check the current password before the new one is asked: the
/// account's sealed keys and password salt, as the server has them.
#[derive(Debug)]
pub struct PasswdCheck {
    keys: AccountKeys,
    salt: Vec<u8>,
    kdf: KdfParams,
}

/// The current password, proved: it opens the account key the server keeps sealed under
/// it.
#[derive(Debug)]
pub struct CurrentPassword {
    username: String,
    kdf: KdfParams,
    auth_key: SecretBytes,
    account_key: Key32,
}

/// `passwd`, before any prompt: resumes the session and fetches what checks the current
/// password.
pub async fn passwd_check(state: &StateDir) -> Result<PasswdCheck, ClientError> {
    let session = resume(state).await?;
    let (salt, kdf) = prelogin(&session.conn, &session.username).await?;
    session.conn.close();
    Ok(PasswdCheck {
        keys: session.keys,
        salt,
        kdf,
    })
}

impl PasswdCheck {
    /// Checks `password` on this machine: it must open the sealed account key (AES-GCM
    /// fails on any other). The server checks it again when the change is made.
    pub fn current(&self, password: &[u8]) -> Result<CurrentPassword, ClientError> {
        let derived = keys::derive(password, &self.salt, &self.kdf)?;
        let account_key = keys::open_account_key(&self.keys, &derived.kek).map_err(|_| {
            ClientError::Usage("the current password is wrong; nothing was changed".into())
        })?;
        keys::check_private_key(&self.keys, &account_key)?;
        Ok(CurrentPassword {
            username: self.keys.username.clone(),
            kdf: self.kdf,
            auth_key: SecretBytes::new(derived.auth_key.dangerously_leak_secret().to_vec()),
            account_key,
        })
    }
}

/// Changes the password; other sessions end. The account key stays the same.
pub async fn passwd(
    state: &StateDir,
    current: &CurrentPassword,
    new: &[u8],
) -> Result<(), ClientError> {
    let new_material =
        keys::password_material(&current.username, new, &current.kdf, &current.account_key)?;
    let session = resume(state).await?;
    let request = Request::ChangePassword {
        old_auth_key: current.auth_key.clone(),
        new: new_material,
    };
    session.conn.call(&request).await?;
    session.conn.close();
    Ok(())
}

/// Reset step 1: asks for a mailed code.
pub async fn reset_start(
    state: &StateDir,
    server: &CheckedServer,
    username: &str,
) -> Result<u64, ClientError> {
    let username = names::normalize_username(username).map_err(ClientError::Usage)?;
    let (conn, _) = connect_checked(state, server).await?;
    match conn.call(&Request::ResetStart { username }).await? {
        Response::ResetStarted { code_ttl_s } => {
            conn.close();
            Ok(code_ttl_s)
        }
        other => Err(unexpected("reset-password", other)),
    }
}

/// A reset code the server accepted (it stays valid until the reset is made), with the
/// account key sealed under the recovery key that came with it.
#[derive(Debug)]
pub struct ResetCode {
    username: String,
    code: String,
    account_key_by_recovery: Vec<u8>,
}

/// Reset step 2, before the new password is asked: checks the mailed code with the server
/// (`reset_recovery`, which does not use it up).
pub async fn reset_check_code(
    state: &StateDir,
    server: &CheckedServer,
    username: &str,
    code: &str,
) -> Result<ResetCode, ClientError> {
    let username = names::normalize_username(username).map_err(ClientError::Usage)?;
    let (conn, _) = connect_checked(state, server).await?;
    let request = Request::ResetRecovery {
        username: username.clone(),
        code: code.to_string(),
    };
    let sealed = match conn.call(&request).await? {
        Response::ResetRecovery {
            account_key_by_recovery,
        } => account_key_by_recovery,
        other => return Err(unexpected("reset-password", other)),
    };
    conn.close();
    Ok(ResetCode {
        username,
        code: code.to_string(),
        account_key_by_recovery: sealed.into_vec(),
    })
}

impl ResetCode {
    /// The account the code is for.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Opens the account key with `recovery`, on this machine: a recovery key that does
    /// not open it is refused before the new password is asked.
    pub fn open(&self, recovery: &RecoveryKey) -> Result<ResetMode, ClientError> {
        keys::unlock_with_recovery(&self.username, &self.account_key_by_recovery, recovery)
            .map(ResetMode::KeepKeys)
    }
}

/// How a reset treats the old keys.
#[derive(Debug)]
pub enum ResetMode {
    /// Keep everything readable: the account key, opened with the recovery key.
    KeepKeys(Key32),
    /// Fresh keys; what was sealed under the old account key becomes unreadable.
    DiscardEncryptedData,
}

/// Reset step 2: installs the new password (and keys), then logs in. Returns the new
/// recovery key when the keys were replaced.
pub async fn reset_finish(
    state: &StateDir,
    server: &CheckedServer,
    code: &ResetCode,
    mode: ResetMode,
    new_password: &[u8],
) -> Result<Option<RecoveryKey>, ClientError> {
    let username = code.username.clone();
    let (conn, config) = connect_checked(state, server).await?;
    let (_, kdf) = prelogin(&conn, &username).await?;
    let (new_recovery, reset) = match mode {
        ResetMode::KeepKeys(account_key) => {
            let password = keys::password_material(&username, new_password, &kdf, &account_key)?;
            (None, ResetMaterial::KeepKeys { password })
        }
        ResetMode::DiscardEncryptedData => {
            let created = keys::create_account(&username, new_password, &kdf)?;
            (
                Some(created.recovery_key),
                ResetMaterial::DiscardEncryptedData {
                    account: created.account,
                },
            )
        }
    };
    conn.call(&Request::ResetFinish {
        username: username.clone(),
        code: code.code.clone(),
        reset,
    })
    .await?;
    login_on(state, &conn, config, &username, new_password).await?;
    conn.close();
    Ok(new_recovery)
}
