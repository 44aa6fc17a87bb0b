//! Handler-level tests of groups, on the shared [`Fixture`]: a temp SQLite database (or a
//! fresh PostgreSQL one with `VAULT_TEST_POSTGRES_URL`) and a temp `FsBlobStore`, driven
//! through the router (`router::serve_session`) without QUIC. Every call first checks the
//! session the way `router::require_session` does, so a user the operator locked (whose
//! sessions end) is refused like on a connection. Envelopes and sealed bytes are arbitrary
//! bytes: the server never opens them.
//!
//! By subject: who may do what (`access`), members and roles (`membership`), names and
//! what the listings show (`info`), keys and key tasks (`keys`), join codes (`invites`),
//! and a group's files (`files`). What the users do is [`GroupCalls`], here.

mod access;
mod files;
mod info;
mod invites;
mod keys;
mod membership;

use vault_proto::proto::{
    ApiError, EntryInfo, GroupDetails, GroupRole, GroupSummary, KeyTask, MemberInfo, NewEnvelope,
    NsRef, Request, Response, Rotation, SecretBytes,
};
use vault_proto::sizes::sealed_len;

use super::change;
use crate::db::{self, groups};
use crate::files::{download, upload};
use crate::testing::{Fixture, R, sealed_bytes};

/// Everyone the tests need: the roles of group `team`, outsiders, and spare accounts.
const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank",
];

/// A server with [`USERS`], the n-th (from 1) with public key `[n; 24]`.
fn fixture() -> R<Fixture> {
    Fixture::new("groups", USERS)
}

/// An envelope of `generation` for `member`, with bytes that say which slot it fills.
fn env(member: &str, generation: u32) -> NewEnvelope {
    NewEnvelope {
        member: member.into(),
        generation,
        envelope: format!("envelope {member} {generation}")
            .into_bytes()
            .into(),
        signature: format!("signature {member} {generation}")
            .into_bytes()
            .into(),
    }
}

/// A new generation with an envelope for each of `members`.
fn rotation(generation: u32, members: &[&str]) -> Rotation {
    Rotation {
        generation,
        envelopes: members.iter().map(|m| env(m, generation)).collect(),
    }
}

fn group(name: &str) -> NsRef {
    NsRef::Group { name: name.into() }
}

/// What the group tests do: each request as user `who` (through the router, or the upload
/// and download halves the connection runs), and the operator's changes.
trait GroupCalls {
    /// Locks an account as `vault-admin user lock` does: the flag, and every session ends.
    fn lock_user(&self, name: &str) -> R<()>;
    /// The row of group `name`.
    fn group_row(&self, name: &str) -> R<groups::Group>;
    /// Creates group `name`; its id.
    async fn create(&self, who: &str, name: &str) -> R<i64>;
    /// Adds `user` to group `name` with envelopes of generations `0..gens`.
    async fn add(&self, who: &str, name: &str, user: &str, gens: u32)
    -> Result<Response, ApiError>;
    async fn rotate(&self, who: &str, name: &str, r: Rotation) -> Result<Response, ApiError>;
    async fn remove(
        &self,
        who: &str,
        name: &str,
        user: &str,
        r: Option<Rotation>,
    ) -> Result<Response, ApiError>;
    async fn set_role(
        &self,
        who: &str,
        name: &str,
        user: &str,
        role: GroupRole,
    ) -> Result<Response, ApiError>;
    async fn tasks(&self, who: &str) -> R<Vec<KeyTask>>;
    async fn info(&self, who: &str, name: &str) -> Result<GroupDetails, ApiError>;
    async fn members(&self, who: &str, name: &str) -> R<Vec<MemberInfo>>;
    /// `who`'s groups.
    async fn list(&self, who: &str) -> R<Vec<GroupSummary>>;
    /// The generations of `who`'s own envelopes in `name`.
    async fn keys(&self, who: &str, name: &str) -> Result<Vec<u32>, ApiError>;
    /// Opens an upload of a `plain`-byte file; (upload id, generation).
    async fn open(
        &self,
        who: &str,
        name: &str,
        path: &str,
        plain: u64,
    ) -> Result<(i64, u32), ApiError>;
    /// Sends the whole sealed file of an upload of a `plain`-byte file.
    async fn data(&self, who: &str, id: i64, plain: u64) -> Result<Response, ApiError>;
    async fn commit(&self, who: &str, id: i64) -> Result<Response, ApiError>;
    /// Uploads a small file to `@name/path`.
    async fn put(&self, who: &str, name: &str, path: &str) -> Result<EntryInfo, ApiError>;
    /// Downloads `@name/path`.
    async fn get(&self, who: &str, name: &str, path: &str) -> Result<Vec<u8>, ApiError>;
    /// The recursive listing of group `name`'s space (its first page).
    async fn ls(&self, who: &str, name: &str) -> Result<Vec<EntryInfo>, ApiError>;
    /// Creates a join code of group `name`, valid for an hour; its id.
    async fn invite(&self, who: &str, name: &str, auth: &[u8], uses: u32) -> Result<i64, ApiError>;
    async fn join(
        &self,
        who: &str,
        invite_id: i64,
        auth: &[u8],
        envelopes: Vec<NewEnvelope>,
    ) -> Result<Response, ApiError>;
    /// Runs a shared change as `vault-admin` does, in one transaction.
    fn admin<T>(
        &self,
        work: impl FnOnce(&mut db::DbConn) -> Result<T, crate::error::Failure>,
    ) -> Result<T, ApiError>;
    /// `vault-admin group add-member`: a member without envelopes.
    fn admin_add(&self, name: &str, user: &str) -> R<()>;
}

