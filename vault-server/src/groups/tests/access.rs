//! Who may do what in a group: every cell of the authorization table (owner, manager,
//! member, outsiders, a removed member, a locked account), and what the refusals say.

use vault_proto::proto::{ApiError, ErrorCode, GroupRole, Request};

use super::{GroupCalls, fixture, rotation};
use crate::testing::{Fixture, R, code, err};

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
