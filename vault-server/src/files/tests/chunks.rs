//! Chunks of format 2: stored once per space, refused by shape, counted against the
//! quota (and reserved by the `upload_open` that announces them), named by commits, and
//! freed by gc once no kept version uses them.

use vault_proto::proto::{ErrorCode, Request, Response};
use vault_proto::sizes::CHUNK_PAD;

use super::{FileCalls, P, fixture};
use crate::files::{chunks, download};
use crate::maintenance::{Policy, gc::gc};
use crate::testing::{R, code};

const PAD: usize = CHUNK_PAD as usize;

fn id(n: u8) -> Vec<u8> {
    vec![n; 32]
}

/// `chunk_put` of `bytes` as chunk `id`, announcing `size` bytes.
async fn put_sized(
    f: &crate::testing::Fixture,
    id: &[u8],
    size: u64,
    mut bytes: &[u8],
) -> Result<Response, vault_proto::proto::ApiError> {
    let chunk = chunks::ChunkPut {
        id: id.to_vec(),
        sealed_size: size,
        upload_id: None,
    };
    chunks::put(&f.state, f.alice(), &P, chunk, &mut bytes).await
}

async fn put(
    f: &crate::testing::Fixture,
    id: &[u8],
    bytes: &[u8],
) -> Result<Response, vault_proto::proto::ApiError> {
    put_sized(f, id, bytes.len() as u64, bytes).await
}

async fn missing(f: &crate::testing::Fixture, ids: &[Vec<u8>]) -> R<Vec<u32>> {
    let request = Request::ChunksMissing {
        ns: P,
        ids: ids.iter().map(|i| i.clone().into()).collect(),
    };
    match f.call("alice", request).await? {
        Response::ChunksMissing { missing } => Ok(missing),
        other => Err(format!("unexpected {other:?}").into()),
    }
}

async fn get(f: &crate::testing::Fixture, id: &[u8]) -> R<Vec<u8>> {
    let (header, body) = chunks::get(&f.state, f.alice(), &P, id.to_vec()).await?;
    let mut out = Vec::new();
    download::send(body, &mut out).await?;
    assert_eq!(
        header,
        Response::Chunk {
            sealed_size: out.len() as u64
        }
    );
    Ok(out)
}

