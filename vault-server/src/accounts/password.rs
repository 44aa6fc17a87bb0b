//! `passwd` (change with the old password) and the mailed-code password reset, which
//! either keeps the keys (the client opened the account key with the recovery key) or
//! installs fresh ones, discarding what was sealed under the old account key.

use std::net::IpAddr;
use vault_proto::units::plural;

use vault_proto::proto::{
    ApiError, ByteBuf, ErrorCode, PasswordMaterial, ResetMaterial, Response, SecretBytes, names,
};

use super::{auth_hash, codes, material};
use crate::config::CodeConfig;
use crate::db::{
    self, DbConn,
    audit::Event,
    users::{KeyColumns, PasswordColumns},
};
use crate::mail::queue::OutgoingMail;
use crate::net::connection::{ConnCtx, SessionCtx};
use crate::state::ServerState;
use crate::throttle;

fn password_columns<'a>(m: &'a PasswordMaterial, auth_hash: &'a str) -> PasswordColumns<'a> {
    PasswordColumns {
        auth_hash,
        kdf_salt: &m.salt,
        kdf_memory_kib: m.kdf.memory_kib.into(),
        kdf_iterations: m.kdf.iterations.into(),
        kdf_parallelism: m.kdf.parallelism.into(),
        account_key_by_kek: &m.account_key_by_kek,
    }
}

/// Changes the password: proves the old auth key, stores the new material, and ends every
/// other session of the user.
pub async fn change(
    state: &ServerState,
    ctx: &ConnCtx,
    session: SessionCtx,
    old_auth_key: SecretBytes,
    new: PasswordMaterial,
) -> Result<Response, ApiError> {
    material::check_password(&new, &state.config.kdf)?;
    let user_id = session.user_id;
    let user = state
        .db
        .run(move |c| {
            db::users::by_id(c, user_id)?
                .ok_or_else(|| ApiError::forbidden("this account no longer exists"))
        })
        .await?;
    let phc = user.auth_hash.clone();
    let old_ok = auth_hash::verify_bounded(state, ctx.ip, old_auth_key, phc).await?;
    if !old_ok {
        let (name, ip) = (user.username.clone(), ctx.ip.to_string());
        state
            .db
            .run(move |c| {
                db::audit::record(
                    c,
                    &Event::by_user(&name, &ip, "password_change_refused")
                        .with_detail("the current password was wrong"),
                )
            })
            .await?;
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "the current password is wrong",
        ));
    }
    let new_hash = auth_hash::hash_bounded(state, ctx.ip, &new.auth_key).await?;
    let ip = ctx.ip.to_string();
    let ended = state
        .db
        .run(move |c| {
            db::transaction(c, |c| {
                db::users::set_password(c, user.id, &password_columns(&new, &new_hash))?;
                let ended = db::sessions::end_all_for_user(
                    c,
                    user.id,
                    Some(session.session_id),
                    "password changed",
                )?;
                let detail = format!("{} ended", plural(ended, "other session", "other sessions"));
                db::audit::record(
                    c,
                    &Event::by_user(&user.username, &ip, "password_changed").with_detail(&detail),
                )?;
                Ok::<_, db::DbError>(ended)
            })
        })
        .await?;
    tracing::info!(user = %session.username, ended, "password changed");
    Ok(Response::Ok)
}

/// Answers `reset_started` for every username, known or not, in the resend cooldown or
/// not, after the same steps: a queue slot, then one transaction with an audit entry.
/// Only a known account outside the cooldown also gets a new code, mailed to its address
/// after the answer; within the cooldown the code mailed last stays valid.
pub async fn reset_start(
    state: &ServerState,
    ip: IpAddr,
    username: &str,
) -> Result<Response, ApiError> {
    let username = names::normalize_username(username).map_err(ApiError::bad_request)?;
    let slot = codes::mail_slot(&state.mail)?;
    let (ip, config) = (ip.to_string(), state.config.codes.clone());
    let mail = state
        .db
        .run(move |c| db::transaction(c, |c| record_reset_start(c, &config, &username, &ip)))
        .await?;
    if let Some(mail) = mail {
        slot.send(mail);
    }
    Ok(Response::ResetStarted {
        code_ttl_s: state.config.codes.ttl_s,
    })
}

/// The database side of `reset_start`: a new code when one is due, the audit entry in
/// every case, and the mail to queue.
fn record_reset_start(
    c: &mut DbConn,
    config: &CodeConfig,
    name: &str,
    ip: &str,
) -> Result<Option<OutgoingMail>, ApiError> {
    let user = db::users::by_name(c, name)?;
    let (mail, what) = match &user {
        None => (None, "no account of that name: nothing mailed"),
        Some(user)
            if codes::cooldown_left(c, config, codes::PURPOSE_RESET, &user.email)?.is_some() =>
        {
            (
                None,
                "within the resend cooldown: nothing mailed, the last code stays valid",
            )
        }
        Some(user) => {
            let code = codes::issue(c, config, codes::PURPOSE_RESET, &user.username, &user.email)?;
            let mail = codes::code_mail(
                config,
                codes::PURPOSE_RESET,
                &user.username,
                &user.email,
                &code,
            );
            (Some(mail), "password reset code queued for mail")
        }
    };
    db::audit::record(
        c,
        &Event::anonymous(ip, "reset_requested")
            .about(name)
            .with_detail(what),
    )?;
    Ok(mail)
}

