//! Batches of small files (`upload_open_many` → `upload_put_many`): one transaction for
//! every file, a bad file refused alone, the quota and the limits, batch tokens given up,
//! expiry, retention, and blobs that never commit or cannot be written.

use std::sync::Arc;

use diesel::prelude::*;
use vault_proto::proto::{
    BATCH_MAX_FILES, BatchResult, CommittedFile, ErrorCode, OpenedUpload, PutFile, Request,
    Response, SMALL_FILE_MAX,
};
use vault_proto::sizes::sealed_len;

use super::{FileCalls, FullDisk, P, fixture, fixture_with, put_file};
use crate::blobs::BlobId;
use crate::db;
use crate::files::small::{BATCH_EXPIRY_S, MAX_ABANDONED_BATCHES};
use crate::testing::{R, code, err, sealed_bytes};

#[tokio::test]
async fn aborting_a_batch_token_drops_its_uploads_and_refuses_a_late_open_with_it() -> R<()> {
    let f = fixture()?;
    let size = sealed_len(10);
    let token = "0123456789abcdef0123456789abcdef";
    let other = "fedcba9876543210fedcba9876543210";
    let opened = f
        .open_many_as(&[("aaaa", size), ("dddd/bbbb", size)], Some(token))
        .await?;
    assert!(opened.iter().all(Result::is_ok), "{opened:?}");
    let kept = f.open_many_as(&[("cccc", size)], Some(other)).await?;
    assert_eq!(f.open_uploads()?, 3);

    let abort = |batch: &str| Request::UploadAbortBatch {
        batch: batch.into(),
    };
    assert_eq!(f.call("alice", abort(token)).await?, Response::Ok);
    assert_eq!(
        f.open_uploads()?,
        1,
        "only the other token's upload is open"
    );
    // The request of a killed client, arriving after the abort, opens nothing.
    let late = f.open_many_as(&[("eeee", size)], Some(token)).await;
    assert_eq!(late.map_err(|e| e.code), Err(ErrorCode::NotFound));
    assert_eq!(f.open_uploads()?, 1);
    // A token that opened nothing aborts fine; one of the wrong shape is refused.
    assert_eq!(
        f.call("alice", abort(&"ab".repeat(16))).await?,
        Response::Ok
    );
    for bad in ["", "abc", &"AB".repeat(16), &"0".repeat(33)] {
        let refused = f.call("alice", abort(bad)).await.map_err(|e| e.code);
        assert_eq!(refused, Err(ErrorCode::BadRequest), "{bad:?}");
        let refused = f.open_many_as(&[("ffff", size)], Some(bad)).await;
        assert_eq!(refused.map_err(|e| e.code), Err(ErrorCode::BadRequest));
    }

    // What the aborted token opened left no rows; the other upload still commits.
    let id = kept[0].as_ref().map_err(|e| e.message.clone())?.upload_id;
    let committed = f.put_many(vec![put_file(id, sealed_bytes(10, 1))]).await?;
    assert!(committed[0].is_ok(), "{committed:?}");
    let names: Vec<String> = f.ls("", true).await?.into_iter().map(|e| e.path).collect();
    assert_eq!(names, ["cccc"]);

    // gc forgets a given-up token once it expires.
    let count = || -> R<i64> {
        let mut c = f.state.db.conn()?;
        Ok(crate::db::schema::abandoned_batches::table
            .count()
            .get_result(&mut *c)?)
    };
    assert_eq!(count()?, 2);
    let mut c = f.state.db.conn()?;
    assert_eq!(
        crate::db::files::batches::purge_expired(&mut c, db::now() + BATCH_EXPIRY_S + 1)?,
        2
    );
    Ok(())
}

