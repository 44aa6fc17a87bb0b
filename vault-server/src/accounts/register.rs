//! Registration in two steps: `start` checks the names and mails a code; `finish` checks
//! the code and creates the account from the client's key material, then logs in.

use vault_core::proto::{ApiError, NewAccount, Response, names};

use super::{auth_hash, codes, material, sessions};
use crate::config::Registration;
use crate::db::{self, audit::Event, now, users::NewUser};
use crate::net::connection::ConnCtx;
use crate::state::ServerState;

const TAKEN: &str = "that username or email address is already registered; choose another, \
                     or run `vault reset-password USER` if it is yours";

pub async fn start(
    state: &ServerState,
    ctx: &ConnCtx,
    username: &str,
    email: &str,
) -> Result<Response, ApiError> {
    if state.config.registration != Registration::Open {
        return Err(ApiError::forbidden(
            "this server does not accept new registrations; ask its operator for an account",
        ));
    }
    let username = names::normalize_username(username).map_err(ApiError::bad_request)?;
    let email = names::normalize_email(email).map_err(ApiError::bad_request)?;
    let (name, addr, ip, config) = (
        username.clone(),
        email.clone(),
        ctx.ip.to_string(),
        state.config.codes.clone(),
    );
    let code = state
        .db
        .run(move |c| {
            if db::users::name_or_email_taken(c, &name, &addr)? {
                return Err(ApiError::conflict(TAKEN));
            }
            if let Some(left) = codes::cooldown_left(c, &config, &addr)? {
                return Err(ApiError::throttled(
                    left,
                    format!("a code was sent to this address moments ago; wait {left} s before asking again"),
                ));
            }
            let code = codes::issue(c, &config, codes::PURPOSE_REGISTER, &name, &addr)?;
            db::audit::record(c, &Event {
                actor: "anonymous",
                event: "registration_started",
                username: Some(&name),
                client_ip: Some(&ip),
                detail: "verification code issued",
            })?;
            Ok(code)
        })
        .await?;
    codes::mail(state, codes::PURPOSE_REGISTER, &username, &email, &code).await?;
    Ok(Response::RegisterStarted {
        kdf: state.config.kdf,
        code_ttl_s: state.config.codes.ttl_s,
    })
}

pub async fn finish(
    state: &ServerState,
    ctx: &ConnCtx,
    username: &str,
    code: &str,
    account: NewAccount,
) -> Result<Response, ApiError> {
    if state.config.registration != Registration::Open {
        return Err(ApiError::forbidden(
            "this server does not accept new registrations",
        ));
    }
    let username = names::normalize_username(username).map_err(ApiError::bad_request)?;
    material::check_account(&account, &state.config.kdf)?;
    let (name, input, config) = (
        username.clone(),
        code.to_string(),
        state.config.codes.clone(),
    );
    let code_row = state
        .db
        .run(move |c| codes::check(c, &config, codes::PURPOSE_REGISTER, &name, &input))
        .await?;

    let auth_hash = auth_hash::hash_bounded(state, ctx.ip, &account.password.auth_key).await?;

    let (ip, single, quota) = (
        ctx.ip.to_string(),
        state.config.single_session,
        state.config.default_quota.0,
    );
    let (user, session, token) = state
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
                    &Event {
                        actor: &format!("user:{}", user.username),
                        event: "registered",
                        username: Some(&user.username),
                        client_ip: Some(&ip),
                        detail: &format!("email {}", user.email),
                    },
                )?;
                Ok::<_, ApiError>(user)
            })?;
            let (session, token) = sessions::open(c, single, &ip, &user)?;
            Ok::<_, ApiError>((user, session, token))
        })
        .await?;
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
