//! `prelogin`, `login` (throttled per account and per address, atomically under
//! concurrency: `attempts`), `resume`, `logout`, `whoami`. A wrong username and a wrong
//! password get the same answer, in the same time.

use vault_proto::kdf::KdfParams;
use vault_proto::proto::{AccountInfo, ApiError, ByteBuf, ErrorCode, Response, SecretBytes, names};

use super::{attempts, auth_hash, sessions};
use crate::db::{self, audit::Event, now};
use crate::net::address;
use crate::net::connection::{ConnCtx, SessionCtx};
use crate::state::ServerState;
use crate::throttle::Refusal;

const INVALID: &str = "invalid username or password";

fn invalid() -> ApiError {
    ApiError::new(ErrorCode::InvalidCredentials, INVALID)
}

/// The salt and KDF parameters of `username`; for an unknown name, a salt derived from
/// a server secret and the name (stable, so repeated asks reveal nothing) and the
/// default parameters.
pub async fn prelogin(state: &ServerState, username: &str) -> Result<Response, ApiError> {
    let username = names::normalize_username(username).map_err(ApiError::bad_request)?;
    let name = username.clone();
    let user = state.db.run(move |c| db::users::by_name(c, &name)).await?;
    Ok(match user {
        Some(u) => Response::Prelogin {
            salt: ByteBuf::from(u.kdf_salt.clone()),
            kdf: KdfParams {
                memory_kib: u.kdf_memory_kib as u32,
                iterations: u.kdf_iterations as u32,
                parallelism: u.kdf_parallelism as u32,
            },
        },
        None => {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &state.fake_salt_key);
            let tag = aws_lc_rs::hmac::sign(&key, username.as_bytes());
            Response::Prelogin {
                salt: ByteBuf::from(tag.as_ref()[..16].to_vec()),
                kdf: state.config.kdf,
            }
        }
    })
}

/// Logs in. At most `throttle.logins_in_flight_per_ip` logins per address are checked at
/// once on this instance (more are answered "busy" at once); each is admitted and settled
/// in the database as one atomic step per subject (`attempts`).
pub async fn login(
    state: &ServerState,
    ctx: &ConnCtx,
    username: &str,
    auth_key: SecretBytes,
) -> Result<Response, ApiError> {
    let Ok(username) = names::normalize_username(username) else {
        return Err(invalid());
    };
    let Some(_pass) = state.login_gate.enter(address::client_key(ctx.ip)) else {
        return Err(attempts::refusal_error(Refusal::Crowded));
    };
    let login = attempts::Login::new(&username, &ctx.ip);
    let throttle_config = state.config.throttle.clone();

    // Refused while locked, without checking the password: attempts do not extend a lock.
    let (l, config) = (login.clone(), throttle_config.clone());
    let admitted = state
        .db
        .run(move |c| attempts::admit(c, &config, &l, now()))
        .await?;

    let phc = admitted
        .user
        .as_ref()
        .map_or_else(|| state.dummy_auth_hash.clone(), |u| u.auth_hash.clone());
    let checked = auth_hash::verify_bounded(state, ctx.ip, auth_key, phc).await;
    let ok = match checked {
        Ok(ok) => ok && admitted.user.is_some(),
        Err(e) => {
            state
                .db
                .run(move |c| attempts::abandon(c, &admitted))
                .await?;
            return Err(e);
        }
    };

    let single = state.config.single_session;
    let result = state
        .db
        .run(move |c| {
            let at = now();
            if !ok {
                attempts::settle_failure(c, &throttle_config, &login, &admitted, at)?;
                return Ok(Err(invalid()));
            }
            db::transaction(c, |c| {
                if let Err(refused) = attempts::settle_success(c, &login, &admitted, at)? {
                    return Ok(Err(refused));
                }
                let Some(user) = admitted.user.as_ref() else {
                    return Ok(Err(invalid()));
                };
                if user.locked {
                    return Ok(Err(ApiError::forbidden(
                        "this account is locked by the operator; contact them",
                    )));
                }
                let (session, token) = sessions::open(c, single, &login.client_ip, user)?;
                let tasks = crate::groups::key_task_count(c, user.id)?;
                Ok::<_, ApiError>(Ok((user.clone(), session, token, tasks)))
            })
        })
        .await?;
    let (user, session, token, tasks) = result?;
    tracing::info!(user = %user.username, session = session.session_id, "logged in");
    Ok(Response::LoggedIn(sessions::bind(
        state,
        ctx,
        &user,
        session,
        Some(token),
        tasks,
    )))
}