#[tokio::test]
async fn a_large_files_upload_opened_under_a_token_is_aborted_by_it() -> R<()> {
    let f = fixture()?;
    let token = "00112233445566778899aabbccddeeff";
    let open = |path: &str, batch: &str| Request::UploadOpen {
        ns: P,
        path: path.into(),
        sealed_size: sealed_len(1 << 20),
        chunk_bytes: 0,
        batch: Some(batch.into()),
        if_current: None,
    };
    let opened = f.call("alice", open("aaaa", token)).await?;
    assert!(
        matches!(opened, Response::UploadOpened { .. }),
        "{opened:?}"
    );
    assert_eq!(f.open_uploads()?, 1);
    let abort = Request::UploadAbortBatch {
        batch: token.into(),
    };
    assert_eq!(f.call("alice", abort).await?, Response::Ok);
    assert_eq!(f.open_uploads()?, 0, "the token's upload is gone");
    // The same request arriving late opens nothing; a token of the wrong shape is refused.
    let late = f.call("alice", open("aaaa", token)).await;
    assert_eq!(late.map_err(|e| e.code), Err(ErrorCode::NotFound));
    let bad = f.call("alice", open("aaaa", "ABC")).await;
    assert_eq!(bad.map_err(|e| e.code), Err(ErrorCode::BadRequest));
    assert_eq!(f.open_uploads()?, 0);
    Ok(())
}

#[tokio::test]
async fn a_user_holds_a_bounded_number_of_given_up_batch_tokens() -> R<()> {
    let f = fixture()?;
    let abort = |n: i64| Request::UploadAbortBatch {
        batch: format!("{n:032x}"),
    };
    for n in 0..MAX_ABANDONED_BATCHES {
        assert_eq!(f.call("alice", abort(n)).await?, Response::Ok);
    }
    // The same token again takes no more room; a new one is refused.
    assert_eq!(f.call("alice", abort(0)).await?, Response::Ok);
    let refused = f
        .call("alice", abort(MAX_ABANDONED_BATCHES))
        .await
        .map_err(|e| e.code);
    assert_eq!(refused, Err(ErrorCode::Conflict));
    Ok(())
}

#[tokio::test]
async fn a_batch_commits_every_file_at_once_under_one_revision() -> R<()> {
    let f = fixture()?;
    let old = sealed_bytes(10, 0);
    f.put("aaaa", &old).await?;
    let before = f.usage().await?;

    let names = ["aaaa", "dddd/bbbb", "dddd/cccc", "dddd/eeee/ffff", "gggg"];
    let contents: Vec<Vec<u8>> = (0..names.len())
        .map(|i| sealed_bytes(100 * i as u64 + 1, i as u8))
        .collect();
    let request: Vec<(&str, u64)> = names
        .iter()
        .zip(&contents)
        .map(|(n, c)| (*n, c.len() as u64))
        .collect();
    let opened: Vec<OpenedUpload> = f
        .open_many(&request)
        .await?
        .into_iter()
        .collect::<Result<_, _>>()?;
    assert_eq!(
        opened.iter().map(|o| o.version).collect::<Vec<_>>(),
        [2, 1, 1, 1, 1]
    );
    // Reserved, not visible: the listing and the change feed still show the old state.
    assert_eq!(f.ls("", true).await?.len(), 1);
    assert_eq!(f.usage().await?.revision, before.revision);
    assert_eq!(f.open_uploads()?, 5);

    let files = opened
        .iter()
        .zip(&contents)
        .map(|(o, c)| put_file(o.upload_id, c.clone()))
        .collect();
    let committed: Vec<CommittedFile> = f
        .put_many(files)
        .await?
        .into_iter()
        .collect::<Result<_, _>>()?;
    let after = f.usage().await?;
    assert_eq!(after.revision, before.revision + 1, "one revision");
    for (c, o) in committed.iter().zip(&opened) {
        assert_eq!((c.file_id, c.version), (o.file_id, o.version));
        assert_eq!(c.revision, after.revision);
    }
    for (name, bytes) in names.iter().zip(&contents) {
        assert_eq!(&f.get(name, None, 0).await?, bytes, "{name}");
    }
    let listed = f.ls("", true).await?;
    let paths: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "aaaa",
            "dddd",
            "dddd/bbbb",
            "dddd/cccc",
            "dddd/eeee",
            "dddd/eeee/ffff",
            "gggg"
        ]
    );
    assert!(listed.iter().all(|e| e.revision == after.revision));
    let aaaa = listed.iter().find(|e| e.path == "aaaa").ok_or("aaaa")?;
    assert_eq!(aaaa.version_count, 2);
    let total: u64 = contents.iter().map(|c| c.len() as u64).sum::<u64>() + old.len() as u64;
    assert_eq!(after.used_bytes, total);
    assert_eq!(after.files, 5);
    assert_eq!(f.open_uploads()?, 0);
    assert_eq!(f.partials()?, 0);
    // The change feed has every file (and the new folders) at the new revision.
    match f
        .call(
            "alice",
            Request::Changes {
                ns: P,
                since: before.revision,
                after: None,
            },
        )
        .await?
    {
        Response::Changes { changes, .. } => assert_eq!(changes.len(), 7),
        other => panic!("{other:?}"),
    }
    // The uploads are gone once committed.
    let again = f.put_many(vec![put_file(opened[1].upload_id, contents[1].clone())]);
    assert_eq!(
        again.await?[0].as_ref().err().map(|e| e.code),
        Some(ErrorCode::NotFound)
    );
    Ok(())
}