impl GroupCalls for Fixture {
    fn lock_user(&self, name: &str) -> R<()> {
        let mut conn = self.state.db.conn()?;
        let user = db::users::by_name(&mut conn, name)?.ok_or("no such user")?;
        crate::accounts::change::lock(&mut conn, &user)?;
        Ok(())
    }

    fn group_row(&self, name: &str) -> R<groups::Group> {
        let mut conn = self.state.db.conn()?;
        Ok(groups::by_name(&mut conn, name)?.ok_or("no such group")?)
    }

    async fn create(&self, who: &str, name: &str) -> R<i64> {
        match self
            .ok(who, Request::GroupCreate { name: name.into() })
            .await?
        {
            Response::GroupCreated { group_id, .. } => Ok(group_id),
            other => Err(format!("unexpected {other:?}").into()),
        }
    }

    async fn add(
        &self,
        who: &str,
        name: &str,
        user: &str,
        gens: u32,
    ) -> Result<Response, ApiError> {
        self.call(
            who,
            Request::GroupAdd {
                group: name.into(),
                username: user.into(),
                envelopes: (0..gens).map(|g| env(user, g)).collect(),
            },
        )
        .await
    }

    async fn rotate(&self, who: &str, name: &str, r: Rotation) -> Result<Response, ApiError> {
        self.call(
            who,
            Request::GroupRotate {
                group: name.into(),
                rotation: r,
            },
        )
        .await
    }

    async fn remove(
        &self,
        who: &str,
        name: &str,
        user: &str,
        r: Option<Rotation>,
    ) -> Result<Response, ApiError> {
        self.call(
            who,
            Request::GroupRemove {
                group: name.into(),
                username: user.into(),
                rotation: r,
            },
        )
        .await
    }

    async fn set_role(
        &self,
        who: &str,
        name: &str,
        user: &str,
        role: GroupRole,
    ) -> Result<Response, ApiError> {
        self.call(
            who,
            Request::GroupSetRole {
                group: name.into(),
                username: user.into(),
                role,
            },
        )
        .await
    }

    async fn tasks(&self, who: &str) -> R<Vec<KeyTask>> {
        match self.ok(who, Request::KeyTasks).await? {
            Response::KeyTasks { tasks } => Ok(tasks),
            other => Err(format!("unexpected {other:?}").into()),
        }
    }

