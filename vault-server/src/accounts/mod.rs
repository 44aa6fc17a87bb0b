//! Accounts (docs/SECURITY.md §4, docs/FORMAT.md §1): registration by mailed code, login with
//! throttling, sessions, password change and reset. The server receives only client-made material:
//! an auth key (which it hashes again with Argon2id) and sealed keys it cannot open.

mod attempts;
mod auth_hash;
pub mod change;
mod codes;
mod hash_queue;
pub mod invitations;
mod login;
mod login_gate;
mod material;
mod password;
mod register;
mod sessions;
#[cfg(test)]
mod tests;

pub use auth_hash::{hash_auth_key, verify_auth_key};
pub use hash_queue::HashQueue;
pub use login_gate::LoginGate;
pub use sessions::SESSION_ENDED_BY_ADMIN;

use vault_proto::proto::{ApiError, ErrorCode, Request, Response};

use crate::net::connection::{ConnCtx, SessionCtx};
use crate::state::ServerState;

/// Serves an account request that needs no session ([`crate::router::Route::Open`]).
pub async fn handle_open(
    state: &ServerState,
    ctx: &ConnCtx,
    request: Request,
) -> Result<Response, ApiError> {
    match request {
        Request::Prelogin { username } => login::prelogin(state, &username).await,
        Request::RegisterStart {
            username,
            email,
            invite,
        } => register::start(state, ctx.ip, &username, &email, invite.as_deref()).await,
        Request::RegisterFinish {
            username,
            code,
            account,
        } => register::finish(state, ctx, &username, &code, account).await,
        Request::Login { username, auth_key } => {
            let answer = login::login(state, ctx, &username, auth_key).await;
            crate::telemetry::login(match &answer {
                Ok(_) => "ok",
                Err(e) if matches!(e.code, ErrorCode::Throttled { .. }) => "throttled",
                Err(_) => "failed",
            });
            answer
        }
        Request::Resume { token } => login::resume(state, ctx, token).await,
        Request::ResetStart { username } => password::reset_start(state, ctx.ip, &username).await,
        Request::ResetRecovery { username, code } => {
            password::reset_recovery(state, ctx, &username, &code).await
        }
        Request::ResetFinish {
            username,
            code,
            reset,
        } => password::reset_finish(state, ctx, &username, &code, reset).await,
        other => Err(ApiError::bad_request(format!(
            "{} is not an account request",
            other.kind()
        ))),
    }
}

/// Serves an account request of a checked session
/// ([`crate::router::Area::Account`]).
pub async fn handle_logged_in(
    state: &ServerState,
    ctx: &ConnCtx,
    session: SessionCtx,
    request: Request,
) -> Result<Response, ApiError> {
    match request {
        Request::Logout => login::logout(state, ctx, session).await,
        Request::Whoami => login::whoami(state, session).await,
        Request::ChangePassword { old_auth_key, new } => {
            password::change(state, ctx, session, old_auth_key, new).await
        }
        other => Err(ApiError::bad_request(format!(
            "{} is not an account request",
            other.kind()
        ))),
    }
}

/// Why session `id` may no longer be used (ended by logout, the operator, a lock or a
/// newer login, or gone), or `None` while it is live.
pub async fn session_refusal(state: &ServerState, id: i64) -> Result<Option<ApiError>, ApiError> {
    let row = state
        .db
        .run(move |c| crate::db::sessions::by_id(c, id))
        .await?;
    Ok(match row {
        Some(row) if row.ended_at.is_none() => None,
        Some(row) => Some(ApiError::forbidden(format!(
            "session ended: {}; log in again with `vault login`",
            row.end_reason.unwrap_or_else(|| "ended".into())
        ))),
        None => Some(ApiError::not_logged_in()),
    })
}
