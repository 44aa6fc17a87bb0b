//! Members and roles: what a manager may not do to the owner, handing ownership over,
//! leaving, who can be added (not the unknown, the locked, the present, nor more than a
//! group may have), and an account the operator deletes.

use diesel::prelude::*;
use vault_proto::proto::groups::MAX_GROUP_MEMBERS;
use vault_proto::proto::{ErrorCode, GroupRole, MemberInfo, Request};

use super::{GroupCalls, env, fixture, rotation};
use crate::db::schema::group_envelopes;
use crate::db::{self, audit, groups};
use crate::groups::change;
use crate::testing::{R, code, err};

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
