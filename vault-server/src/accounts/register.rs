//! Registration in two steps: `start` checks the names and queues a mail; `finish` checks
//! the code and creates the account from the client's key material, then logs in.
//!
//! Usernames are public (people add each other by name), so a taken one is refused.
//! Email addresses are not: `start` answers a taken address exactly as a fresh one, with
//! the same database work and one queued mail. A fresh address gets a code; the owner of
//! a taken one gets a notice without a code, and a code that is never sent is stored for
//! the attempt, so that `finish` fails as it does for a wrong code. Within the resend
//! cooldown nothing is mailed, alike for both.
//!
//! An invitation (`super::invitations`) replaces the mailed code: `start` with its code
//! checks it and stores it as the registration's code, and `finish` marks it used. With
//! `registration = "invite"` both steps require one.

use std::net::IpAddr;

use vault_proto::proto::{ApiError, NewAccount, Response, SecretBytes, names};

use super::{auth_hash, codes, invitations, material, sessions};
use crate::config::{CodeConfig, Registration};
use crate::db::{self, DbConn, audit::Event, now, users::NewUser};
use crate::mail::queue::OutgoingMail;
use crate::net::connection::{ConnCtx, SessionCtx};
use crate::state::ServerState;

const USERNAME_TAKEN: &str = "that username is already taken; choose another, or run \
                              `vault reset-password USER` if it is yours";

const TAKEN: &str = "that username or email address is already registered; choose another, \
                     or run `vault reset-password USER` if it is yours";

const INVITE_ONLY: &str = "this server registers by invitation only: ask its operator for \
                           one (`vault-admin user invite ADDR`), then run `vault register NAME \
                           --email ADDR --invite CODE`";

/// Step 1: answers `register_started` for any free username, whatever the address. With
/// an invitation code, checks it instead and mails nothing: the code from the invitation
/// then finishes the registration.
pub async fn start(
    state: &ServerState,
    ip: IpAddr,
    username: &str,
    email: &str,
    invite: Option<&str>,
) -> Result<Response, ApiError> {
    match (state.config.registration, invite) {
        (Registration::Closed, _) => {
            return Err(ApiError::forbidden(
                "this server does not accept new registrations; ask its operator for an account",
            ));
        }
        (Registration::Invite, None) => return Err(ApiError::forbidden(INVITE_ONLY)),
        _ => {}
    }
    let username = names::normalize_username(username).map_err(ApiError::bad_request)?;
    let email = names::normalize_email(email).map_err(ApiError::bad_request)?;
    let (ip, config) = (ip.to_string(), state.config.codes.clone());
    if let Some(code) = invite {
        let code = codes::normalize(code);
        state
            .db
            .run(move |c| {
                let invitation = invitations::check(c, &config, &email, &username, &code, &ip)?;
                db::transaction(c, |c| {
                    record_invited_start(c, &config, &username, &email, &code, &ip, invitation.id)
                })
            })
            .await?;
    } else {
        let slot = codes::mail_slot(&state.mail)?;
        let mail = state
            .db
            .run(move |c| db::transaction(c, |c| record_start(c, &config, &username, &email, &ip)))
            .await?;
        if let Some(mail) = mail {
            slot.send(mail);
        }
    }
    Ok(Response::RegisterStarted {
        kdf: state.config.kdf,
        code_ttl_s: state.config.codes.ttl_s,
    })
}

/// The database side of `start`, in one transaction: refuses a taken username, stores a
/// code when one is due, writes the audit entry, and returns the mail to queue (none
/// within the resend cooldown).
fn record_start(
    c: &mut DbConn,
    config: &CodeConfig,
    name: &str,
    addr: &str,
    ip: &str,
) -> Result<Option<OutgoingMail>, ApiError> {
    if db::users::by_name(c, name)?.is_some() {
        return Err(ApiError::conflict(USERNAME_TAKEN));
    }
    invitations::check_not_reserved(c, name, addr)?;
    let owner = db::users::name_by_email(c, addr)?;
    let quiet = codes::cooldown_left(c, config, codes::PURPOSE_REGISTER, addr)?.is_some();
    let pending = db::codes::live(c, codes::PURPOSE_REGISTER, name)?
        .is_some_and(|row| row.email == addr && row.expires_at > now());
    // Within the cooldown the code already pending for this name and address stays; if
    // there is none, one is stored but not sent, so that `finish` fails the same way
    // whether an earlier request of the cooldown was for this name or not.
    let code = if quiet && pending {
        None
    } else {
        Some(codes::issue(
            c,
            config,
            codes::PURPOSE_REGISTER,
            name,
            addr,
        )?)
    };
    let (mail, what) = match (&owner, &code) {
        _ if quiet => (None, "within the resend cooldown: nothing mailed"),
        (Some(owner), _) => (
            Some(codes::notice_mail(owner, addr, name)),
            "a notice to the owner queued for mail, no code sent",
        ),
        (None, Some(code)) => (
            Some(codes::code_mail(
                config,
                codes::PURPOSE_REGISTER,
                name,
                addr,
                code,
            )),
            "verification code queued for mail",
        ),
        (None, None) => (None, "nothing mailed"),
    };
    match &owner {
        None => db::audit::record(
            c,
            &Event::anonymous(ip, "registration_started")
                .about(name)
                .with_detail(what),
        )?,
        Some(owner) => db::audit::record(
            c,
            &Event::anonymous(ip, "registration_email_taken")
                .about(owner)
                .with_detail(&format!(
                    "someone asked to register {name} with this account's address; {what}"
                )),
        )?,
    }
    Ok(mail)
}

