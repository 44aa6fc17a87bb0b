//! Groups (docs/PROTOCOL.md §6.3, docs/FORMAT.md §8): shared spaces whose files are readable only
//! with the group key. The server stores who is a member in which role, and the envelopes that
//! carry each generation `GK_g` of the key to each member; clients make and open envelopes, the
//! server never sees a group key.
//!
//! - [`access`]: group names, membership and the role rules (who may do what);
//! - [`envelopes`]: checks of the envelopes a request carries (one per member and
//!   generation, as the request needs) and storing them with their signer;
//! - [`tasks`]: the key work a member's client can do for the others ([`KeyTask`]);
//! - [`change`]: the changes both the server's requests and `vault-admin group` make
//!   (create, add, remove, hand over, delete, and a deleted account's memberships);
//! - [`files`]: what the file requests ask of a group (its namespace, the generation an
//!   upload uses, whether an upload may still commit);
//! - [`view`]: a group as the listings show it (members, who waits for the key, space);
//! - `manage`, `keys`, `invites`: the request handlers.
//!
//! Every change runs in one transaction that starts by locking the group
//! ([`crate::db::groups::lock`]) and is written to the audit log with the user as actor.
//!
//! [`KeyTask`]: vault_proto::proto::KeyTask

pub mod access;
pub mod change;
pub mod envelopes;
pub mod files;
mod invites;
mod keys;
mod manage;
pub mod tasks;
pub mod view;

pub use tasks::key_task_count;

use vault_proto::proto::{ApiError, Request, Response};

use crate::db::{self, DbConn, audit::Event};
use crate::error::Failure;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

/// Who sends a request: the checked session and the address it came from (for the audit
/// log).
#[derive(Clone, Debug)]
pub struct Caller {
    pub session: SessionCtx,
    pub ip: String,
}

impl Caller {
    pub fn user_id(&self) -> i64 {
        self.session.user_id
    }

    pub fn username(&self) -> &str {
        &self.session.username
    }

    /// Writes a group change to the audit log with the caller as actor; `username` is the
    /// account the change is about (the caller's own when `None`).
    fn audit(
        &self,
        conn: &mut DbConn,
        event: &str,
        username: Option<&str>,
        detail: &str,
    ) -> Result<(), Failure> {
        db::audit::record(
            conn,
            &Event::by_user(self.username(), &self.ip, event)
                .about(username.unwrap_or(self.username()))
                .with_detail(detail),
        )?;
        Ok(())
    }
}

/// Serves a group or key request for `caller` (whose session is already checked).
pub async fn dispatch(
    state: &ServerState,
    caller: &Caller,
    request: Request,
) -> Result<Response, ApiError> {
    match request {
        Request::UserKey { username } => keys::user_key(state, &username).await,
        Request::GroupCreate { name } => manage::create(state, caller, &name).await,
        Request::GroupList => manage::list(state, caller).await,
        Request::GroupInfo { group } => manage::info(state, caller, &group).await,
        Request::GroupMembers { group } => manage::members(state, caller, &group).await,
        Request::GroupKeys { group } => keys::group_keys(state, caller, &group).await,
        Request::GroupInviteCreate {
            group,
            auth,
            sealed_keys,
            uses,
            expires_s,
        } => {
            let invite = invites::NewCode {
                auth,
                sealed_keys: sealed_keys.into_vec(),
                uses,
                expires_s,
            };
            invites::create(state, caller, &group, invite).await
        }
        Request::GroupInviteOpen { invite_id, auth } => {
            invites::open(state, caller, invite_id, auth).await
        }
        Request::GroupJoin {
            invite_id,
            auth,
            envelopes,
        } => invites::join(state, caller, invite_id, auth, envelopes).await,
        Request::GroupAdd {
            group,
            username,
            envelopes,
        } => manage::add(state, caller, &group, &username, envelopes).await,
        Request::GroupRemove {
            group,
            username,
            rotation,
        } => manage::remove(state, caller, &group, Some(&username), rotation).await,
        Request::GroupLeave { group, rotation } => {
            manage::remove(state, caller, &group, None, rotation).await
        }
        Request::GroupSetRole {
            group,
            username,
            role,
        } => manage::set_role(state, caller, &group, &username, role).await,
        Request::GroupRename { group, new_name } => {
            manage::rename(state, caller, &group, &new_name).await
        }
        Request::GroupDelete { group } => manage::delete(state, caller, &group).await,
        Request::GroupRotate { group, rotation } => {
            keys::rotate(state, caller, &group, rotation).await
        }
        Request::GroupPutEnvelopes { group, envelopes } => {
            keys::put_envelopes(state, caller, &group, envelopes).await
        }
        Request::KeyTasks => keys::key_tasks(state, caller).await,
        _ => Err(ApiError::bad_request("not a group request")),
    }
}

/// Runs `work` in one transaction (which starts by locking the group it changes).
async fn write<T, F>(state: &ServerState, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn) -> Result<T, Failure> + Send + 'static,
{
    Ok(state.db.run(move |c| db::transaction(c, work)).await?)
}

/// Runs read-only `work` on a pooled connection.
async fn read<T, F>(state: &ServerState, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn) -> Result<T, Failure> + Send + 'static,
{
    Ok(state.db.run(work).await?)
}

#[cfg(test)]
mod tests;
