//! Handler-level tests of groups: a temp SQLite database (or a fresh PostgreSQL one with
//! `VAULT_TEST_POSTGRES_URL`) and a temp `FsBlobStore`, driven through the router
//! (`router::serve_session`) without QUIC. Every call first checks the session the way
//! `router::require_session` does, so a user the operator locked (whose sessions end) is refused
//! like on a connection. Envelopes and sealed bytes are arbitrary bytes: the server never
//! opens them.

use std::collections::HashMap;
use std::sync::Arc;

use diesel::prelude::*;
use vault_proto::proto::groups::{MAX_GROUP_MEMBERS, MAX_INVITE_TTL_S, MAX_INVITE_USES};
use vault_proto::proto::{
    ApiError, BatchResult, EntryInfo, ErrorCode, GroupDetails, GroupRole, GroupSummary, KeyTask,
    MemberInfo, NewEnvelope, NsRef, OpenFile, PutFile, Request, Response, Rotation, SecretBytes,
};
use vault_proto::sizes::sealed_len;

use super::{Caller, change};
use crate::accounts::session_refusal;
use crate::db::schema::{deleted_blobs, group_envelopes, group_invites, namespaces};
use crate::db::{self, audit, groups};
use crate::files::{download, upload};
use crate::state::ServerState;

use crate::testing::{self, R};

/// Everyone the tests need: the roles of group `team`, outsiders, and spare accounts.
const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank",
];

struct Fixture {
    _dir: tempfile::TempDir,
    state: ServerState,
    users: HashMap<String, Caller>,
}

fn fixture() -> R<Fixture> {
    let dir = tempfile::tempdir()?;
    let state = testing::state(&dir, "groups", |_| {}, |s| Arc::new(s))?;
    let mut f = Fixture {
        _dir: dir,
        state,
        users: HashMap::new(),
    };
    for (i, name) in USERS.iter().enumerate() {
        f.add_user(name, i as u8 + 1)?;
    }
    Ok(f)
}

/// Arbitrary bytes of the sealed length of a `plain`-byte file.
fn sealed_bytes(plain: u64, seed: u8) -> Vec<u8> {
    (0..sealed_len(plain))
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
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

fn code<T: std::fmt::Debug>(r: Result<T, ApiError>) -> ErrorCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code,
    }
}

