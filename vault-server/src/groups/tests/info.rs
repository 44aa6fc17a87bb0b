//! Names and what is shown: creating and renaming groups, the list of one's groups, a
//! group's info and members, and other users' public keys.

use vault_proto::proto::{ErrorCode, GroupRole, Request, Response};
use vault_proto::sizes::sealed_len;

use super::{GroupCalls, fixture, rotation};
use crate::testing::{R, code, err};

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