#[tokio::test]
async fn a_bad_file_in_a_batch_is_refused_alone() -> R<()> {
    let f = fixture()?;
    f.call(
        "alice",
        Request::Mkdir {
            ns: P,
            path: "dir".into(),
        },
    )
    .await?;
    f.put("gone", &sealed_bytes(5, 0)).await?;
    let ok = sealed_bytes(20, 1);
    let n = ok.len() as u64;
    let opened = f
        .open_many(&[
            ("dir", n),     // a folder is there
            ("okay", n),    // fine
            ("bad", 5),     // no plaintext seals to 5 bytes
            ("okay/x", n),  // a parent is a file (the upload just above)
            ("BAD", n),     // not an encrypted path
            ("", n),        // the root
            ("gone", n),    // fine now, deleted before the put
            ("keyless", n), // fine now, a bad key length at the put
            ("short", n),   // fine now, fewer bytes at the put
        ])
        .await?;
    let codes: Vec<Option<ErrorCode>> = opened
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.code))
        .collect();
    use ErrorCode::{BadRequest, Conflict};
    assert_eq!(
        codes,
        [
            Some(Conflict),
            None,
            Some(BadRequest),
            Some(Conflict),
            Some(BadRequest),
            Some(BadRequest),
            None,
            None,
            None
        ]
    );
    let id = |i: usize| {
        opened[i]
            .as_ref()
            .map(|o| o.upload_id)
            .map_err(Clone::clone)
    };
    f.call(
        "alice",
        Request::Remove {
            ns: P,
            path: "gone".into(),
            recursive: false,
        },
    )
    .await?;
    let mut keyless = put_file(id(7)?, ok.clone());
    keyless.wrapped_key = vec![7; 60].into();
    let results = f
        .put_many(vec![
            put_file(id(1)?, ok.clone()),
            put_file(id(6)?, ok.clone()),
            keyless,
            put_file(id(8)?, ok[1..].to_vec()),
            put_file(424_242, ok.clone()),
            put_file(id(1)?, ok.clone()),
        ])
        .await?;
    let codes: Vec<Option<ErrorCode>> = results
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.code))
        .collect();
    assert_eq!(
        codes,
        [
            None,
            Some(Conflict),
            Some(BadRequest),
            Some(BadRequest),
            Some(ErrorCode::NotFound),
            Some(BadRequest)
        ]
    );
    assert_eq!(f.get("okay", None, 0).await?, ok);
    let visible: Vec<String> = f.ls("", true).await?.into_iter().map(|e| e.path).collect();
    assert_eq!(visible, ["dir", "okay"]);
    // The file in the trash still counts.
    assert_eq!(f.usage().await?.used_bytes, n + sealed_len(5));
    // The refused uploads are still open; the client may finish them alone or abort.
    assert_eq!(code(f.commit(id(8)?).await), ErrorCode::Conflict);
    for i in [6, 7, 8] {
        f.call("alice", Request::UploadAbort { upload_id: id(i)? })
            .await?;
    }
    assert_eq!(f.open_uploads()?, 0);
    Ok(())
}

