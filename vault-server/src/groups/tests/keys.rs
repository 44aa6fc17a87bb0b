//! Group keys: rotations that must match the members, envelopes healed for others, and
//! the key tasks that tell a member's client what to do.

use diesel::prelude::*;
use vault_proto::proto::{ErrorCode, KeyTask, NewEnvelope, Request, Response};

use super::{GroupCalls, env, fixture, rotation};
use crate::db::schema::group_envelopes;
use crate::testing::{R, code, err};

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
        Ok(crate::groups::key_task_count(&mut conn, f.id(who))?)
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
