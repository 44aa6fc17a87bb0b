//! A group's files: its quota, commits refused after a removal or a rotation, and a
//! deleted group's files purged.

use diesel::prelude::*;
use vault_proto::proto::{BatchResult, ErrorCode, NsRef, OpenFile, PutFile, Request, Response};
use vault_proto::sizes::sealed_len;

use super::{GroupCalls, fixture, group, rotation};
use crate::db::groups;
use crate::db::schema::{deleted_blobs, group_envelopes, group_invites, namespaces};
use crate::testing::{Fixture, R, code, err, sealed_bytes};

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
                chunk_bytes: 0,
                batch: None,
                if_current: None,
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
                    if_current: None,
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