/// The database side of an invited `start`, in one transaction: the invitation's code
/// becomes the registration's verification code (nothing is mailed: the invitee has it).
fn record_invited_start(
    c: &mut DbConn,
    config: &CodeConfig,
    name: &str,
    addr: &str,
    code: &str,
    ip: &str,
    invitation: i64,
) -> Result<(), ApiError> {
    if db::users::by_name(c, name)?.is_some() {
        return Err(ApiError::conflict(USERNAME_TAKEN));
    }
    invitations::check_not_reserved(c, name, addr)?;
    if db::users::name_by_email(c, addr)?.is_some() {
        return Err(ApiError::conflict(TAKEN));
    }
    codes::store(c, config, codes::PURPOSE_REGISTER, name, addr, code)?;
    db::audit::record(
        c,
        &Event::anonymous(ip, "registration_started")
            .about(name)
            .with_detail(&format!("with invitation {invitation}")),
    )?;
    Ok(())
}

/// Step 2: creates the account and logs in on this connection.
pub async fn finish(
    state: &ServerState,
    ctx: &ConnCtx,
    username: &str,
    code: &str,
    account: NewAccount,
) -> Result<Response, ApiError> {
    let (user, session, token) = create(state, ctx.ip, username, code, account).await?;
    tracing::info!(user = %user.username, "account registered");
    // A new account is in no group yet: no key work.
    Ok(Response::LoggedIn(sessions::bind(
        state,
        ctx,
        &user,
        session,
        Some(token),
        0,
    )))
}

/// Checks the code and creates the account with a first session. A wrong code, and any
/// code for an attempt with a taken address, fails the same way (`codes::check`).
pub(super) async fn create(
    state: &ServerState,
    ip: IpAddr,
    username: &str,
    code: &str,
    account: NewAccount,
) -> Result<(db::users::User, SessionCtx, SecretBytes), ApiError> {
    if state.config.registration == Registration::Closed {
        return Err(ApiError::forbidden(
            "this server does not accept new registrations",
        ));
    }
    let invitation_required = state.config.registration == Registration::Invite;
    let username = names::normalize_username(username).map_err(ApiError::bad_request)?;
    material::check_account(&account, &state.config.kdf)?;
    let (name, input, config, client) = (
        username.clone(),
        code.to_string(),
        state.config.codes.clone(),
        ip.to_string(),
    );
    let code_row = state
        .db
        .run(move |c| codes::check(c, &config, codes::PURPOSE_REGISTER, &name, &input, &client))
        .await?;

    let auth_hash = auth_hash::hash_bounded(state, ip, &account.password.auth_key).await?;

    let (ip, single, quota) = (
        ip.to_string(),
        state.config.single_session,
        state.config.default_quota.0,
    );
    state
        .db
        .run(move |c| {
            let user = db::transaction(c, |c| {
                if !db::codes::consume(c, code_row.id)? {
                    return Err(ApiError::forbidden(
                        "that verification code was just used; register again",
                    ));
                }
                if db::users::name_or_email_taken(c, &code_row.username, &code_row.email)? {
                    return Err(ApiError::conflict(TAKEN));
                }
                invitations::redeem(c, &code_row.email, &code_row.username, invitation_required)?;
                let p = &account.password;
                let user = db::users::insert(
                    c,
                    &NewUser {
                        username: &code_row.username,
                        email: &code_row.email,
                        auth_hash: &auth_hash,
                        kdf_salt: &p.salt,
                        kdf_memory_kib: p.kdf.memory_kib.into(),
                        kdf_iterations: p.kdf.iterations.into(),
                        kdf_parallelism: p.kdf.parallelism.into(),
                        account_key_by_kek: &p.account_key_by_kek,
                        account_key_by_recovery: &account.account_key_by_recovery,
                        public_key: &account.public_key,
                        private_key_sealed: &account.private_key_sealed,
                        quota_bytes: i64::try_from(quota).unwrap_or(i64::MAX),
                        locked: false,
                        created_at: now(),
                    },
                )?;
                db::audit::record(
                    c,
                    &Event::by_user(&user.username, &ip, "registered")
                        .with_detail(&format!("email {}", user.email)),
                )?;
                Ok::<_, ApiError>(user)
            })?;
            let (session, token) = sessions::open(c, single, &ip, &user)?;
            Ok::<_, ApiError>((user, session, token))
        })
        .await
}
