//! The trash: removing, restoring (under parents made again) and emptying.

use diesel::prelude::*;
use vault_proto::proto::{EntryKind, ErrorCode, Request, Response};

use super::{FileCalls, P, fixture};
use crate::db::schema::entries;
use crate::files::download;
use crate::testing::{R, code, err, sealed_bytes};

#[tokio::test]
async fn remove_trash_restore_and_empty() -> R<()> {
    let f = fixture()?;
    let a = sealed_bytes(10, 1);
    let b = sealed_bytes(20, 2);
    f.put("dd/aa", &a).await?;
    f.put("dd/ee/bb", &b).await?;
    assert_eq!(f.ls("", false).await?.len(), 1);
    assert_eq!(f.ls("", true).await?.len(), 4);

    let e = err(f
        .call(
            "alice",
            Request::Remove {
                ns: P,
                path: "dd".into(),
                recursive: false,
            },
        )
        .await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("-r"), "{e}");
    assert_eq!(
        code(
            f.call(
                "alice",
                Request::Remove {
                    ns: P,
                    path: "".into(),
                    recursive: true
                }
            )
            .await
        ),
        ErrorCode::BadRequest
    );

    let trash_id = match f
        .call(
            "alice",
            Request::Remove {
                ns: P,
                path: "dd".into(),
                recursive: true,
            },
        )
        .await?
    {
        Response::Trashed { trash_id, entries } => {
            assert_eq!(entries, 4);
            trash_id
        }
        other => panic!("{other:?}"),
    };
    assert!(f.ls("", true).await?.is_empty());
    let r = download::prepare(&f.state, f.alice(), &P, "dd/aa".into(), None, 0).await;
    assert_eq!(err(r).code, ErrorCode::NotFound);
    // Trash counts against the quota.
    let used = (a.len() + b.len()) as u64;
    assert_eq!(f.usage().await?.used_bytes, used);
    match f.call("alice", Request::TrashList { ns: P }).await? {
        Response::Trash { items } => {
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].entries, 4);
            assert_eq!(items[0].sealed_bytes, used);
            assert_eq!(items[0].kind, EntryKind::Dir);
        }
        other => panic!("{other:?}"),
    }

    // Something new at the path blocks the restore.
    f.call(
        "alice",
        Request::Mkdir {
            ns: P,
            path: "dd".into(),
        },
    )
    .await?;
    assert_eq!(
        code(
            f.call("alice", Request::TrashRestore { ns: P, trash_id })
                .await
        ),
        ErrorCode::Conflict
    );
    f.call(
        "alice",
        Request::Remove {
            ns: P,
            path: "dd".into(),
            recursive: false,
        },
    )
    .await?;
    f.call("alice", Request::TrashRestore { ns: P, trash_id })
        .await?;
    assert_eq!(f.get("dd/ee/bb", None, 0).await?, b);

    // Remove a file and empty the trash: bytes back to 0 after removing the rest too.
    f.call(
        "alice",
        Request::Remove {
            ns: P,
            path: "dd".into(),
            recursive: true,
        },
    )
    .await?;
    let emptied = f.call("alice", Request::TrashEmpty { ns: P }).await?;
    assert_eq!(
        emptied,
        Response::TrashEmptied {
            items: 2,
            sealed_bytes: used
        }
    );
    let u = f.usage().await?;
    assert_eq!(
        (u.used_bytes, u.files, u.dirs, u.versions, u.trash_items),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(f.deleted_blob_count()?, 2);
    let mut c = f.state.db.conn()?;
    let rows: i64 = entries::table.count().get_result(&mut *c)?;
    assert_eq!(rows, 0);
    Ok(())
}

#[tokio::test]
async fn a_restored_file_reappears_under_recreated_parents() -> R<()> {
    let f = fixture()?;
    let a = sealed_bytes(3, 1);
    f.put("pp/qq", &a).await?;
    let trash_id = match f
        .call(
            "alice",
            Request::Remove {
                ns: P,
                path: "pp/qq".into(),
                recursive: false,
            },
        )
        .await?
    {
        Response::Trashed { trash_id, .. } => trash_id,
        other => panic!("{other:?}"),
    };
    f.call(
        "alice",
        Request::Remove {
            ns: P,
            path: "pp".into(),
            recursive: false,
        },
    )
    .await?;
    f.call("alice", Request::TrashRestore { ns: P, trash_id })
        .await?;
    let listed = f.ls("", true).await?;
    assert_eq!(
        listed.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
        ["pp", "pp/qq"]
    );
    assert_eq!(listed[0].kind, EntryKind::Dir);
    Ok(())
}
