//! Single-file uploads: resuming after a break, what is refused (bad paths and sizes,
//! another user's upload, expiry, the quota, a full disk), and concurrent uploads of one
//! path.

use std::sync::Arc;

use diesel::prelude::*;
use vault_proto::proto::{BatchResult, EntryKind, ErrorCode, NsRef, OpenFile, Request, Response};
use vault_proto::sizes::SEALED_CHUNK_LEN;

use super::{Broken, FileCalls, FullDisk, P, fixture, fixture_with};
use crate::db;
use crate::db::schema::entries;
use crate::files::{download, upload};
use crate::testing::{R, code, err, sealed_bytes};

#[tokio::test]
async fn upload_resumes_after_a_break_and_downloads_the_same_bytes() -> R<()> {
    let f = fixture()?;
    let bytes = sealed_bytes(3 * (1 << 20) + 5, 1);
    let (id, version) = f.open("aaaa", bytes.len() as u64).await?;
    assert_eq!(version, 1);
    // Nothing is visible before the commit.
    assert!(f.ls("", false).await?.is_empty());
    assert_eq!(
        code(
            f.call(
                "alice",
                Request::Stat {
                    ns: P,
                    path: "aaaa".into()
                }
            )
            .await
        ),
        ErrorCode::NotFound
    );

    // 1.5 chunks arrive, then the connection breaks: only the whole chunk counts.
    let cut = SEALED_CHUNK_LEN + SEALED_CHUNK_LEN / 2;
    let mut broken = Broken {
        data: &bytes[..cut],
    };
    assert!(
        upload::receive(&f.state, f.alice(), id, 0, &mut broken)
            .await
            .is_err()
    );
    let received = f.status(id).await?;
    assert_eq!(received, SEALED_CHUNK_LEN as u64);

    // Resuming anywhere else is refused with the right offset.
    let e = err(f.data(id, 0, &bytes).await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(
        e.message.contains(&format!("resume at byte {received}")),
        "{e}"
    );

    // Committing now is refused: bytes are missing.
    let e = err(f.commit(id).await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("upload incomplete"), "{e}");

    f.data(id, received, &bytes[received as usize..]).await?;
    assert_eq!(f.status(id).await?, bytes.len() as u64);
    let entry = match f.commit(id).await? {
        Response::Entry(e) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(entry.kind, EntryKind::File);
    assert_eq!(entry.version_count, 1);
    assert_eq!(
        entry.current.as_ref().map(|v| v.sealed_size),
        Some(bytes.len() as u64)
    );
    assert_eq!(f.get("aaaa", None, 0).await?, bytes);
    // From a chunk index: the bytes from that chunk on.
    assert_eq!(
        f.get("aaaa", None, 2).await?,
        &bytes[2 * SEALED_CHUNK_LEN..]
    );
    let e = err(download::prepare(&f.state, f.alice(), &P, "aaaa".into(), None, 4).await);
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert_eq!(f.usage().await?.used_bytes, bytes.len() as u64);
    assert_eq!(f.partials()?, 0);
    // The upload is gone once committed.
    assert_eq!(code(f.commit(id).await), ErrorCode::NotFound);
    Ok(())
}

#[tokio::test]
async fn small_and_boundary_sizes_round_trip() -> R<()> {
    let f = fixture()?;
    for (i, plain) in [0u64, 1, 1 << 20, (1 << 20) + 1].into_iter().enumerate() {
        let bytes = sealed_bytes(plain, i as u8);
        let path = format!("f{}", ["a", "b", "c", "d"][i]);
        f.put(&path, &bytes).await?;
        assert_eq!(f.get(&path, None, 0).await?, bytes, "plain {plain}");
    }
    Ok(())
}

#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing_visible() -> R<()> {
    let mut f = fixture()?;
    // Not a sealed length.
    assert_eq!(
        code(
            f.call(
                "alice",
                Request::UploadOpen {
                    ns: P,
                    path: "x".into(),
                    sealed_size: 15,
                    chunk_bytes: 0,
                    batch: None,
                    if_current: None,
                }
            )
            .await
        ),
        ErrorCode::BadRequest
    );
    // Bad paths.
    for bad in ["", "a//b", "../x", "a\0b", "Abc"] {
        let r = f
            .call(
                "alice",
                Request::UploadOpen {
                    ns: P,
                    path: bad.into(),
                    sealed_size: 17,
                    chunk_bytes: 0,
                    batch: None,
                    if_current: None,
                },
            )
            .await;
        assert_eq!(code(r), ErrorCode::BadRequest, "{bad:?}");
    }
    // More bytes than declared.
    let bytes = sealed_bytes(100, 3);
    let (id, _) = f.open("over", bytes.len() as u64).await?;
    let mut more = bytes.clone();
    more.push(0);
    let e = err(f.data(id, 0, &more).await);
    assert_eq!(e.code, ErrorCode::TooLarge);
    assert!(e.message.contains("more bytes than declared"), "{e}");
    assert_eq!(f.status(id).await?, 0);
    // Wrong key and metadata lengths.
    f.data(id, 0, &bytes).await?;
    let r = f
        .call(
            "alice",
            Request::UploadCommit {
                upload_id: id,
                wrapped_key: vec![0; 60].into(),
                sealed_meta: vec![0; 86].into(),
                chunks: Vec::new(),
            },
        )
        .await;
    assert_eq!(code(r), ErrorCode::BadRequest);
    // Another user cannot touch the upload.
    f.add_user("bob", 2)?;
    let bob = f.who("bob").session.clone();
    let r = f.call("bob", Request::UploadStatus { upload_id: id }).await;
    assert_eq!(code(r), ErrorCode::NotFound);
    let mut slice: &[u8] = &bytes;
    let r = upload::receive(&f.state, &bob, id, 0, &mut slice).await;
    assert_eq!(code(r), ErrorCode::NotFound);
    // Aborting drops the upload, its invisible row and its partial.
    assert_eq!(
        f.call("alice", Request::UploadAbort { upload_id: id })
            .await?,
        Response::Ok
    );
    assert_eq!(f.partials()?, 0);
    let mut c = f.state.db.conn()?;
    let rows: i64 = entries::table.count().get_result(&mut *c)?;
    assert_eq!(rows, 0);
    // A file is not a folder, a folder not a file.
    drop(c);
    f.put("file", &sealed_bytes(1, 0)).await?;
    assert_eq!(
        code(f.open("file/sub", 17).await.map(|_| Response::Ok)),
        ErrorCode::Conflict
    );
    f.call(
        "alice",
        Request::Mkdir {
            ns: P,
            path: "dir".into(),
        },
    )
    .await?;
    assert_eq!(
        code(f.open("dir", 17).await.map(|_| Response::Ok)),
        ErrorCode::Conflict
    );
    // Groups do not exist yet.
    let r = f
        .call(
            "alice",
            Request::Usage {
                ns: NsRef::Group {
                    name: "team".into(),
                },
            },
        )
        .await;
    assert_eq!(code(r), ErrorCode::NotFound);
    Ok(())
}

#[tokio::test]
async fn an_upload_for_a_version_that_is_no_longer_current_is_refused() -> R<()> {
    let f = fixture()?;
    let bytes = sealed_bytes(10, 1);
    let size = bytes.len() as u64;
    let open = |path: &str, if_current| Request::UploadOpen {
        ns: P,
        path: path.into(),
        sealed_size: size,
        chunk_bytes: 0,
        batch: None,
        if_current: Some(if_current),
    };
    let opened = |r: Response| match r {
        Response::UploadOpened { upload_id, .. } => upload_id,
        other => panic!("unexpected {other:?}"),
    };
    // A new file: two machines both open it "while there is none"; the first commits,
    // the second's commit is refused.
    let first = opened(f.call("alice", open("aaaa", 0)).await?);
    let second = opened(f.call("alice", open("aaaa", 0)).await?);
    for id in [first, second] {
        f.data(id, 0, &bytes).await?;
    }
    assert!(matches!(f.commit(first).await?, Response::Entry(_)));
    assert_eq!(code(f.commit(second).await), ErrorCode::Conflict);
    // Now version 1 is current: an open for "none" or for version 7 is refused at once,
    // one for version 1 goes through.
    assert_eq!(
        code(f.call("alice", open("aaaa", 0)).await),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(f.call("alice", open("aaaa", 7)).await),
        ErrorCode::Conflict
    );
    let third = opened(f.call("alice", open("aaaa", 1)).await?);
    f.data(third, 0, &bytes).await?;
    assert!(matches!(f.commit(third).await?, Response::Entry(_)));
    // The same in a batch: each file is checked on its own.
    let many = f
        .call(
            "alice",
            Request::UploadOpenMany {
                ns: P,
                files: vec![
                    OpenFile {
                        path: "aaaa".into(),
                        sealed_size: size,
                        if_current: Some(1),
                    },
                    OpenFile {
                        path: "bbbb".into(),
                        sealed_size: size,
                        if_current: Some(0),
                    },
                ],
                batch: None,
            },
        )
        .await?;
    let Response::UploadsOpened { results } = many else {
        panic!("unexpected {many:?}");
    };
    assert!(matches!(&results[0], BatchResult::Error(e) if e.code == ErrorCode::Conflict));
    let BatchResult::Ok(b) = &results[1] else {
        panic!("unexpected {:?}", results[1]);
    };
    // Another upload of bbbb commits first: the batch's commit of it is refused.
    f.put("bbbb", &bytes).await?;
    let committed = f
        .put_many(vec![super::put_file(b.upload_id, bytes.clone())])
        .await?;
    assert_eq!(
        committed[0].as_ref().map_err(|e| e.code).err(),
        Some(ErrorCode::Conflict),
        "{committed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn expired_uploads_are_refused() -> R<()> {
    let f = fixture_with(|c| c.files.upload_expiry_s = 0, |s| Arc::new(s))?;
    let (id, _) = f.open("late", 17).await?;
    {
        use crate::db::schema::uploads;
        let mut c = f.state.db.conn()?;
        diesel::update(uploads::table.find(id))
            .set(uploads::expires_at.eq(db::now() - 10))
            .execute(&mut *c)?;
    }
    let e = err(f.data(id, 0, &[0; 17]).await);
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.message.contains("expired"), "{e}");
    Ok(())
}

#[tokio::test]
async fn quota_is_checked_at_open_and_at_commit() -> R<()> {
    let f = fixture()?;
    let set_quota = |q: i64| -> R<()> {
        let mut c = f.state.db.conn()?;
        db::users::set_quota(&mut c, f.id("alice"), q)?;
        Ok(())
    };
    set_quota(1000)?;
    let big = sealed_bytes(1000, 0);
    let e = err(f.open("big", big.len() as u64).await);
    assert_eq!(e.code, ErrorCode::QuotaExceeded);
    assert!(e.message.contains("uses 0 B of"), "{e}");

    // Open fits, then the operator lowers the quota before the commit.
    let small = sealed_bytes(500, 0);
    let (id, _) = f.open("small", small.len() as u64).await?;
    f.data(id, 0, &small).await?;
    set_quota(100)?;
    assert_eq!(code(f.commit(id).await), ErrorCode::QuotaExceeded);
    assert!(f.ls("", true).await?.is_empty());
    assert_eq!(f.usage().await?.used_bytes, 0);
    // Raised again, the same upload commits.
    set_quota(10_000)?;
    f.commit(id).await?;
    assert_eq!(f.get("small", None, 0).await?, small);
    Ok(())
}

#[tokio::test]
async fn unfinished_uploads_hold_their_declared_bytes_against_the_quota() -> R<()> {
    let f = fixture()?;
    let mut c = f.state.db.conn()?;
    db::users::set_quota(&mut c, f.id("alice"), 1200)?;
    drop(c);
    let part = sealed_bytes(500, 0);
    // Two uploads of 516 sealed bytes fit; a third would not, though nothing has arrived:
    // otherwise unfinished uploads could fill the disk far beyond the quota.
    let (first, _) = f.open("one", part.len() as u64).await?;
    f.open("two", part.len() as u64).await?;
    let e = err(f.open("three", part.len() as u64).await);
    assert_eq!(e.code, ErrorCode::QuotaExceeded);
    assert!(e.message.contains("unfinished uploads hold"), "{e}");
    // Finishing one moves its bytes from reserved to used; still no room for a third.
    f.data(first, 0, &part).await?;
    f.commit(first).await?;
    assert_eq!(
        err(f.open("three", part.len() as u64).await).code,
        ErrorCode::QuotaExceeded
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_write_leaves_nothing_visible() -> R<()> {
    let budget = SEALED_CHUNK_LEN as u64 + 1000;
    let f = fixture_with(|_| {}, |s| Arc::new(FullDisk { inner: s, budget }))?;
    let bytes = sealed_bytes(3 << 20, 9);
    let (id, _) = f.open("full", bytes.len() as u64).await?;
    let e = err(f.data(id, 0, &bytes).await);
    assert!(e.message.starts_with("no storage space"), "{e}");
    // The upload is released at once, with what it had stored.
    assert!(f.state.blobs.list_partials()?.is_empty());
    assert_eq!(f.open_uploads()?, 0);
    assert_eq!(code(f.commit(id).await), ErrorCode::NotFound);
    assert!(f.ls("", true).await?.is_empty());
    assert_eq!(f.usage().await?.used_bytes, 0);
    Ok(())
}

#[tokio::test]
async fn concurrent_uploads_of_one_new_path_all_end_cleanly() -> R<()> {
    let f = Arc::new(fixture()?);
    let mut tasks = Vec::new();
    for i in 0..6u8 {
        let f = Arc::clone(&f);
        tasks.push(tokio::spawn(async move {
            let bytes = sealed_bytes(8, i);
            f.put("same", &bytes)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }));
    }
    for t in tasks {
        t.await?
            .map_err(|e| -> Box<dyn std::error::Error> { e.into() })?;
    }
    let listed = f.ls("", false).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version_count, 6);
    Ok(())
}