#[tokio::test]
async fn a_batch_over_the_quota_commits_nothing() -> R<()> {
    let f = fixture()?;
    let files: Vec<Vec<u8>> = (0..4).map(|i| sealed_bytes(1000, i)).collect();
    let request: Vec<(&str, u64)> = ["aa", "bb", "cc", "dd"]
        .into_iter()
        .zip(&files)
        .map(|(n, c)| (n, c.len() as u64))
        .collect();
    // Three fit, four do not: the whole batch is refused and nothing is reserved.
    f.set_quota(3100)?;
    let e = err(f.open_many(&request).await);
    assert_eq!(e.code, ErrorCode::QuotaExceeded);
    assert_eq!(f.open_uploads()?, 0);

    // Opened within the quota; the quota is lowered before the put: nothing commits.
    f.set_quota(10_000)?;
    let opened: Vec<OpenedUpload> = f
        .open_many(&request)
        .await?
        .into_iter()
        .collect::<Result<_, _>>()?;
    f.set_quota(3100)?;
    let revision = f.usage().await?.revision;
    let put = |opened: &[OpenedUpload]| -> Vec<PutFile> {
        opened
            .iter()
            .zip(&files)
            .map(|(o, c)| put_file(o.upload_id, c.clone()))
            .collect()
    };
    let e = err(f.put_many(put(&opened)).await);
    assert_eq!(e.code, ErrorCode::QuotaExceeded);
    assert!(e.message.contains("quota exceeded"), "{e}");
    assert!(f.ls("", true).await?.is_empty());
    let usage = f.usage().await?;
    assert_eq!((usage.used_bytes, usage.revision), (0, revision));
    // The same uploads commit once the quota allows.
    f.set_quota(10_000)?;
    assert!(f.put_many(put(&opened)).await?.iter().all(Result::is_ok));
    assert_eq!(f.ls("", true).await?.len(), 4);
    Ok(())
}

