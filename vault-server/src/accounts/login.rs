//! `prelogin`, `login` (throttled per account and per address), `resume`, `logout`,
//! `whoami`. A wrong username and a wrong password get the same answer, in the same time.

use vault_core::crypto::kdf::KdfParams;
use vault_core::proto::{AccountInfo, ApiError, ByteBuf, ErrorCode, Response, SecretBytes, names};

use super::{auth_hash, sessions};
use crate::db::{self, audit::Event, now};
use crate::net::connection::{ConnCtx, SessionCtx};
use crate::state::ServerState;
use crate::throttle::{self, Policy};

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

pub async fn login(
    state: &ServerState,
    ctx: &ConnCtx,
    username: &str,
    auth_key: SecretBytes,
) -> Result<Response, ApiError> {
    let Ok(username) = names::normalize_username(username) else {
        return Err(invalid());
    };
    let ip = ctx.ip.to_string();
    let (user_subject, ip_subject) = (
        throttle::account_subject(&username),
        throttle::ip_subject(&ctx.ip),
    );

    // Refuse while locked, without checking the password: attempts do not extend a lock.
    let (name, us, is) = (username.clone(), user_subject.clone(), ip_subject.clone());
    let user = state
        .db
        .run(move |c| {
            let at = now();
            let wait = [db::throttle::get(c, &us)?, db::throttle::get(c, &is)?]
                .iter()
                .filter_map(|row| throttle::retry_after(row.as_ref(), at))
                .max();
            if let Some(wait) = wait {
                return Err(ApiError::throttled(
                    wait,
                    format!("too many failed logins; try again in {wait} s"),
                ));
            }
            Ok(db::users::by_name(c, &name)?)
        })
        .await?;

    let phc = user
        .as_ref()
        .map_or_else(|| state.dummy_auth_hash.clone(), |u| u.auth_hash.clone());
    let ok = auth_hash::verify_bounded(state, auth_key, phc).await? && user.is_some();

    let throttle_config = state.config.throttle.clone();
    let single = state.config.single_session;
    let result = state
        .db
        .run(move |c| {
            let at = now();
            let Some(user) = user.filter(|_| ok) else {
                let account = Policy::for_accounts(&throttle_config).after_failure(
                    &user_subject,
                    db::throttle::get(c, &user_subject)?,
                    at,
                );
                let address = Policy::for_addresses(&throttle_config).after_failure(
                    &ip_subject,
                    db::throttle::get(c, &ip_subject)?,
                    at,
                );
                db::throttle::put(c, &account)?;
                db::throttle::put(c, &address)?;
                db::audit::record(
                    c,
                    &Event {
                        actor: "anonymous",
                        event: "login_failed",
                        username: Some(&username),
                        client_ip: Some(&ip),
                        detail: &format!("failure {} in a row", account.failures),
                    },
                )?;
                for row in [&account, &address]
                    .into_iter()
                    .filter(|r| r.locked_until > at)
                {
                    db::audit::record(
                        c,
                        &Event {
                            actor: "server",
                            event: "lockout",
                            username: Some(&username),
                            client_ip: Some(&ip),
                            detail: &format!(
                                "{} locked for {} s after {} failures",
                                row.subject,
                                row.locked_until - at,
                                row.failures
                            ),
                        },
                    )?;
                }
                return Ok(Err(invalid()));
            };
            db::throttle::clear(c, &user_subject)?;
            if user.locked {
                return Ok(Err(ApiError::forbidden(
                    "this account is locked by the operator; contact them",
                )));
            }
            let (session, token) = sessions::open(c, single, &ip, &user)?;
            let tasks = crate::groups::key_task_count(c, user.id)?;
            Ok::<_, ApiError>(Ok((user, session, token, tasks)))
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
            db::audit::record(
                c,
                &Event {
                    actor: &format!("user:{}", session.username),
                    event: "session_ended",
                    username: Some(&session.username),
                    client_ip: Some(&ip),
                    detail: &format!("session {} logged out", session.session_id),
                },
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