#[tokio::test]
async fn a_chunk_is_stored_once_refused_by_its_shape_and_counted_against_the_quota() -> R<()> {
    let f = fixture()?;
    let a = vec![0xa1; PAD];
    assert_eq!(put(&f, &id(1), &a).await?, Response::Ok);
    assert_eq!(f.usage().await?.used_bytes, PAD as u64);
    // The same id again: nothing is read, nothing counted.
    assert_eq!(put(&f, &id(1), &[0xff; 2 * PAD]).await?, Response::Ok);
    assert_eq!(f.usage().await?.used_bytes, PAD as u64);
    assert_eq!(get(&f, &id(1)).await?, a);
    assert_eq!(missing(&f, &[id(1), id(2), id(1), id(3)]).await?, [1, 3]);

    // Shapes the server refuses before reading a byte, and bodies that do not match.
    assert_eq!(code(put(&f, &[1; 31], &a).await), ErrorCode::BadRequest);
    assert_eq!(
        code(put(&f, &id(2), &[0; 1000]).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(put_sized(&f, &id(2), (5 << 20) as u64, &a).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(put_sized(&f, &id(2), 2 * CHUNK_PAD, &a).await),
        ErrorCode::BadRequest,
        "a chunk cut short"
    );
    assert_eq!(
        code(put_sized(&f, &id(2), CHUNK_PAD, &[0; 2 * PAD]).await),
        ErrorCode::TooLarge,
        "more bytes than announced"
    );
    assert_eq!(missing(&f, &[id(2)]).await?, [0], "nothing stored for them");
    assert_eq!(f.partials()?, 0, "and nothing left behind");
    assert_eq!(
        code(chunks::get(&f.state, f.alice(), &P, id(2)).await),
        ErrorCode::NotFound
    );
    let too_many: Vec<Vec<u8>> = (0..=4096u32).map(|_| id(9)).collect();
    assert!(missing(&f, &too_many).await.is_err());

    // The quota counts stored chunks; an upload that announces chunks reserves them.
    f.set_quota(2 * CHUNK_PAD as i64 + 100)?;
    let announce = |bytes| Request::UploadOpen {
        ns: P,
        path: "aaaa".into(),
        sealed_size: 100,
        chunk_bytes: bytes,
        batch: None,
        if_current: None,
    };
    assert_eq!(
        code(f.call("alice", announce(2 * CHUNK_PAD)).await),
        ErrorCode::QuotaExceeded,
        "refused before any chunk is sent"
    );
    f.call("alice", announce(CHUNK_PAD)).await?;
    assert_eq!(put(&f, &id(4), &vec![4; PAD]).await?, Response::Ok);
    assert_eq!(
        code(put(&f, &id(5), &vec![5; PAD]).await),
        ErrorCode::QuotaExceeded
    );
    assert_eq!(f.usage().await?.used_bytes, 2 * CHUNK_PAD);
    Ok(())
}

#[tokio::test]
async fn a_commit_names_its_chunks_and_gc_frees_those_no_version_uses() -> R<()> {
    let f = fixture()?;
    for n in [1, 2, 3] {
        put(&f, &id(n), &vec![n; PAD]).await?;
    }
    let commit = |upload_id, chunks: Vec<Vec<u8>>| Request::UploadCommit {
        upload_id,
        wrapped_key: vec![7; 61].into(),
        sealed_meta: vec![8; 86].into(),
        chunks: chunks.into_iter().map(Into::into).collect(),
    };
    // A chunk the space does not hold: refused, nothing committed.
    let (upload, _) = f.open("aaaa", 100).await?;
    f.data(upload, 0, &[0; 100]).await?;
    let refused = f.call("alice", commit(upload, vec![id(1), id(9)])).await;
    assert_eq!(code(refused), ErrorCode::Conflict);
    assert!(f.ls("", false).await?.is_empty());
    // Chunks 1 and 2 (1 twice) in version 1, 2 and 3 in version 2 of another file.
    f.call("alice", commit(upload, vec![id(1), id(2), id(1)]))
        .await?;
    let (other, _) = f.open("bbbb", 100).await?;
    f.data(other, 0, &[0; 100]).await?;
    f.call("alice", commit(other, vec![id(2), id(3)])).await?;
    let used = f.usage().await?.used_bytes;
    assert_eq!(used, 3 * CHUNK_PAD + 200);

    let policy = Policy {
        version_retention: 10,
        trash_retention_days: 30,
        blob_grace_s: 0,
    };
    let later = crate::db::now() + 10;
    let mut conn = f.state.db.conn()?;
    let report = gc(&mut conn, f.state.blobs.as_ref(), &policy, later)?;
    assert_eq!(report.unused_chunks, 0, "every chunk is in use");

    // aaaa goes: chunk 1 was only its own; 2 is still bbbb's.
    f.call(
        "alice",
        Request::Remove {
            ns: P,
            path: "aaaa".into(),
            recursive: false,
        },
    )
    .await?;
    f.call("alice", Request::TrashEmpty { ns: P }).await?;
    let report = gc(&mut conn, f.state.blobs.as_ref(), &policy, later)?;
    assert_eq!(
        (report.unused_chunks, report.unused_chunk_bytes),
        (1, CHUNK_PAD as i64)
    );
    assert_eq!(missing(&f, &[id(1), id(2), id(3)]).await?, [0]);
    assert_eq!(f.usage().await?.used_bytes, 2 * CHUNK_PAD + 100);
    assert_eq!(get(&f, &id(2)).await?, vec![2; PAD]);
    Ok(())
}

/// The bytes held in reserve for alice's unfinished uploads.
fn reserved(f: &crate::testing::Fixture) -> R<u64> {
    let mut c = f.state.db.conn()?;
    let ns = crate::db::files::namespaces::personal(&mut c, f.id("alice"))?.ok_or("no space")?;
    Ok(crate::db::files::uploads::reserved_bytes(
        &mut c,
        ns.id,
        crate::db::now(),
    )?)
}

#[tokio::test]
async fn a_chunk_sent_for_an_upload_is_no_longer_held_in_reserve_for_it() -> R<()> {
    let f = crate::testing::Fixture::new("files", &["alice", "bob"])?;
    let open = |path: &str, chunk_bytes| Request::UploadOpen {
        ns: P,
        path: path.into(),
        sealed_size: 100,
        chunk_bytes,
        batch: None,
        if_current: None,
    };
    let put_for = |id: Vec<u8>, upload_id, bytes: Vec<u8>| {
        let chunk = chunks::ChunkPut {
            id,
            sealed_size: bytes.len() as u64,
            upload_id,
        };
        let f = &f;
        async move { chunks::put(&f.state, f.alice(), &P, chunk, &mut bytes.as_slice()).await }
    };
    let opened = |r: Response| match r {
        Response::UploadOpened { upload_id, .. } => Ok(upload_id),
        other => Err(format!("unexpected {other:?}")),
    };
    // Room for one upload of two chunks, and then one of a single chunk.
    f.set_quota(3 * CHUNK_PAD as i64 + 200)?;
    let first = opened(f.call("alice", open("aaaa", 2 * CHUNK_PAD)).await?)?;
    assert_eq!(reserved(&f)?, 2 * CHUNK_PAD + 100);

    // Sent for the upload: stored, and no longer held for it. Counted once, the second
    // upload fits; counted twice (stored and held) it would not.
    put_for(id(1), Some(first), vec![1; PAD]).await?;
    assert_eq!(f.usage().await?.used_bytes, CHUNK_PAD);
    assert_eq!(reserved(&f)?, CHUNK_PAD + 100);
    let second = opened(f.call("alice", open("bbbb", CHUNK_PAD)).await?)?;
    assert_eq!(reserved(&f)?, 2 * CHUNK_PAD + 200);

    // A chunk the space holds already (another upload sent it): nothing is read or
    // counted, and the upload holds it no longer either; a chunk sent twice takes off
    // no more than the upload holds.
    put_for(id(1), Some(second), vec![1; PAD]).await?;
    assert_eq!(f.usage().await?.used_bytes, CHUNK_PAD);
    assert_eq!(reserved(&f)?, CHUNK_PAD + 200);
    put_for(id(1), Some(second), vec![1; PAD]).await?;
    assert_eq!(reserved(&f)?, CHUNK_PAD + 200);

    // Only the caller's own live upload can be named.
    let bobs = opened(f.call("bob", open("cccc", 0)).await?)?;
    assert_eq!(
        code(put_for(id(2), Some(bobs), vec![2; PAD]).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(put_for(id(2), Some(first + 1000), vec![2; PAD]).await),
        ErrorCode::NotFound
    );
    {
        use diesel::prelude::*;
        let mut c = f.state.db.conn()?;
        diesel::update(crate::db::schema::uploads::table.find(second))
            .set(crate::db::schema::uploads::expires_at.eq(0))
            .execute(&mut *c)?;
    }
    assert_eq!(
        code(put_for(id(2), Some(second), vec![2; PAD]).await),
        ErrorCode::NotFound,
        "expired"
    );
    assert_eq!(f.usage().await?.used_bytes, CHUNK_PAD, "nothing stored");
    Ok(())
}

#[tokio::test]
async fn the_same_chunk_sent_twice_at_once_is_stored_and_counted_once() -> R<()> {
    let f = fixture()?;
    let (six, bytes) = (id(6), vec![6; 2 * PAD]);
    let (a, b) = tokio::join!(put(&f, &six, &bytes), put(&f, &six, &bytes));
    assert_eq!((a?, b?), (Response::Ok, Response::Ok));
    assert_eq!(f.usage().await?.used_bytes, 2 * CHUNK_PAD);
    assert_eq!(get(&f, &id(6)).await?, bytes);
    // Every blob in the store is the chunk's, or a second copy queued for gc.
    let stored = f.state.blobs.list()?.len() as i64;
    assert_eq!(stored - f.deleted_blob_count()?, 1);
    Ok(())
}