#[tokio::test]
async fn batches_over_the_limits_are_refused_whole() -> R<()> {
    let f = fixture()?;
    let small = sealed_len(10);
    let names: Vec<String> = (0..=BATCH_MAX_FILES)
        .map(|i| format!("f{}", "a".repeat(i % 300 + 1)))
        .collect();
    let too_many: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), small)).collect();
    let refused = [
        (
            err(f.open_many(&too_many).await),
            ErrorCode::TooLarge,
            "at most 256 files",
        ),
        (
            err(f.open_many(&[("aa", SMALL_FILE_MAX + 16)]).await),
            ErrorCode::TooLarge,
            "upload it alone",
        ),
        (
            err(f.open_many(&[("aa", SMALL_FILE_MAX); 13]).await),
            ErrorCode::TooLarge,
            "sealed files",
        ),
        (
            err(f.open_many(&[]).await),
            ErrorCode::BadRequest,
            "empty batch",
        ),
    ];
    for (e, code, text) in refused {
        assert_eq!(e.code, code, "{e}");
        assert!(e.message.contains(text), "{e}");
    }
    let long = vec!["a".repeat(436); 5].join("/");
    let long_paths = vec![(long.as_str(), small); BATCH_MAX_FILES];
    let e = err(f.open_many(&long_paths).await);
    assert_eq!(e.code, ErrorCode::TooLarge);
    assert!(e.message.contains("paths of a batch"), "{e}");

    let many = (0..=BATCH_MAX_FILES as i64)
        .map(|i| put_file(i, vec![0; 17]))
        .collect();
    assert_eq!(err(f.put_many(many).await).code, ErrorCode::TooLarge);
    let big = vec![put_file(1, vec![0; SMALL_FILE_MAX as usize + 1])];
    assert_eq!(err(f.put_many(big).await).code, ErrorCode::TooLarge);
    let heavy = (0..13)
        .map(|i| put_file(i, vec![0; SMALL_FILE_MAX as usize]))
        .collect();
    assert_eq!(err(f.put_many(heavy).await).code, ErrorCode::TooLarge);
    assert_eq!(
        err(f.put_many(Vec::new()).await).code,
        ErrorCode::BadRequest
    );
    assert_eq!(f.open_uploads()?, 0);
    assert!(f.ls("", true).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn another_users_uploads_are_not_found_in_a_batch() -> R<()> {
    let mut f = fixture()?;
    f.add_user("bob", 2)?;
    let bytes = sealed_bytes(3, 3);
    let opened = f.open_many(&[("aa", bytes.len() as u64)]).await?;
    let id = opened[0].as_ref().map_err(Clone::clone)?.upload_id;
    let results = match f
        .call(
            "bob",
            Request::UploadPutMany {
                files: vec![put_file(id, bytes.clone())],
            },
        )
        .await?
    {
        Response::UploadsCommitted { results } => results,
        other => panic!("{other:?}"),
    };
    assert!(matches!(&results[0], BatchResult::Error(e) if e.code == ErrorCode::NotFound));
    assert!(f.ls("", true).await?.is_empty());
    assert!(f.put_many(vec![put_file(id, bytes)]).await?[0].is_ok());
    Ok(())
}

/// A crash after the blobs were written and before the transaction: the uploads stay open
/// with their blobs sealed; `upload_commit` could still finish them, and once they expire
/// gc drops the rows and then the blobs as orphans.
#[tokio::test]
async fn blobs_of_a_batch_that_never_committed_are_collected() -> R<()> {
    use crate::maintenance::{Policy, fsck, gc};
    let f = fixture()?;
    let bytes = sealed_bytes(30, 9);
    let opened: Vec<OpenedUpload> = f
        .open_many(&[("aa", bytes.len() as u64), ("bb", bytes.len() as u64)])
        .await?
        .into_iter()
        .collect::<Result<_, _>>()?;
    let blob_ids: Vec<BlobId> = {
        let mut c = f.state.db.conn()?;
        let rows: Vec<String> = crate::db::schema::uploads::table
            .select(crate::db::schema::uploads::blob_id)
            .order(crate::db::schema::uploads::id.asc())
            .load(&mut *c)?;
        rows.iter().filter_map(|b| BlobId::parse(b)).collect()
    };
    // What put_many does before its transaction.
    let batch: Vec<(BlobId, &[u8])> = blob_ids.iter().map(|b| (b.clone(), &bytes[..])).collect();
    f.state.blobs.put_many(&batch)?;
    assert_eq!(f.status(opened[0].upload_id).await?, bytes.len() as u64);
    assert!(f.ls("", true).await?.is_empty());
    {
        let mut c = f.state.db.conn()?;
        assert!(fsck(&mut c, f.state.blobs.as_ref(), false, db::now())?.is_clean());
    }
    // One is finished the single-file way; the other is abandoned.
    f.commit(opened[0].upload_id).await?;
    assert_eq!(f.get("aa", None, 0).await?, bytes);
    {
        let mut c = f.state.db.conn()?;
        diesel::update(crate::db::schema::uploads::table)
            .set(crate::db::schema::uploads::expires_at.eq(db::now() - 10))
            .execute(&mut *c)?;
        let policy = Policy {
            version_retention: 10,
            trash_retention_days: 30,
            blob_grace_s: 0,
        };
        let report = gc(&mut c, f.state.blobs.as_ref(), &policy, db::now())?;
        assert_eq!(report.expired_uploads, 1);
        assert_eq!(report.abandoned_entries, 1);
        assert_eq!(report.orphan_blobs, 1);
        assert!(fsck(&mut c, f.state.blobs.as_ref(), false, db::now())?.is_clean());
    }
    assert_eq!(f.state.blobs.size(&blob_ids[1])?, None);
    assert_eq!(f.get("aa", None, 0).await?, bytes);
    Ok(())
}

#[tokio::test]
async fn expired_uploads_hold_no_quota_and_batch_uploads_expire_soon() -> R<()> {
    let f = fixture()?;
    f.set_quota(3100)?;
    let size = sealed_len(1000);
    let opened = f
        .open_many(&[("aa", size), ("bb", size), ("cc", size)])
        .await?;
    let expires = opened[0].as_ref().map_err(Clone::clone)?.expires_at;
    assert!(expires <= db::now() + BATCH_EXPIRY_S);
    assert_eq!(
        err(f.open_many(&[("dd", size)]).await).code,
        ErrorCode::QuotaExceeded
    );
    {
        let mut c = f.state.db.conn()?;
        diesel::update(crate::db::schema::uploads::table)
            .set(crate::db::schema::uploads::expires_at.eq(db::now() - 1))
            .execute(&mut *c)?;
    }
    assert!(f.open_many(&[("dd", size)]).await?[0].is_ok());
    Ok(())
}

#[tokio::test]
async fn batches_keep_the_retention_and_take_one_path_twice() -> R<()> {
    let f = fixture_with(|c| c.version_retention = 3, |s| Arc::new(s))?;
    let sizes = [10u64, 20, 30, 40, 50];
    for (i, plain) in sizes.iter().enumerate() {
        let bytes = sealed_bytes(*plain, i as u8);
        let opened = f
            .open_many(&[("aa", bytes.len() as u64), ("aa/no", bytes.len() as u64)])
            .await?;
        // The second path is under a file (reserved just before in the same batch).
        assert_eq!(
            opened[1].as_ref().err().map(|e| e.code),
            Some(ErrorCode::Conflict)
        );
        let id = opened[0].as_ref().map_err(Clone::clone)?.upload_id;
        assert!(f.put_many(vec![put_file(id, bytes)]).await?[0].is_ok());
    }
    let listed = f.ls("", false).await?;
    assert_eq!(listed[0].version_count, 3);
    let kept: u64 = sizes[2..].iter().map(|p| sealed_len(*p)).sum();
    assert_eq!(f.usage().await?.used_bytes, kept);
    assert_eq!(f.deleted_blob_count()?, 2);

    // One path twice in one batch: two versions, the later one current.
    let (one, two) = (sealed_bytes(7, 1), sealed_bytes(8, 2));
    let opened: Vec<OpenedUpload> = f
        .open_many(&[("bb", one.len() as u64), ("bb", two.len() as u64)])
        .await?
        .into_iter()
        .collect::<Result<_, _>>()?;
    assert_eq!((opened[0].version, opened[1].version), (1, 2));
    assert_eq!(opened[0].file_id, opened[1].file_id);
    let files = vec![
        put_file(opened[0].upload_id, one.clone()),
        put_file(opened[1].upload_id, two.clone()),
    ];
    assert!(f.put_many(files).await?.iter().all(Result::is_ok));
    assert_eq!(f.get("bb", None, 0).await?, two);
    assert_eq!(f.get("bb", Some(1), 0).await?, one);
    Ok(())
}

#[tokio::test]
async fn a_batch_whose_blobs_cannot_be_written_commits_nothing() -> R<()> {
    // Each of the store's writers fails after 50 bytes (a full disk); the trait's portable
    // `put_many` is used, as for any store that does not override it.
    let f = fixture_with(
        |_| {},
        |s| {
            Arc::new(FullDisk {
                inner: s,
                budget: 50,
            })
        },
    )?;
    let files: Vec<Vec<u8>> = (0..3).map(|i| sealed_bytes(60, i)).collect();
    let request: Vec<(&str, u64)> = ["aa", "bb", "cc"]
        .into_iter()
        .zip(&files)
        .map(|(n, c)| (n, c.len() as u64))
        .collect();
    let opened: Vec<OpenedUpload> = f
        .open_many(&request)
        .await?
        .into_iter()
        .collect::<Result<_, _>>()?;
    let puts = opened
        .iter()
        .zip(&files)
        .map(|(o, c)| put_file(o.upload_id, c.clone()))
        .collect();
    let e = err(f.put_many(puts).await);
    assert!(e.message.starts_with("no storage space"), "{e}");
    assert!(f.ls("", true).await?.is_empty());
    assert_eq!(f.usage().await?.used_bytes, 0);
    // The batch's uploads are released at once.
    assert_eq!(f.open_uploads()?, 0);
    Ok(())
}