/// A reset code opens only the account it was mailed for: same address, and made after
/// the account (a name deleted and registered again does not inherit old codes).
fn check_code_is_for(code: &db::codes::CodeRow, user: &db::users::User) -> Result<(), ApiError> {
    if code.email != user.email || code.created_at < user.created_at {
        return Err(ApiError::forbidden(
            "this reset code was mailed for an earlier account of this name; run \
             `vault reset-password USER` again for a new one",
        ));
    }
    Ok(())
}

/// With a valid reset code (which stays valid), returns the account key sealed under the
/// recovery key, so the client can check its recovery key before committing the reset.
pub async fn reset_recovery(
    state: &ServerState,
    ctx: &ConnCtx,
    username: &str,
    code: &str,
) -> Result<Response, ApiError> {
    let username = names::normalize_username(username).map_err(ApiError::bad_request)?;
    let (input, config, ip) = (
        code.to_string(),
        state.config.codes.clone(),
        ctx.ip.to_string(),
    );
    let sealed = state
        .db
        .run(move |c| {
            let row = codes::check(c, &config, codes::PURPOSE_RESET, &username, &input, &ip)?;
            let user = db::users::by_name(c, &username)?
                .ok_or_else(|| ApiError::forbidden("this account no longer exists"))?;
            check_code_is_for(&row, &user)?;
            Ok::<_, ApiError>(user.account_key_by_recovery)
        })
        .await?;
    Ok(Response::ResetRecovery {
        account_key_by_recovery: ByteBuf::from(sealed),
    })
}

/// Consumes the reset code and installs the new password (and, when discarding, new
/// keys). Every session of the user ends and the account's login throttle is cleared.
pub async fn reset_finish(
    state: &ServerState,
    ctx: &ConnCtx,
    username: &str,
    code: &str,
    reset: ResetMaterial,
) -> Result<Response, ApiError> {
    let username = names::normalize_username(username).map_err(ApiError::bad_request)?;
    let password = match &reset {
        ResetMaterial::KeepKeys { password } => {
            material::check_password(password, &state.config.kdf)?;
            password
        }
        ResetMaterial::DiscardEncryptedData { account } => {
            material::check_account(account, &state.config.kdf)?;
            &account.password
        }
    };
    let new_hash = auth_hash::hash_bounded(state, ctx.ip, &password.auth_key).await?;
    let (input, config, ip) = (
        code.to_string(),
        state.config.codes.clone(),
        ctx.ip.to_string(),
    );
    let (name, client) = (username.clone(), ip.clone());
    let code_row = state
        .db
        .run(move |c| codes::check(c, &config, codes::PURPOSE_RESET, &name, &input, &client))
        .await?;
    state
        .db
        .run(move |c| {
            db::transaction(c, |c| {
                if !db::codes::consume(c, code_row.id)? {
                    return Err(ApiError::forbidden(
                        "that reset code was just used; ask for a new one",
                    ));
                }
                let user = db::users::by_name(c, &username)?
                    .ok_or_else(|| ApiError::forbidden("this account no longer exists"))?;
                check_code_is_for(&code_row, &user)?;
                let (password, how) = match &reset {
                    ResetMaterial::KeepKeys { password } => {
                        (password, "recovery key used: keys kept")
                    }
                    ResetMaterial::DiscardEncryptedData { account } => {
                        db::users::set_keys(
                            c,
                            user.id,
                            &KeyColumns {
                                account_key_by_recovery: &account.account_key_by_recovery,
                                public_key: &account.public_key,
                                private_key_sealed: &account.private_key_sealed,
                            },
                        )?;
                        (
                            &account.password,
                            "no recovery key: fresh keys, old encrypted data discarded",
                        )
                    }
                };
                db::users::set_password(c, user.id, &password_columns(password, &new_hash))?;
                let ended = db::sessions::end_all_for_user(c, user.id, None, "password reset")?;
                db::throttle::clear(c, &throttle::account_subject(&user.username))?;
                let detail = format!("{how}; {} ended", plural(ended, "session", "sessions"));
                db::audit::record(
                    c,
                    &Event::by_user(&user.username, &ip, "password_reset").with_detail(&detail),
                )?;
                Ok(())
            })
        })
        .await?;
    Ok(Response::Ok)
}