    async fn info(&self, who: &str, name: &str) -> Result<GroupDetails, ApiError> {
        match self
            .call(who, Request::GroupInfo { group: name.into() })
            .await?
        {
            Response::GroupInfo(d) => Ok(d),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn members(&self, who: &str, name: &str) -> R<Vec<MemberInfo>> {
        match self
            .ok(who, Request::GroupMembers { group: name.into() })
            .await?
        {
            Response::GroupMembers { members, .. } => Ok(members),
            other => Err(format!("unexpected {other:?}").into()),
        }
    }

    async fn list(&self, who: &str) -> R<Vec<GroupSummary>> {
        match self.ok(who, Request::GroupList).await? {
            Response::Groups { groups } => Ok(groups),
            other => Err(format!("unexpected {other:?}").into()),
        }
    }

    async fn keys(&self, who: &str, name: &str) -> Result<Vec<u32>, ApiError> {
        match self
            .call(who, Request::GroupKeys { group: name.into() })
            .await?
        {
            Response::GroupKeys { envelopes, .. } => {
                Ok(envelopes.iter().map(|e| e.generation).collect())
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn open(
        &self,
        who: &str,
        name: &str,
        path: &str,
        plain: u64,
    ) -> Result<(i64, u32), ApiError> {
        match self
            .call(
                who,
                Request::UploadOpen {
                    ns: group(name),
                    path: path.into(),
                    sealed_size: sealed_len(plain),
                    chunk_bytes: 0,
                    batch: None,
                    if_current: None,
                },
            )
            .await?
        {
            Response::UploadOpened {
                upload_id,
                generation,
                ..
            } => Ok((upload_id, generation)),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn data(&self, who: &str, id: i64, plain: u64) -> Result<Response, ApiError> {
        let caller = self.live(who).await?;
        let bytes = sealed_bytes(plain, 3);
        upload::receive(&self.state, &caller.session, id, 0, &mut bytes.as_slice()).await
    }

    async fn commit(&self, who: &str, id: i64) -> Result<Response, ApiError> {
        self.call(
            who,
            Request::UploadCommit {
                upload_id: id,
                wrapped_key: vec![7; 61].into(),
                sealed_meta: vec![8; 86].into(),
                chunks: Vec::new(),
            },
        )
        .await
    }

    async fn put(&self, who: &str, name: &str, path: &str) -> Result<EntryInfo, ApiError> {
        let (id, _) = self.open(who, name, path, 100).await?;
        self.data(who, id, 100).await?;
        match self.commit(who, id).await? {
            Response::Entry(e) => Ok(e),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn get(&self, who: &str, name: &str, path: &str) -> Result<Vec<u8>, ApiError> {
        let caller = self.live(who).await?;
        let (_, body) = download::prepare(
            &self.state,
            &caller.session,
            &group(name),
            path.into(),
            None,
            0,
        )
        .await?;
        let mut out = Vec::new();
        download::send(body, &mut out)
            .await
            .map_err(|e| ApiError::internal_with(e.to_string()))?;
        Ok(out)
    }

    async fn ls(&self, who: &str, name: &str) -> Result<Vec<EntryInfo>, ApiError> {
        match self
            .call(
                who,
                Request::List {
                    ns: group(name),
                    dir: String::new(),
                    recursive: true,
                    after: None,
                    before: None,
                    names_only: false,
                },
            )
            .await?
        {
            Response::Listing { entries, .. } => Ok(entries),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn invite(&self, who: &str, name: &str, auth: &[u8], uses: u32) -> Result<i64, ApiError> {
        match self
            .call(
                who,
                Request::GroupInviteCreate {
                    group: name.into(),
                    auth: SecretBytes::new(auth.to_vec()),
                    sealed_keys: b"sealed group keys".to_vec().into(),
                    uses,
                    expires_s: 3600,
                },
            )
            .await?
        {
            Response::InviteCreated { invite_id, .. } => Ok(invite_id),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn join(
        &self,
        who: &str,
        invite_id: i64,
        auth: &[u8],
        envelopes: Vec<NewEnvelope>,
    ) -> Result<Response, ApiError> {
        self.call(
            who,
            Request::GroupJoin {
                invite_id,
                auth: SecretBytes::new(auth.to_vec()),
                envelopes,
            },
        )
        .await
    }

    fn admin<T>(
        &self,
        work: impl FnOnce(&mut db::DbConn) -> Result<T, crate::error::Failure>,
    ) -> Result<T, ApiError> {
        let mut conn = self
            .state
            .db
            .conn()
            .map_err(|e| ApiError::internal_with(e.to_string()))?;
        Ok(db::transaction(&mut conn, work)?)
    }

    fn admin_add(&self, name: &str, user: &str) -> R<()> {
        let mut conn = self.state.db.conn()?;
        let account = db::users::by_name(&mut conn, user)?.ok_or("no user")?;
        let g = self.group_row(name)?;
        self.admin(|c| {
            let g = groups::lock(c, g.id)?.ok_or_else(ApiError::internal)?;
            change::add_member(c, &g, &account, GroupRole::Member, db::now())
        })?;
        Ok(())
    }
}
