//! Opening and ending sessions. A token is 32 random bytes that only the client keeps;
//! the database holds its SHA-256.

use aws_lc_rs::digest;
use vault_proto::proto::{AccountKeys, ApiError, ByteBuf, LoggedIn, SecretBytes};
use vault_proto::units::plural;

use crate::db::{self, DbConn, audit::Event, users::User};
use crate::net::connection::{ConnCtx, SessionCtx};
use crate::state::ServerState;

/// The end reason written when the operator ends a session.
pub const SESSION_ENDED_BY_ADMIN: &str = "ended by the operator";
const ENDED_BY_NEWER_LOGIN: &str =
    "you logged in elsewhere and this server allows one session per user";

pub fn token_hash(token: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, token).as_ref().to_vec()
}

/// The sealed keys a client needs to unlock the account.
pub fn account_keys(user: &User) -> AccountKeys {
    AccountKeys {
        username: user.username.clone(),
        account_key_by_kek: ByteBuf::from(user.account_key_by_kek.clone()),
        public_key: ByteBuf::from(user.public_key.clone()),
        private_key_sealed: ByteBuf::from(user.private_key_sealed.clone()),
    }
}

/// Opens a session for `user` (ending older ones under `single_session`), records it in
/// the audit log, and returns the token for the client.
pub fn open(
    conn: &mut DbConn,
    single_session: bool,
    ip: &str,
    user: &User,
) -> Result<(SessionCtx, SecretBytes), ApiError> {
    let mut token = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut token)
        .map_err(|_| crate::error::internal("randomness", "rand::fill failed"))?;
    let row = db::transaction(conn, |conn| {
        let row = db::sessions::insert(conn, user.id, &token_hash(&token), ip)?;
        if single_session {
            let ended =
                db::sessions::end_all_for_user(conn, user.id, Some(row.id), ENDED_BY_NEWER_LOGIN)?;
            if ended > 0 {
                let detail = format!(
                    "{}: newer login with single_session",
                    plural(ended, "older session", "older sessions")
                );
                db::audit::record(
                    conn,
                    &Event::by_server("session_ended")
                        .about(&user.username)
                        .from_ip(ip)
                        .with_detail(&detail),
                )?;
            }
        }
        db::audit::record(
            conn,
            &Event::by_user(&user.username, ip, "login")
                .with_detail(&format!("session {}", row.id)),
        )?;
        Ok::<_, db::DbError>(row)
    })?;
    let session = SessionCtx {
        session_id: row.id,
        user_id: user.id,
        username: user.username.clone(),
    };
    Ok((session, SecretBytes::new(token)))
}

/// Binds a new session to the connection and builds the `LoggedIn` answer, with the
/// number of group-key tasks the client could do ([`crate::groups::key_task_count`]).
pub fn bind(
    state: &ServerState,
    ctx: &ConnCtx,
    user: &User,
    session: SessionCtx,
    token: Option<SecretBytes>,
    key_tasks: u32,
) -> LoggedIn {
    ctx.set_session(state, Some(session));
    LoggedIn {
        token,
        keys: account_keys(user),
        key_tasks,
    }
}