/// A session's `last_seen_at` is rewritten at most this often (seconds). A write makes every
/// pooled SQLite connection drop its page cache, and one `vault` command is one resume: a
/// burst of short commands would otherwise write once each.
const TOUCH_EVERY_S: i64 = 60;

pub async fn resume(
    state: &ServerState,
    ctx: &ConnCtx,
    token: SecretBytes,
) -> Result<Response, ApiError> {
    let hash = sessions::token_hash(token.dangerously_leak_secret());
    let idle_limit = i64::from(state.config.sessions.idle_expiry_days) * 86_400;
    let (user, session, tasks) = state
        .db
        .run(move |c| {
            let row = db::sessions::by_token_hash(c, &hash)?
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidCredentials, "unknown session; log in again with `vault login USER`"))?;
            if let Some(reason) = row.ended_at.map(|_| row.end_reason.clone().unwrap_or_default()) {
                return Err(ApiError::forbidden(format!("session ended: {reason}; log in again with `vault login USER`")));
            }
            let at = now();
            if at - row.last_seen_at > idle_limit {
                db::sessions::end(c, row.id, "expired after 30 days without use")?;
                return Err(ApiError::forbidden("session expired after 30 days without use; log in again with `vault login USER`"));
            }
            let user = db::users::by_id(c, row.user_id)?.ok_or_else(|| ApiError::forbidden("this account no longer exists"))?;
            if user.locked {
                return Err(ApiError::forbidden("this account is locked by the operator; contact them"));
            }
            if at - row.last_seen_at >= TOUCH_EVERY_S {
                db::sessions::touch(c, row.id, at)?;
            }
            let session = SessionCtx { session_id: row.id, user_id: user.id, username: user.username.clone() };
            let tasks = crate::groups::key_task_count(c, user.id)?;
            Ok((user, session, tasks))
        })
        .await?;
    Ok(Response::LoggedIn(sessions::bind(
        state, ctx, &user, session, None, tasks,
    )))
}

pub async fn logout(
    state: &ServerState,
    ctx: &ConnCtx,
    session: SessionCtx,
) -> Result<Response, ApiError> {
    let ip = ctx.ip.to_string();
    state
        .db
        .run(move |c| {
            db::sessions::end(c, session.session_id, "logged out")?;
            let detail = format!("session {} logged out", session.session_id);
            db::audit::record(
                c,
                &Event::by_user(&session.username, &ip, "session_ended").with_detail(&detail),
            )
        })
        .await?;
    ctx.set_session(state, None);
    Ok(Response::Ok)
}

pub async fn whoami(state: &ServerState, session: SessionCtx) -> Result<Response, ApiError> {
    let info = state
        .db
        .run(move |c| {
            let user = db::users::by_id(c, session.user_id)?
                .ok_or_else(|| ApiError::forbidden("this account no longer exists"))?;
            let sessions = db::sessions::live_for_user(c, user.id)?.len() as u64;
            Ok::<_, ApiError>(AccountInfo {
                username: user.username,
                email: user.email,
                quota_bytes: user.quota_bytes.max(0) as u64,
                used_bytes: crate::files::personal_used_bytes(c, user.id)?,
                created_at: user.created_at,
                sessions,
            })
        })
        .await?;
    Ok(Response::Whoami(info))
}