fn err<T: std::fmt::Debug>(r: Result<T, ApiError>) -> ApiError {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

impl Fixture {
    fn add_user(&mut self, name: &str, seed: u8) -> R<()> {
        let mut conn = self.state.db.conn()?;
        let session = testing::add_user_with_session(&mut conn, name, &[seed; 24], 100 << 20)?;
        self.users.insert(
            name.to_owned(),
            Caller {
                session,
                ip: "127.0.0.1".into(),
            },
        );
        Ok(())
    }

    fn who(&self, name: &str) -> &Caller {
        self.users
            .get(name)
            .unwrap_or_else(|| panic!("no test user {name}"))
    }

    fn id(&self, name: &str) -> i64 {
        self.who(name).user_id()
    }

    /// Refuses what `router::require_session` refuses (an ended session).
    async fn session(&self, who: &str) -> Result<&Caller, ApiError> {
        let caller = self.who(who);
        match session_refusal(&self.state, caller.session.session_id).await? {
            None => Ok(caller),
            Some(refusal) => Err(refusal),
        }
    }

    /// A one-frame request of `who`, through the router.
    async fn call(&self, who: &str, request: Request) -> Result<Response, ApiError> {
        let caller = self.session(who).await?;
        crate::router::serve_session(&self.state, caller, request).await
    }

    async fn ok(&self, who: &str, request: Request) -> R<Response> {
        Ok(self.call(who, request).await?)
    }

    /// Locks an account as `vault-admin user lock` does: the flag, and every session ends.
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

    /// The generations of `who`'s own envelopes in `name`.
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

    /// Opens an upload of a `plain`-byte file; (upload id, generation).
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
        let caller = self.session(who).await?;
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
            },
        )
        .await
    }

    /// Uploads a small file to `@name/path`.
    async fn put(&self, who: &str, name: &str, path: &str) -> Result<EntryInfo, ApiError> {
        let (id, _) = self.open(who, name, path, 100).await?;
        self.data(who, id, 100).await?;
        match self.commit(who, id).await? {
            Response::Entry(e) => Ok(e),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn get(&self, who: &str, name: &str, path: &str) -> Result<Vec<u8>, ApiError> {
        let caller = self.session(who).await?;
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

    /// Runs a shared change as `vault-admin` does, in one transaction.
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

    /// `vault-admin group add-member`: a member without envelopes.
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

/// Group `team`: alice owns it, bob manages, carol is a member, erin was removed (with a
/// rotation to generation 1), gina is a member whose account the operator locked; frank
/// owns group `other`; dave is in no group. alice stored the file `aaaa`. Each actor has
/// spare accounts in `team` for the cells that change membership: `t-ACTOR` (a member
/// to remove) and `r-ACTOR` (a member to promote), and `n-ACTOR` (not yet a member).
async fn world() -> R<Fixture> {
    let mut f = fixture()?;
    let actors = ["alice", "bob", "carol", "dave", "erin", "frank", "gina"];
    let mut seed = 100;
    for actor in actors {
        for prefix in ["t", "r", "n"] {
            seed += 1;
            f.add_user(&format!("{prefix}-{actor}"), seed)?;
        }
    }
    f.create("alice", "team").await?;
    f.rotate("alice", "team", rotation(0, &["alice"])).await?;
    for user in ["bob", "carol", "erin", "gina"] {
        f.add("alice", "team", user, 1).await?;
    }
    f.set_role("alice", "team", "bob", GroupRole::Manager)
        .await?;
    let spares: Vec<String> = actors
        .iter()
        .flat_map(|a| [format!("t-{a}"), format!("r-{a}")])
        .collect();
    for spare in &spares {
        f.add("alice", "team", spare, 1).await?;
    }
    let mut stay = vec!["alice", "bob", "carol", "gina"];
    stay.extend(spares.iter().map(String::as_str));
    f.remove("alice", "team", "erin", Some(rotation(1, &stay)))
        .await?;
    f.put("alice", "team", "aaaa").await?;
    f.create("frank", "other").await?;
    f.rotate("frank", "other", rotation(0, &["frank"])).await?;
    f.lock_user("gina")?;
    Ok(f)
}

/// What each cell of the authorization table does to group `team`.
#[derive(Clone, Copy, Debug)]
enum Op {
    List,
    Download,
    Upload,
    KeyFetch,
    Info,
    Members,
    Add,
    Remove,
    Role,
    Rename,
    Invite,
    Delete,
}

impl Op {
    async fn run(self, f: &Fixture, actor: &str) -> Result<(), ApiError> {
        let team = || "team".to_string();
        match self {
            Op::List => f.ls(actor, "team").await.map(drop),
            Op::Download => f.get(actor, "team", "aaaa").await.map(drop),
            Op::Upload => f.put(actor, "team", &format!("up{actor}")).await.map(drop),
            Op::KeyFetch => f.keys(actor, "team").await.map(drop),
            Op::Info => f.info(actor, "team").await.map(drop),
            Op::Members => f
                .call(actor, Request::GroupMembers { group: team() })
                .await
                .map(drop),
            Op::Add => f
                .add(actor, "team", &format!("n-{actor}"), 2)
                .await
                .map(drop),
            Op::Remove => f
                .remove(actor, "team", &format!("t-{actor}"), None)
                .await
                .map(drop),
            Op::Role => f
                .set_role(actor, "team", &format!("r-{actor}"), GroupRole::Manager)
                .await
                .map(drop),
            Op::Rename => {
                f.call(
                    actor,
                    Request::GroupRename {
                        group: team(),
                        new_name: "crew".into(),
                    },
                )
                .await?;
                f.call(
                    actor,
                    Request::GroupRename {
                        group: "crew".into(),
                        new_name: team(),
                    },
                )
                .await
                .map(drop)
            }
            Op::Invite => f.invite(actor, "team", &[9; 32], 1).await.map(drop),
            Op::Delete => f
                .call(actor, Request::GroupDelete { group: team() })
                .await
                .map(drop),
        }
    }
}

#[tokio::test]
async fn every_cell_of_the_authorization_table() -> R<()> {
    use ErrorCode::Forbidden;
    let f = world().await?;
    let read = [
        Op::List,
        Op::Download,
        Op::Upload,
        Op::KeyFetch,
        Op::Info,
        Op::Members,
    ];
    let manage = [Op::Add, Op::Remove, Op::Role, Op::Rename, Op::Invite];
    // (actor, what the actor is, may read, may manage); only the owner may delete, which
    // is tried last.
    let actors = [
        ("alice", "owner", true, true),
        ("bob", "manager", true, true),
        ("carol", "member", true, false),
        ("dave", "non-member", false, false),
        ("erin", "removed member", false, false),
        ("frank", "member of another group", false, false),
        ("gina", "locked user", false, false),
    ];
    let mut wrong = Vec::new();
    for (actor, what, reads, manages) in actors {
        let cells = read
            .iter()
            .map(|op| (*op, reads))
            .chain(manage.iter().map(|op| (*op, manages)))
            .chain((actor != "alice").then_some((Op::Delete, false)));
        for (op, allowed) in cells {
            let result = op.run(&f, actor).await;
            let fine = match (&result, allowed) {
                (Ok(()), true) => true,
                (Err(e), false) => e.code == Forbidden,
                _ => false,
            };
            if !fine {
                wrong.push(format!("{actor} ({what}) × {op:?}: {result:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "cells answered wrongly:\n{}",
        wrong.join("\n")
    );

    // The refusals say why.
    let e = err(f.ls("dave", "team").await);
    assert!(e.message.contains("not a member of group team"), "{e}");
    let e = err(f.keys("erin", "team").await);
    assert!(e.message.contains("not a member of group team"), "{e}");
    let e = err(f.get("frank", "team", "aaaa").await);
    assert!(e.message.contains("not a member of group team"), "{e}");
    let e = err(f.ls("gina", "team").await);
    assert!(e.message.contains("session ended"), "{e}");
    let e = err(f.add("carol", "team", "dave", 2).await);
    assert!(e.message.contains("owner or a manager"), "{e}");
    let e = err(f
        .call(
            "bob",
            Request::GroupDelete {
                group: "team".into(),
            },
        )
        .await);
    assert!(e.message.contains("only the owner"), "{e}");
    // Frank is refused in team while his own group works for him.
    f.ls("frank", "other").await?;
    assert!(f.ls("alice", "other").await.is_err());

    // A group that does not exist is named in a `not_found`, for every kind of request.
    for op_result in [
        f.ls("alice", "nope").await.map(drop),
        f.get("alice", "nope", "aaaa").await.map(drop),
        f.open("alice", "nope", "bbbb", 1).await.map(drop),
        f.keys("alice", "nope").await.map(drop),
        f.info("alice", "nope").await.map(drop),
        f.add("alice", "nope", "dave", 0).await.map(drop),
        f.remove("alice", "nope", "bob", None).await.map(drop),
        f.call(
            "alice",
            Request::GroupDelete {
                group: "nope".into(),
            },
        )
        .await
        .map(drop),
    ] {
        let e = err(op_result);
        assert_eq!(e.code, ErrorCode::NotFound, "{e}");
        assert!(e.message.contains("nope"), "{e}");
    }

    // Last: the owner deletes the group.
    Op::Delete.run(&f, "alice").await?;
    assert_eq!(code(f.ls("alice", "team").await), ErrorCode::NotFound);
    Ok(())
}

#[tokio::test]
async fn roles_managers_cannot_delete_or_demote_the_owner() -> R<()> {
    let f = fixture()?;
    f.create("alice", "team").await?;
    for user in ["bob", "carol", "dave"] {
        f.add("alice", "team", user, 0).await?;
    }
    f.set_role("alice", "team", "bob", GroupRole::Manager)
        .await?;
    f.set_role("alice", "team", "dave", GroupRole::Manager)
        .await?;
    let role_of = |members: &[MemberInfo], user: &str| {
        members.iter().find(|m| m.username == user).map(|m| m.role)
    };

    // A manager: not the owner's role, not a new owner, not another manager's removal,
    // not the group's deletion.
    for (result, why) in [
        (
            f.set_role("bob", "team", "alice", GroupRole::Member).await,
            "demote the owner",
        ),
        (
            f.set_role("bob", "team", "carol", GroupRole::Owner).await,
            "make an owner",
        ),
        (
            f.remove("bob", "team", "alice", None).await,
            "remove the owner",
        ),
        (
            f.remove("bob", "team", "dave", None).await,
            "remove a manager",
        ),
        (
            f.call(
                "bob",
                Request::GroupDelete {
                    group: "team".into(),
                },
            )
            .await,
            "delete",
        ),
    ] {
        let e = err(result);
        assert_eq!(e.code, ErrorCode::Forbidden, "{why}: {e}");
        assert!(e.message.contains("owner"), "{why}: {e}");
    }
    // …but member and manager on the others.
    f.set_role("bob", "team", "carol", GroupRole::Manager)
        .await?;
    f.set_role("bob", "team", "dave", GroupRole::Member).await?;
    let members = f.members("alice", "team").await?;
    assert_eq!(role_of(&members, "carol"), Some(GroupRole::Manager));
    assert_eq!(role_of(&members, "dave"), Some(GroupRole::Member));
    // Members change nothing.
    for result in [
        f.set_role("dave", "team", "dave", GroupRole::Manager).await,
        f.remove("dave", "team", "carol", None).await,
        f.call(
            "dave",
            Request::GroupRename {
                group: "team".into(),
                new_name: "crew".into(),
            },
        )
        .await,
    ] {
        assert_eq!(code(result), ErrorCode::Forbidden);
    }

    // The owner stays owner until handing over; then the old owner is a manager.
    let e = err(f
        .set_role("alice", "team", "alice", GroupRole::Member)
        .await);
    assert!(e.message.contains("hand it over"), "{e}");
    let e = err(f
        .call(
            "alice",
            Request::GroupLeave {
                group: "team".into(),
                rotation: None,
            },
        )
        .await);
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(e.message.contains("transfer ownership"), "{e}");
    f.set_role("alice", "team", "bob", GroupRole::Owner).await?;
    let members = f.members("carol", "team").await?;
    assert_eq!(role_of(&members, "bob"), Some(GroupRole::Owner));
    assert_eq!(role_of(&members, "alice"), Some(GroupRole::Manager));
    assert_eq!(
        members
            .iter()
            .filter(|m| m.role == GroupRole::Owner)
            .count(),
        1
    );
    assert_eq!(
        code(
            f.call(
                "alice",
                Request::GroupDelete {
                    group: "team".into()
                }
            )
            .await
        ),
        ErrorCode::Forbidden
    );
    // A member leaves; the new owner deletes.
    f.ok(
        "dave",
        Request::GroupLeave {
            group: "team".into(),
            rotation: None,
        },
    )
    .await?;
    assert_eq!(code(f.ls("dave", "team").await), ErrorCode::Forbidden);
    f.ok(
        "bob",
        Request::GroupDelete {
            group: "team".into(),
        },
    )
    .await?;
    assert!(f.list("alice").await?.is_empty());

    // Each change is in the audit log with the user as actor.
    let mut conn = f.state.db.conn()?;
    let events: Vec<(String, String)> = audit::query(&mut conn, None, None, 1000)?
        .into_iter()
        .map(|e| (e.actor, e.event))
        .collect();
    for (actor, event) in [
        ("user:alice", "group.create"),
        ("user:alice", "group.add"),
        ("user:bob", "group.role"),
        ("user:alice", "group.role"),
        ("user:dave", "group.leave"),
        ("user:bob", "group.delete"),
    ] {
        assert!(
            events.contains(&(actor.into(), event.into())),
            "{actor} {event} not in {events:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_rotation_that_does_not_match_changes_nothing() -> R<()> {
    let f = fixture()?;
    f.create("alice", "team").await?;
    f.rotate("alice", "team", rotation(0, &["alice"])).await?;
    f.add("alice", "team", "bob", 1).await?;
    f.add("alice", "team", "carol", 1).await?;

    // Removing carol: a rotation that misses bob, names carol, or skips a generation is
    // refused and carol stays.
    for r in [
        rotation(1, &["alice"]),
        rotation(1, &["alice", "bob", "carol"]),
        rotation(2, &["alice", "bob"]),
    ] {
        let e = err(f.remove("alice", "team", "carol", Some(r)).await);
        assert_eq!(e.code, ErrorCode::Conflict, "{e}");
        assert!(e.message.contains("run the command again"), "{e}");
    }
    assert_eq!(f.keys("carol", "team").await?, vec![0]);
    let g = f.group_row("team")?;
    assert_eq!((g.key_generation, g.needs_rotation), (Some(0), false));

    f.remove(
        "alice",
        "team",
        "carol",
        Some(rotation(1, &["alice", "bob"])),
    )
    .await?;
    assert_eq!(code(f.keys("carol", "team").await), ErrorCode::Forbidden);
    assert_eq!(f.keys("bob", "team").await?, vec![0, 1]);
    let g = f.group_row("team")?;
    assert_eq!((g.key_generation, g.needs_rotation), (Some(1), false));
    // Carol's envelopes went with her.
    let mut conn = f.state.db.conn()?;
    let hers: i64 = group_envelopes::table
        .filter(group_envelopes::user_id.eq(f.id("carol")))
        .count()
        .get_result(&mut *conn)?;
    assert_eq!(hers, 0);

    // No rotation is due: a rotation is refused.
    let e = err(f
        .rotate("bob", "team", rotation(2, &["alice", "bob"]))
        .await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("needs no new key"), "{e}");

    // A removal without a rotation (what vault-admin does) leaves one due: made by a
    // member holding the key in force, for exactly the members.
    f.add("alice", "team", "dave", 2).await?;
    f.admin_add("team", "erin")?;
    f.remove("alice", "team", "dave", None).await?;
    assert!(f.group_row("team")?.needs_rotation);
    let e = err(f
        .rotate("erin", "team", rotation(2, &["alice", "bob", "erin"]))
        .await);
    assert_eq!(e.code, ErrorCode::Forbidden, "{e}");
    let e = err(f
        .rotate("bob", "team", rotation(2, &["alice", "bob"]))
        .await);
    assert_eq!(e.code, ErrorCode::Conflict, "{e}");
    let e = err(f
        .rotate("bob", "team", rotation(3, &["alice", "bob", "erin"]))
        .await);
    assert_eq!(e.code, ErrorCode::Conflict, "{e}");
    f.rotate("bob", "team", rotation(2, &["alice", "bob", "erin"]))
        .await?;
    let g = f.group_row("team")?;
    assert_eq!((g.key_generation, g.needs_rotation), (Some(2), false));
    assert_eq!(f.keys("erin", "team").await?, vec![2]);

    // Healing: never over an existing envelope, only what the sender holds, only for
    // members; one bad envelope stores none.
    let put = |envelopes: Vec<NewEnvelope>| Request::GroupPutEnvelopes {
        group: "team".into(),
        envelopes,
    };
    let e = err(f
        .call("bob", put(vec![env("erin", 0), env("erin", 2)]))
        .await);
    assert_eq!(e.code, ErrorCode::Conflict, "{e}");
    assert!(e.message.contains("already holds"), "{e}");
    assert_eq!(f.keys("erin", "team").await?, vec![2]);
    let e = err(f
        .call("bob", put(vec![env("erin", 1), env("dave", 1)]))
        .await);
    assert_eq!(e.code, ErrorCode::Conflict, "{e}");
    assert_eq!(f.keys("erin", "team").await?, vec![2]);
    let e = err(f.call("erin", put(vec![env("bob", 0)])).await);
    assert_eq!(e.code, ErrorCode::Forbidden, "{e}");
    assert!(e.message.contains("you do not hold generation 0"), "{e}");
    let e = err(f.call("erin", put(vec![env("alice", 2)])).await);
    assert_eq!(e.code, ErrorCode::Conflict, "{e}");
    f.ok("bob", put(vec![env("erin", 0), env("erin", 1)]))
        .await?;
    assert_eq!(f.keys("erin", "team").await?, vec![0, 1, 2]);
    // What erin receives names who wrapped it and their key at the time.
    match f
        .ok(
            "erin",
            Request::GroupKeys {
                group: "team".into(),
            },
        )
        .await?
    {
        Response::GroupKeys {
            generation,
            envelopes,
            ..
        } => {
            assert_eq!(generation, Some(2));
            let first = &envelopes[0];
            assert_eq!(first.signer, "bob");
            assert_eq!(first.signer_key.as_slice(), &[2u8; 24]);
            assert_eq!(first.envelope.as_slice(), b"envelope erin 0");
            assert_eq!(first.signature.as_slice(), b"signature erin 0");
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn join_codes_expire_run_out_and_answer_alike_to_a_wrong_secret() -> R<()> {
    let f = fixture()?;
    f.create("alice", "team").await?;
    f.rotate("alice", "team", rotation(0, &["alice"])).await?;
    f.add("alice", "team", "carol", 1).await?;
    let auth = [5u8; 32];

    assert_eq!(
        code(f.invite("carol", "team", &auth, 1).await),
        ErrorCode::Forbidden
    );
    let bad = |uses: u32, expires_s: u64, sealed: usize, auth: usize| Request::GroupInviteCreate {
        group: "team".into(),
        auth: SecretBytes::new(vec![1; auth]),
        sealed_keys: vec![0; sealed].into(),
        uses,
        expires_s,
    };
    for (request, want) in [
        (bad(0, 60, 10, 32), ErrorCode::BadRequest),
        (bad(MAX_INVITE_USES + 1, 60, 10, 32), ErrorCode::BadRequest),
        (bad(1, 0, 10, 32), ErrorCode::BadRequest),
        (bad(1, MAX_INVITE_TTL_S + 1, 10, 32), ErrorCode::BadRequest),
        (bad(1, 60, 64 * 1024 + 1, 32), ErrorCode::TooLarge),
        (bad(1, 60, 10, 0), ErrorCode::BadRequest),
    ] {
        assert_eq!(code(f.call("alice", request).await), want);
    }

    let id = f.invite("alice", "team", &auth, 2).await?;
    // The server keeps a hash of the auth part, never the part itself.
    {
        let mut conn = f.state.db.conn()?;
        let stored: Vec<u8> = group_invites::table
            .find(id)
            .select(group_invites::auth_hash)
            .get_result(&mut *conn)?;
        assert_ne!(stored, auth.to_vec());
        assert_eq!(stored.len(), 32);
    }
    let open = |invite_id: i64, auth: &[u8]| Request::GroupInviteOpen {
        invite_id,
        auth: SecretBytes::new(auth.to_vec()),
    };
    let wrong = err(f.call("dave", open(id, &[6; 32])).await);
    let unknown = err(f.call("dave", open(id + 1000, &auth)).await);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.code, ErrorCode::Forbidden);
    assert!(
        wrong.message.contains("invalid, expired or used up"),
        "{wrong}"
    );
    match f.ok("dave", open(id, &auth)).await? {
        Response::InviteOpened(info) => {
            assert_eq!(info.group, "team");
            assert_eq!(info.sealed_keys.as_slice(), b"sealed group keys");
        }
        other => panic!("{other:?}"),
    }
    // A member is told so (once the code is proven).
    assert_eq!(
        code(f.call("carol", open(id, &auth)).await),
        ErrorCode::Conflict
    );

    // Joining: only one's own envelopes, of generations that exist.
    assert_eq!(
        code(f.join("dave", id, &auth, vec![env("carol", 0)]).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(f.join("dave", id, &auth, vec![env("dave", 1)]).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        err(f.join("dave", id, &[6; 32], vec![env("dave", 0)]).await),
        wrong
    );
    match f.join("dave", id, &auth, vec![env("dave", 0)]).await? {
        Response::GroupJoined { name, .. } => assert_eq!(name, "team"),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.keys("dave", "team").await?, vec![0]);
    assert_eq!(
        code(f.join("dave", id, &auth, vec![]).await),
        ErrorCode::Conflict
    );
    // A code with fewer envelopes than generations is fine: healing brings the rest.
    f.join("erin", id, &auth, vec![]).await?;
    assert!(!f.info("erin", "team").await?.summary.has_key);
    // Used up: the same answer as a wrong secret.
    assert_eq!(err(f.join("frank", id, &auth, vec![]).await), wrong);
    assert_eq!(err(f.call("frank", open(id, &auth)).await), wrong);

    // Expired: the same answer.
    let id = f.invite("alice", "team", &auth, 5).await?;
    {
        let mut conn = f.state.db.conn()?;
        diesel::update(group_invites::table.find(id))
            .set(group_invites::expires_at.eq(db::now() - 1))
            .execute(&mut *conn)?;
    }
    assert_eq!(err(f.call("frank", open(id, &auth)).await), wrong);
    assert_eq!(err(f.join("frank", id, &auth, vec![]).await), wrong);
    // The server's housekeeping deletes it.
    {
        let mut conn = f.state.db.conn()?;
        assert_eq!(groups::delete_expired_invites(&mut conn, db::now())?, 1);
        assert!(groups::invite(&mut conn, id)?.is_none());
    }

    // A code made by a manager who is removed goes with them.
    f.add("alice", "team", "hank", 1).await?;
    f.set_role("alice", "team", "hank", GroupRole::Manager)
        .await?;
    let id = f.invite("hank", "team", &auth, 5).await?;
    f.remove("alice", "team", "hank", None).await?;
    assert_eq!(err(f.call("frank", open(id, &auth)).await), wrong);
    Ok(())
}

/// The `Wrap` tasks in `tasks`, as (member, generations).
fn wraps(tasks: &[KeyTask]) -> Vec<(String, Vec<u32>)> {
    tasks
        .iter()
        .filter_map(|t| match t {
            KeyTask::Wrap {
                member,
                generations,
                ..
            } => Some((member.username.clone(), generations.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn key_tasks_say_what_a_members_client_can_do() -> R<()> {
    let f = fixture()?;
    f.create("alice", "team").await?;
    f.add("alice", "team", "bob", 0).await?;
    let count = |who: &str| -> R<u32> {
        let mut conn = f.state.db.conn()?;
        Ok(super::key_task_count(&mut conn, f.id(who))?)
    };

    // No key yet: any member is asked for the first, with every member's public key, and
    // nobody can upload.
    for who in ["alice", "bob"] {
        match f.tasks(who).await?.as_slice() {
            [KeyTask::FirstKey { group, members, .. }] => {
                assert_eq!(group, "team");
                let names: Vec<&str> = members.iter().map(|m| m.username.as_str()).collect();
                assert_eq!(names, ["alice", "bob"]);
                assert_eq!(members[1].public_key.as_slice(), &[2u8; 24]);
            }
            other => panic!("{who}: {other:?}"),
        }
    }
    assert_eq!(count("alice")?, 1);
    let e = err(f.open("alice", "team", "aaaa", 10).await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("group team has no key yet"), "{e}");
    // The first key is generation 0.
    assert_eq!(
        code(
            f.rotate("alice", "team", rotation(1, &["alice", "bob"]))
                .await
        ),
        ErrorCode::Conflict
    );
    f.rotate("alice", "team", rotation(0, &["alice", "bob"]))
        .await?;
    assert!(f.tasks("alice").await?.is_empty());
    assert_eq!(count("bob")?, 0);
    assert_eq!(f.open("bob", "team", "aaaa", 10).await?.1, 0);

    // A member the operator added waits for a keyed member to wrap the key for them.
    f.admin_add("team", "carol")?;
    for who in ["alice", "bob"] {
        assert_eq!(wraps(&f.tasks(who).await?), [("carol".into(), vec![0])]);
    }
    assert!(f.tasks("carol").await?.is_empty());
    let info = f.info("carol", "team").await?;
    assert_eq!((info.summary.has_key, info.waiting), (false, 1));
    f.ok(
        "bob",
        Request::GroupPutEnvelopes {
            group: "team".into(),
            envelopes: vec![env("carol", 0)],
        },
    )
    .await?;
    assert!(f.tasks("alice").await?.is_empty());
    let info = f.info("carol", "team").await?;
    assert_eq!((info.summary.has_key, info.waiting), (true, 0));

    // A removal without a rotation: a member holding the key in force is asked to rotate.
    f.remove("alice", "team", "carol", None).await?;
    assert!(f.info("alice", "team").await?.rotation_pending);
    match f.tasks("bob").await?.as_slice() {
        [
            KeyTask::Rotate {
                next_generation,
                members,
                ..
            },
        ] => {
            assert_eq!(*next_generation, 1);
            let names: Vec<&str> = members.iter().map(|m| m.username.as_str()).collect();
            assert_eq!(names, ["alice", "bob"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(count("alice")?, 1);
    // Rotated for the members (with one added meanwhile): then the newcomer lacks the
    // older generation only.
    f.admin_add("team", "dave")?;
    f.rotate("alice", "team", rotation(1, &["alice", "bob", "dave"]))
        .await?;
    assert_eq!(wraps(&f.tasks("alice").await?), [("dave".into(), vec![0])]);
    assert!(f.tasks("dave").await?.is_empty());
    assert_eq!(count("dave")?, 0);
    Ok(())
}

#[tokio::test]
async fn adding_refuses_unknown_locked_present_and_too_many_members() -> R<()> {
    let f = fixture()?;
    f.create("alice", "team").await?;
    f.rotate("alice", "team", rotation(0, &["alice"])).await?;
    assert_eq!(
        code(f.add("alice", "team", "nobody", 1).await),
        ErrorCode::NotFound
    );
    f.lock_user("hank")?;
    let e = err(f.add("alice", "team", "hank", 1).await);
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(e.message.contains("locked"), "{e}");
    f.add("alice", "team", "bob", 1).await?;
    let e = err(f.add("alice", "team", "bob", 1).await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("already a member"), "{e}");
    // Envelopes of every generation there is, for the new member only.
    assert_eq!(
        code(f.add("alice", "team", "carol", 0).await),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(f.add("alice", "team", "carol", 2).await),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(
            f.call(
                "alice",
                Request::GroupAdd {
                    group: "team".into(),
                    username: "carol".into(),
                    envelopes: vec![env("dave", 0)],
                },
            )
            .await
        ),
        ErrorCode::BadRequest
    );
    assert_eq!(f.members("alice", "team").await?.len(), 2);

    // A full group takes nobody more, by any way in.
    let g = f.group_row("team")?;
    {
        let mut conn = f.state.db.conn()?;
        for i in 2..MAX_GROUP_MEMBERS as i64 {
            groups::insert_member(&mut conn, g.id, 1_000_000 + i, "member", 0)?;
        }
    }
    let e = err(f.add("alice", "team", "carol", 1).await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("the most a group may have"), "{e}");
    let auth = [5u8; 32];
    let id = f.invite("alice", "team", &auth, 1).await?;
    assert_eq!(
        code(f.join("carol", id, &auth, vec![]).await),
        ErrorCode::Conflict
    );
    assert!(f.admin_add("team", "carol").is_err());
    Ok(())
}

#[tokio::test]
async fn the_group_quota_refuses_an_upload() -> R<()> {
    let f = fixture()?;
    let gid = f.create("alice", "team").await?;
    f.rotate("alice", "team", rotation(0, &["alice"])).await?;
    // A new group starts with the configured quota.
    assert_eq!(
        f.info("alice", "team").await?.quota_bytes,
        f.state.config.groups.default_quota.0
    );
    {
        let mut conn = f.state.db.conn()?;
        groups::set_quota(&mut conn, gid, sealed_len(1000) as i64)?;
    }
    f.put("alice", "team", "aaaa").await?;
    let e = err(f.open("alice", "team", "bbbb", 1000).await);
    assert_eq!(e.code, ErrorCode::QuotaExceeded, "{e}");
    let info = f.info("alice", "team").await?;
    assert_eq!(info.used_bytes, sealed_len(100));
    assert_eq!(info.quota_bytes, sealed_len(1000));
    // The personal space is another matter.
    match f
        .ok(
            "alice",
            Request::UploadOpen {
                ns: NsRef::Personal,
                path: "bbbb".into(),
                sealed_size: sealed_len(1000),
            },
        )
        .await?
    {
        Response::UploadOpened { generation, .. } => assert_eq!(generation, 0),
        other => panic!("{other:?}"),
    }
    Ok(())
}

/// `upload_open_many` of one small file; the upload id.
async fn open_small(f: &Fixture, who: &str, path: &str) -> R<i64> {
    match f
        .ok(
            who,
            Request::UploadOpenMany {
                ns: group("team"),
                files: vec![OpenFile {
                    path: path.into(),
                    sealed_size: sealed_len(10),
                }],
                batch: None,
            },
        )
        .await?
    {
        Response::UploadsOpened { results } => match results.as_slice() {
            [BatchResult::Ok(opened)] => Ok(opened.upload_id),
            other => Err(format!("unexpected {other:?}").into()),
        },
        other => Err(format!("unexpected {other:?}").into()),
    }
}

fn put_small(upload_id: i64) -> Request {
    Request::UploadPutMany {
        files: vec![PutFile {
            upload_id,
            sealed: sealed_bytes(10, 1).into(),
            wrapped_key: vec![7; 61].into(),
            sealed_meta: vec![8; 86].into(),
        }],
    }
}

#[tokio::test]
async fn commits_after_a_removal_or_a_rotation_are_refused() -> R<()> {
    let f = fixture()?;
    f.create("alice", "team").await?;
    f.rotate("alice", "team", rotation(0, &["alice"])).await?;
    f.add("alice", "team", "bob", 1).await?;
    f.add("alice", "team", "carol", 1).await?;

    // Bob's uploads were opened while he was a member; he is removed before they commit.
    let (big, generation) = f.open("bob", "team", "bbbb", 100).await?;
    assert_eq!(generation, 0);
    f.data("bob", big, 100).await?;
    let small = open_small(&f, "bob", "cccc").await?;
    f.remove(
        "alice",
        "team",
        "bob",
        Some(rotation(1, &["alice", "carol"])),
    )
    .await?;
    let e = err(f.commit("bob", big).await);
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(e.message.contains("not a member of group team"), "{e}");
    assert_eq!(
        code(f.call("bob", put_small(small)).await),
        ErrorCode::Forbidden
    );

    // Carol's uploads use generation 1; the key is rotated before they commit.
    let (big, generation) = f.open("carol", "team", "dddd", 100).await?;
    assert_eq!(generation, 1);
    f.data("carol", big, 100).await?;
    let small = open_small(&f, "carol", "eeee").await?;
    f.add("alice", "team", "dave", 2).await?;
    f.remove(
        "alice",
        "team",
        "dave",
        Some(rotation(2, &["alice", "carol"])),
    )
    .await?;
    let e = err(f.commit("carol", big).await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("rotated while uploading"), "{e}");
    match f.ok("carol", put_small(small)).await? {
        Response::UploadsCommitted { results } => match results.as_slice() {
            [BatchResult::Error(e)] => assert_eq!(e.code, ErrorCode::Conflict, "{e}"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    // Nothing of it is visible; a new upload uses generation 2 and commits.
    assert!(f.ls("alice", "team").await?.is_empty());
    let entry = f.put("carol", "team", "dddd").await?;
    assert_eq!(entry.current.map(|v| v.generation), Some(2));
    Ok(())
}

#[tokio::test]
async fn deleting_a_group_purges_its_files() -> R<()> {
    let f = fixture()?;
    let gid = f.create("alice", "team").await?;
    f.rotate("alice", "team", rotation(0, &["alice"])).await?;
    f.add("alice", "team", "bob", 1).await?;
    f.put("alice", "team", "aaaa").await?;
    f.put("alice", "team", "aaaa").await?;
    f.put("bob", "team", "bbbb").await?;
    f.ok(
        "bob",
        Request::Remove {
            ns: group("team"),
            path: "bbbb".into(),
            recursive: false,
        },
    )
    .await?;
    let (pending, _) = f.open("bob", "team", "cccc", 100).await?;
    f.data("bob", pending, 100).await?;
    let _ = f.invite("alice", "team", &[5; 32], 1).await?;
    assert_eq!(f.state.blobs.list_partials()?.len(), 1);

    f.ok(
        "alice",
        Request::GroupDelete {
            group: "team".into(),
        },
    )
    .await?;
    let mut conn = f.state.db.conn()?;
    let spaces: i64 = namespaces::table
        .filter(namespaces::group_id.eq(gid))
        .count()
        .get_result(&mut *conn)?;
    assert_eq!(spaces, 0);
    // Three versions' blobs wait for gc; the partial upload is gone at once.
    let queued: i64 = deleted_blobs::table.count().get_result(&mut *conn)?;
    assert_eq!(queued, 3);
    assert_eq!(f.state.blobs.list_partials()?.len(), 0);
    let rows: i64 = group_envelopes::table.count().get_result(&mut *conn)?;
    let invites: i64 = group_invites::table.count().get_result(&mut *conn)?;
    assert_eq!((rows, invites), (0, 0));
    drop(conn);
    assert_eq!(code(f.commit("bob", pending).await), ErrorCode::NotFound);
    assert!(f.list("bob").await?.is_empty());
    let e = err(f.ls("bob", "team").await);
    assert_eq!(e.code, ErrorCode::NotFound);
    // The name is free again, with an empty space.
    f.create("bob", "team").await?;
    f.rotate("bob", "team", rotation(0, &["bob"])).await?;
    assert!(f.ls("bob", "team").await?.is_empty());
    assert_eq!(f.info("bob", "team").await?.used_bytes, 0);
    Ok(())
}

#[tokio::test]
async fn rename_list_info_and_members() -> R<()> {
    let f = fixture()?;
    let gid = f.create("alice", "@Team").await?;
    assert_eq!(f.group_row("team")?.id, gid);
    let e = err(f
        .call(
            "bob",
            Request::GroupCreate {
                name: "TEAM".into(),
            },
        )
        .await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(
        e.message.contains("a group named team already exists"),
        "{e}"
    );
    assert_eq!(
        code(
            f.call("alice", Request::GroupCreate { name: "a/b".into() })
                .await
        ),
        ErrorCode::BadRequest
    );
    f.create("bob", "other").await?;
    f.rotate("alice", "team", rotation(0, &["alice"])).await?;
    f.add("alice", "team", "bob", 1).await?;
    f.admin_add("team", "carol")?;
    f.put("alice", "team", "aaaa").await?;

    let rename = |group: &str, new_name: &str| Request::GroupRename {
        group: group.into(),
        new_name: new_name.into(),
    };
    assert_eq!(
        code(f.call("alice", rename("team", "other")).await),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(f.call("alice", rename("team", "no way")).await),
        ErrorCode::BadRequest
    );
    f.ok("alice", rename("team", "crew")).await?;
    let e = err(f.ls("bob", "team").await);
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.message.contains("team"), "{e}");
    assert_eq!(f.ls("bob", "@crew").await?.len(), 1);
    assert_eq!(f.group_row("crew")?.id, gid);

    let bobs = f.list("bob").await?;
    let names: Vec<(&str, GroupRole, u64, Option<u32>, bool)> = bobs
        .iter()
        .map(|g| (g.name.as_str(), g.role, g.members, g.generation, g.has_key))
        .collect();
    assert_eq!(
        names,
        [
            ("crew", GroupRole::Member, 3, Some(0), true),
            ("other", GroupRole::Owner, 1, None, false),
        ]
    );
    let info = f.info("carol", "crew").await?;
    assert_eq!(info.summary.role, GroupRole::Member);
    assert!(!info.summary.has_key);
    assert_eq!(info.waiting, 1);
    assert!(!info.rotation_pending);
    assert_eq!(info.used_bytes, sealed_len(100));
    let members = f.members("carol", "crew").await?;
    let rows: Vec<(&str, GroupRole, bool)> = members
        .iter()
        .map(|m| (m.username.as_str(), m.role, m.has_key))
        .collect();
    assert_eq!(
        rows,
        [
            ("alice", GroupRole::Owner, true),
            ("bob", GroupRole::Member, true),
            ("carol", GroupRole::Member, false),
        ]
    );
    assert_eq!(members[2].public_key.as_slice(), &[3u8; 24]);

    // Anyone logged in may fetch a public key.
    match f
        .ok(
            "dave",
            Request::UserKey {
                username: "Carol".into(),
            },
        )
        .await?
    {
        Response::UserKey(k) => {
            assert_eq!(k.username, "carol");
            assert_eq!(k.public_key.as_slice(), &[3u8; 24]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(
            f.call(
                "dave",
                Request::UserKey {
                    username: "nobody".into()
                }
            )
            .await
        ),
        ErrorCode::NotFound
    );
    Ok(())
}

#[tokio::test]
async fn an_operator_deleting_an_account_keeps_the_groups_whole() -> R<()> {
    let f = fixture()?;
    f.create("alice", "team").await?;
    f.rotate("alice", "team", rotation(0, &["alice"])).await?;
    f.add("alice", "team", "bob", 1).await?;
    f.create("carol", "other").await?;
    f.add("carol", "other", "bob", 0).await?;
    let user = |name: &str| -> R<db::users::User> {
        let mut conn = f.state.db.conn()?;
        Ok(db::users::by_name(&mut conn, name)?.ok_or("no user")?)
    };

    // An owner's account cannot go before the group does or has another owner.
    let alice = user("alice")?;
    let e = err(f.admin(|c| change::drop_user(c, &alice)));
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(e.message.contains("owns group team"), "{e}");
    assert_eq!(f.members("alice", "team").await?.len(), 2);

    // A member's memberships and envelopes go; a group with a key now needs a new one.
    let bob = user("bob")?;
    let left = f.admin(|c| change::drop_user(c, &bob))?;
    let names: Vec<&str> = left.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["team", "other"]);
    assert_eq!(f.members("alice", "team").await?.len(), 1);
    assert!(f.group_row("team")?.needs_rotation);
    assert!(!f.group_row("other")?.needs_rotation);
    let mut conn = f.state.db.conn()?;
    let his: i64 = group_envelopes::table
        .filter(group_envelopes::user_id.eq(bob.id))
        .count()
        .get_result(&mut *conn)?;
    assert_eq!(his, 0);
    Ok(())
}
