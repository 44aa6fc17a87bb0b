//! Handler-level tests of the file requests: a temp SQLite database and a temp
//! `FsBlobStore` (or one whose writer fails), driven through the router, `receive`,
//! `prepare` and `send` without QUIC. Sealed bytes are arbitrary bytes of a valid STREAM
//! length: the server never opens them.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use diesel::prelude::*;
use tokio::io::{AsyncRead, ReadBuf};
use vault_proto::proto::{
    ApiError, BATCH_MAX_FILES, BatchResult, ChangeCursor, CommittedFile, EntryInfo, EntryKind,
    ErrorCode, NsRef, OpenFile, OpenedUpload, PutFile, Rename, Request, Response, SMALL_FILE_MAX,
};
use vault_proto::sizes::{SEALED_CHUNK_LEN, sealed_len};

use super::small::{BATCH_EXPIRY_S, MAX_ABANDONED_BATCHES};
use super::{download, upload};
use crate::blobs::{BlobId, BlobReader, BlobStore, FsBlobStore, PartialWriter, StoredBlob};
use crate::config::Config;
use crate::db;
use crate::db::schema::{deleted_blobs, entries, namespaces};
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

use crate::testing::{self, R};

const P: NsRef = NsRef::Personal;

struct Fixture {
    _dir: tempfile::TempDir,
    state: ServerState,
    alice: SessionCtx,
}

/// A blob store whose partial writers fail once `budget` bytes were written (a full disk).
#[derive(Debug)]
struct FullDisk {
    inner: FsBlobStore,
    budget: u64,
}

struct LimitedWriter {
    inner: Box<dyn PartialWriter>,
    left: u64,
}

impl io::Write for LimitedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device",
            ));
        }
        let n = buf.len().min(self.left as usize);
        let n = self.inner.write(&buf[..n])?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl PartialWriter for LimitedWriter {
    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
}

impl BlobStore for FullDisk {
    fn write_partial(&self, id: &BlobId, offset: u64) -> io::Result<Box<dyn PartialWriter>> {
        Ok(Box::new(LimitedWriter {
            inner: self.inner.write_partial(id, offset)?,
            left: self.budget.saturating_sub(offset),
        }))
    }
    fn partial_len(&self, id: &BlobId) -> io::Result<Option<u64>> {
        self.inner.partial_len(id)
    }
    fn truncate_partial(&self, id: &BlobId, len: u64) -> io::Result<()> {
        self.inner.truncate_partial(id, len)
    }
    fn seal_partial(&self, id: &BlobId) -> io::Result<u64> {
        self.inner.seal_partial(id)
    }
    fn remove_partial(&self, id: &BlobId) -> io::Result<()> {
        self.inner.remove_partial(id)
    }
    fn open(&self, id: &BlobId) -> io::Result<Box<dyn BlobReader>> {
        self.inner.open(id)
    }
    fn size(&self, id: &BlobId) -> io::Result<Option<u64>> {
        self.inner.size(id)
    }
    fn remove(&self, id: &BlobId) -> io::Result<()> {
        self.inner.remove(id)
    }
    fn list(&self) -> io::Result<Vec<StoredBlob>> {
        self.inner.list()
    }
    fn list_partials(&self) -> io::Result<Vec<StoredBlob>> {
        self.inner.list_partials()
    }
    fn copy_to(&self, id: &BlobId, dest_root: &std::path::Path) -> io::Result<()> {
        self.inner.copy_to(id, dest_root)
    }
}

/// Yields `data`, then fails like a connection that broke.
struct Broken<'a> {
    data: &'a [u8],
}

impl AsyncRead for Broken<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.data.is_empty() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection lost",
            )));
        }
        let n = self.data.len().min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

fn fixture_with(
    config: impl FnOnce(&mut Config),
    store: impl FnOnce(FsBlobStore) -> Arc<dyn BlobStore>,
) -> R<Fixture> {
    let dir = tempfile::tempdir()?;
    let state = testing::state(&dir, "files", config, store)?;
    let mut conn = state.db.conn()?;
    let alice = add_user(&mut conn, "alice", 100 << 20)?;
    Ok(Fixture {
        _dir: dir,
        state,
        alice,
    })
}

fn fixture() -> R<Fixture> {
    fixture_with(|_| {}, |s| Arc::new(s))
}

fn add_user(conn: &mut db::DbConn, name: &str, quota: i64) -> R<SessionCtx> {
    let user = testing::add_user(conn, name, &[], quota)?;
    Ok(SessionCtx {
        session_id: 0,
        user_id: user.id,
        username: name.into(),
    })
}

/// Arbitrary bytes of the sealed length of a `plain`-byte file.
fn sealed_bytes(plain: u64, seed: u8) -> Vec<u8> {
    (0..sealed_len(plain))
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn err<T: std::fmt::Debug>(r: Result<T, ApiError>) -> ApiError {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

fn code(r: Result<Response, ApiError>) -> ErrorCode {
    err(r).code
}

/// A one-frame request of `session`, through the router.
async fn route(
    state: &ServerState,
    session: &SessionCtx,
    request: Request,
) -> Result<Response, ApiError> {
    let caller = crate::groups::Caller {
        session: session.clone(),
        ip: "127.0.0.1".into(),
    };
    crate::router::serve_session(state, &caller, request).await
}

impl Fixture {
    async fn call(&self, request: Request) -> Result<Response, ApiError> {
        route(&self.state, &self.alice, request).await
    }

    async fn open(&self, path: &str, size: u64) -> Result<(i64, u64), ApiError> {
        match self
            .call(Request::UploadOpen {
                ns: P,
                path: path.into(),
                sealed_size: size,
            })
            .await?
        {
            Response::UploadOpened {
                upload_id, version, ..
            } => Ok((upload_id, version)),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn data(&self, id: i64, offset: u64, mut bytes: &[u8]) -> Result<Response, ApiError> {
        upload::receive(&self.state, &self.alice, id, offset, &mut bytes).await
    }

    async fn commit(&self, id: i64) -> Result<Response, ApiError> {
        self.call(Request::UploadCommit {
            upload_id: id,
            wrapped_key: vec![7; 61].into(),
            sealed_meta: vec![8; 86].into(),
        })
        .await
    }

    async fn put(&self, path: &str, bytes: &[u8]) -> R<EntryInfo> {
        let (id, _) = self.open(path, bytes.len() as u64).await?;
        self.data(id, 0, bytes).await?;
        match self.commit(id).await? {
            Response::Entry(e) => Ok(e),
            other => Err(format!("unexpected {other:?}").into()),
        }
    }

    async fn get(&self, path: &str, version: Option<u64>, from_chunk: u64) -> R<Vec<u8>> {
        let (header, body) = download::prepare(
            &self.state,
            &self.alice,
            &P,
            path.into(),
            version,
            from_chunk,
        )
        .await?;
        assert!(matches!(header, Response::Download { .. }));
        let mut out = Vec::new();
        download::send(body, &mut out).await?;
        Ok(out)
    }

    async fn status(&self, id: i64) -> R<u64> {
        match self.call(Request::UploadStatus { upload_id: id }).await? {
            Response::UploadStatus { received, .. } => Ok(received),
            other => Err(format!("unexpected {other:?}").into()),
        }
    }

    async fn ls(&self, dir: &str, recursive: bool) -> R<Vec<EntryInfo>> {
        self.list_all(dir, recursive, false).await
    }

    async fn list_all(&self, dir: &str, recursive: bool, names_only: bool) -> R<Vec<EntryInfo>> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            match self
                .call(Request::List {
                    ns: P,
                    dir: dir.into(),
                    recursive,
                    after: after.clone(),
                    before: None,
                    names_only,
                })
                .await?
            {
                Response::Listing { entries, next } => {
                    all.extend(entries);
                    match next {
                        Some(n) => after = Some(n),
                        None => return Ok(all),
                    }
                }
                other => return Err(format!("unexpected {other:?}").into()),
            }
        }
    }

    async fn usage(&self) -> R<vault_proto::proto::Usage> {
        match self.call(Request::Usage { ns: P }).await? {
            Response::Usage(u) => Ok(u),
            other => Err(format!("unexpected {other:?}").into()),
        }
    }

    fn deleted_blob_count(&self) -> R<i64> {
        let mut c = self.state.db.conn()?;
        Ok(deleted_blobs::table.count().get_result(&mut *c)?)
    }

    fn partials(&self) -> R<usize> {
        Ok(self.state.blobs.list_partials()?.len())
    }
}

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
            f.call(Request::Stat {
                ns: P,
                path: "aaaa".into()
            })
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
        upload::receive(&f.state, &f.alice, id, 0, &mut broken)
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
    let e = err(download::prepare(&f.state, &f.alice, &P, "aaaa".into(), None, 4).await);
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
    let f = fixture()?;
    // Not a sealed length.
    assert_eq!(
        code(
            f.call(Request::UploadOpen {
                ns: P,
                path: "x".into(),
                sealed_size: 15
            })
            .await
        ),
        ErrorCode::BadRequest
    );
    // Bad paths.
    for bad in ["", "a//b", "../x", "a\0b", "Abc"] {
        let r = f
            .call(Request::UploadOpen {
                ns: P,
                path: bad.into(),
                sealed_size: 17,
            })
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
        .call(Request::UploadCommit {
            upload_id: id,
            wrapped_key: vec![0; 60].into(),
            sealed_meta: vec![0; 86].into(),
        })
        .await;
    assert_eq!(code(r), ErrorCode::BadRequest);
    // Another user cannot touch the upload.
    let bob = {
        let mut c = f.state.db.conn()?;
        add_user(&mut c, "bob", 1 << 30)?
    };
    let r = route(&f.state, &bob, Request::UploadStatus { upload_id: id }).await;
    assert_eq!(code(r), ErrorCode::NotFound);
    let mut slice: &[u8] = &bytes;
    let r = upload::receive(&f.state, &bob, id, 0, &mut slice).await;
    assert_eq!(code(r), ErrorCode::NotFound);
    // Aborting drops the upload, its invisible row and its partial.
    assert_eq!(
        f.call(Request::UploadAbort { upload_id: id }).await?,
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
    f.call(Request::Mkdir {
        ns: P,
        path: "dir".into(),
    })
    .await?;
    assert_eq!(
        code(f.open("dir", 17).await.map(|_| Response::Ok)),
        ErrorCode::Conflict
    );
    // Groups do not exist yet.
    let r = f
        .call(Request::Usage {
            ns: NsRef::Group {
                name: "team".into(),
            },
        })
        .await;
    assert_eq!(code(r), ErrorCode::NotFound);
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
        db::users::set_quota(&mut c, f.alice.user_id, q)?;
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
    db::users::set_quota(&mut c, f.alice.user_id, 1200)?;
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
async fn versions_are_kept_up_to_the_retention_and_restorable() -> R<()> {
    let f = fixture_with(|c| c.version_retention = 3, |s| Arc::new(s))?;
    let contents: Vec<Vec<u8>> = (0..5).map(|i| sealed_bytes(10 + i, i as u8)).collect();
    for c in &contents {
        f.put("doc", c).await?;
    }
    let (current, kept) = match f
        .call(Request::Versions {
            ns: P,
            path: "doc".into(),
        })
        .await?
    {
        Response::Versions {
            current, versions, ..
        } => (current, versions),
        other => panic!("{other:?}"),
    };
    assert_eq!(current, 5);
    assert_eq!(
        kept.iter().map(|v| v.version).collect::<Vec<_>>(),
        [5, 4, 3]
    );
    assert_eq!(f.deleted_blob_count()?, 2);
    let kept_bytes: u64 = contents[2..].iter().map(|c| c.len() as u64).sum();
    assert_eq!(f.usage().await?.used_bytes, kept_bytes);

    // Restore makes version 3 current without a new version.
    let entry = match f
        .call(Request::Restore {
            ns: P,
            path: "doc".into(),
            version: 3,
        })
        .await?
    {
        Response::Entry(e) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(entry.current.map(|v| v.version), Some(3));
    assert_eq!(entry.version_count, 3);
    assert_eq!(f.get("doc", None, 0).await?, contents[2]);
    assert_eq!(f.get("doc", Some(5), 0).await?, contents[4]);
    let r = download::prepare(&f.state, &f.alice, &P, "doc".into(), Some(1), 0).await;
    assert_eq!(err(r).code, ErrorCode::NotFound);
    let r = f
        .call(Request::Restore {
            ns: P,
            path: "doc".into(),
            version: 1,
        })
        .await;
    assert_eq!(code(r), ErrorCode::NotFound);
    Ok(())
}

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
        .call(Request::Remove {
            ns: P,
            path: "dd".into(),
            recursive: false,
        })
        .await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("-r"), "{e}");
    assert_eq!(
        code(
            f.call(Request::Remove {
                ns: P,
                path: "".into(),
                recursive: true
            })
            .await
        ),
        ErrorCode::BadRequest
    );

    let trash_id = match f
        .call(Request::Remove {
            ns: P,
            path: "dd".into(),
            recursive: true,
        })
        .await?
    {
        Response::Trashed { trash_id, entries } => {
            assert_eq!(entries, 4);
            trash_id
        }
        other => panic!("{other:?}"),
    };
    assert!(f.ls("", true).await?.is_empty());
    let r = download::prepare(&f.state, &f.alice, &P, "dd/aa".into(), None, 0).await;
    assert_eq!(err(r).code, ErrorCode::NotFound);
    // Trash counts against the quota.
    let used = (a.len() + b.len()) as u64;
    assert_eq!(f.usage().await?.used_bytes, used);
    match f.call(Request::TrashList { ns: P }).await? {
        Response::Trash { items } => {
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].entries, 4);
            assert_eq!(items[0].sealed_bytes, used);
            assert_eq!(items[0].kind, EntryKind::Dir);
        }
        other => panic!("{other:?}"),
    }

    // Something new at the path blocks the restore.
    f.call(Request::Mkdir {
        ns: P,
        path: "dd".into(),
    })
    .await?;
    assert_eq!(
        code(f.call(Request::TrashRestore { ns: P, trash_id }).await),
        ErrorCode::Conflict
    );
    f.call(Request::Remove {
        ns: P,
        path: "dd".into(),
        recursive: false,
    })
    .await?;
    f.call(Request::TrashRestore { ns: P, trash_id }).await?;
    assert_eq!(f.get("dd/ee/bb", None, 0).await?, b);

    // Remove a file and empty the trash: bytes back to 0 after removing the rest too.
    f.call(Request::Remove {
        ns: P,
        path: "dd".into(),
        recursive: true,
    })
    .await?;
    let emptied = f.call(Request::TrashEmpty { ns: P }).await?;
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
        .call(Request::Remove {
            ns: P,
            path: "pp/qq".into(),
            recursive: false,
        })
        .await?
    {
        Response::Trashed { trash_id, .. } => trash_id,
        other => panic!("{other:?}"),
    };
    f.call(Request::Remove {
        ns: P,
        path: "pp".into(),
        recursive: false,
    })
    .await?;
    f.call(Request::TrashRestore { ns: P, trash_id }).await?;
    let listed = f.ls("", true).await?;
    assert_eq!(
        listed.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
        ["pp", "pp/qq"]
    );
    assert_eq!(listed[0].kind, EntryKind::Dir);
    Ok(())
}

#[tokio::test]
async fn move_renames_a_dir_with_its_descendants() -> R<()> {
    let f = fixture()?;
    let a = sealed_bytes(5, 1);
    f.put("src/aa", &a).await?;
    f.put("src/sub/bb", &a).await?;
    f.call(Request::Mkdir {
        ns: P,
        path: "dst".into(),
    })
    .await?;
    let rn = |from: &str, to: &str| Rename {
        from: from.into(),
        to: to.into(),
    };

    // Missing a descendant, wrong parents, into itself, existing or missing destination.
    let bad: Vec<(Vec<Rename>, ErrorCode)> = vec![
        (
            vec![rn("src", "dst/nn"), rn("src/aa", "dst/nn/aa")],
            ErrorCode::BadRequest,
        ),
        (
            vec![
                rn("src", "dst/nn"),
                rn("src/aa", "dst/zz/aa"),
                rn("src/sub", "dst/nn/sub"),
                rn("src/sub/bb", "dst/nn/sub/bb"),
            ],
            ErrorCode::BadRequest,
        ),
        (vec![rn("src", "src/sub/x")], ErrorCode::BadRequest),
        (vec![rn("src", "dst")], ErrorCode::Conflict),
        (vec![rn("src/aa", "nope/aa")], ErrorCode::NotFound),
        (vec![rn("nope", "dst/x")], ErrorCode::NotFound),
    ];
    for (renames, want) in bad {
        let r = f
            .call(Request::Move {
                ns: P,
                renames: renames.clone(),
            })
            .await;
        assert_eq!(code(r), want, "{renames:?}");
    }

    let before = f.usage().await?.revision;
    let moved = f
        .call(Request::Move {
            ns: P,
            renames: vec![
                rn("src", "dst/nn"),
                rn("src/sub/bb", "dst/nn/sub/cc"),
                rn("src/aa", "dst/nn/aa"),
                rn("src/sub", "dst/nn/sub"),
            ],
        })
        .await?;
    let Response::Entry(moved) = moved else {
        panic!("{moved:?}")
    };
    assert_eq!(moved.path, "dst/nn");
    let paths: Vec<String> = f.ls("", true).await?.into_iter().map(|e| e.path).collect();
    assert_eq!(
        paths,
        ["dst", "dst/nn", "dst/nn/aa", "dst/nn/sub", "dst/nn/sub/cc"]
    );
    assert_eq!(f.get("dst/nn/sub/cc", None, 0).await?, a);
    assert_eq!(f.usage().await?.revision, before + 1);
    Ok(())
}

#[tokio::test]
async fn changes_since_a_revision_and_resync_after_a_purge() -> R<()> {
    let f = fixture()?;
    f.put("aa", &sealed_bytes(1, 1)).await?;
    f.put("bb", &sealed_bytes(1, 2)).await?;
    let rev = f.usage().await?.revision;
    let changes = |since: u64, after: Option<ChangeCursor>| {
        let f = &f;
        async move {
            match f
                .call(Request::Changes {
                    ns: P,
                    since,
                    after,
                })
                .await?
            {
                Response::Changes {
                    revision,
                    changes,
                    next,
                    resync,
                } => Ok::<_, Box<dyn std::error::Error>>((revision, changes, next, resync)),
                other => Err(format!("unexpected {other:?}").into()),
            }
        }
    };
    let (revision, none, next, resync) = changes(rev, None).await?;
    assert_eq!((revision, none.len(), next, resync), (rev, 0, None, false));

    // A new version of aa, a new file cc, bb to the trash; an unfinished upload is not a change.
    f.put("aa", &sealed_bytes(2, 1)).await?;
    f.put("cc", &sealed_bytes(1, 3)).await?;
    f.call(Request::Remove {
        ns: P,
        path: "bb".into(),
        recursive: false,
    })
    .await?;
    f.open("pending", 17).await?;
    let (_, got, _, resync) = changes(rev, None).await?;
    let seen: Vec<(&str, bool)> = got
        .iter()
        .map(|c| (c.entry.path.as_str(), c.deleted))
        .collect();
    assert_eq!(seen, [("aa", false), ("cc", false), ("bb", true)]);
    assert!(!resync);
    assert_eq!(got[0].entry.current.as_ref().map(|v| v.version), Some(2));

    // Purging the trash forces a resync for anyone behind it, not after.
    f.call(Request::TrashEmpty { ns: P }).await?;
    assert!(changes(rev, None).await?.3);
    let now = f.usage().await?.revision;
    assert!(!changes(now, None).await?.3);
    Ok(())
}

#[tokio::test]
async fn a_listing_of_names_has_the_entries_without_their_versions() -> R<()> {
    let f = fixture()?;
    f.put("aaaa", &sealed_bytes(3, 1)).await?;
    f.put("aaaa", &sealed_bytes(3, 2)).await?;
    f.call(Request::Mkdir {
        ns: P,
        path: "bbbb/cccc".into(),
    })
    .await?;
    f.put("bbbb/cccc/dddd", &sealed_bytes(5, 3)).await?;
    f.open("eeee", sealed_len(5)).await?; // unfinished: not listed either way
    for recursive in [false, true] {
        let full = f.ls("", recursive).await?;
        let names = f.list_all("", recursive, true).await?;
        let shown = |entries: &[EntryInfo]| {
            entries
                .iter()
                .map(|e| (e.id, e.path.clone(), e.kind, e.revision, e.updated_at))
                .collect::<Vec<_>>()
        };
        assert_eq!(shown(&names), shown(&full));
        assert!(
            names
                .iter()
                .all(|e| e.current.is_none() && e.version_count == 0)
        );
    }
    let paths: Vec<String> = f
        .list_all("", true, true)
        .await?
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, ["aaaa", "bbbb", "bbbb/cccc", "bbbb/cccc/dddd"]);
    // A file's listing is the file itself, with its version either way.
    let file = f.list_all("aaaa", false, true).await?;
    assert_eq!(file.len(), 1);
    assert_eq!(file[0].version_count, 2);
    Ok(())
}

#[tokio::test]
async fn a_listing_can_be_bounded_on_both_sides() -> R<()> {
    let f = fixture()?;
    {
        let mut c = f.state.db.conn()?;
        let ns = crate::db::files::namespaces::personal_or_create(&mut c, f.alice.user_id)?;
        for (i, path) in ["aa", "bb", "bb/xx", "cc", "dd"].into_iter().enumerate() {
            crate::db::files::entries::insert(&mut c, ns.id, path, "dir", 1 + i as i64, 0)?;
        }
    }
    let list = |recursive: bool, after: Option<&str>, before: Option<&str>| Request::List {
        ns: P,
        dir: "".into(),
        recursive,
        after: after.map(str::to_owned),
        before: before.map(str::to_owned),
        names_only: false,
    };
    let paths = |r: Response| match r {
        Response::Listing { entries, next } => {
            assert_eq!(next, None);
            entries.into_iter().map(|e| e.path).collect::<Vec<_>>()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        paths(f.call(list(false, None, Some("k"))).await?),
        ["aa", "bb", "cc", "dd"]
    );
    assert_eq!(
        paths(f.call(list(false, Some("aa"), Some("cc"))).await?),
        ["bb"]
    );
    assert_eq!(paths(f.call(list(false, None, Some("bb"))).await?), ["aa"]);
    assert_eq!(
        paths(f.call(list(true, Some("bb"), Some("cc"))).await?),
        ["bb/xx"]
    );
    assert_eq!(
        paths(f.call(list(true, Some("k"), None)).await?),
        Vec::<String>::new()
    );
    let bad = f.call(list(false, None, Some("A"))).await;
    assert_eq!(bad.err().map(|e| e.code), Some(ErrorCode::BadRequest));
    Ok(())
}

#[tokio::test]
async fn listings_and_changes_come_in_pages() -> R<()> {
    let f = fixture()?;
    let n = super::info::PAGE_ENTRIES + 5;
    {
        // Rows straight into the table: 1005 directories.
        let mut c = f.state.db.conn()?;
        let ns = crate::db::files::namespaces::personal_or_create(&mut c, f.alice.user_id)?;
        for i in 0..n {
            let path = format!("d{:04}", i)
                .replace('0', "a")
                .replace('1', "b")
                .replace('8', "i")
                .replace('9', "j");
            crate::db::files::entries::insert(&mut c, ns.id, &path, "dir", 1 + i as i64, 0)?;
        }
        diesel::update(namespaces::table.find(ns.id))
            .set(namespaces::revision.eq(n as i64))
            .execute(&mut *c)?;
    }
    let first = match f
        .call(Request::List {
            ns: P,
            dir: "".into(),
            recursive: false,
            after: None,
            before: None,
            names_only: false,
        })
        .await?
    {
        Response::Listing { entries, next } => {
            assert!(next.is_some());
            entries
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(first.len(), super::info::PAGE_ENTRIES);
    let all = f.ls("", false).await?;
    assert_eq!(all.len(), n);
    let mut sorted: Vec<&str> = all.iter().map(|e| e.path.as_str()).collect();
    sorted.dedup();
    assert_eq!(sorted.len(), n);

    let mut seen = 0;
    let mut after = None;
    loop {
        match f
            .call(Request::Changes {
                ns: P,
                since: 0,
                after,
            })
            .await?
        {
            Response::Changes { changes, next, .. } => {
                seen += changes.len();
                match next {
                    Some(c) => after = Some(c),
                    None => break,
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, n);
    Ok(())
}

#[tokio::test]
async fn mkdir_creates_parents_and_two_clients_see_each_other() -> R<()> {
    let f = fixture()?;
    let r = f
        .call(Request::Mkdir {
            ns: P,
            path: "aa/bb/cc".into(),
        })
        .await?;
    assert!(matches!(
        r,
        Response::Entry(EntryInfo {
            kind: EntryKind::Dir,
            ..
        })
    ));
    // An existing directory is fine and changes nothing.
    let rev = f.usage().await?.revision;
    f.call(Request::Mkdir {
        ns: P,
        path: "aa/bb".into(),
    })
    .await?;
    assert_eq!(f.usage().await?.revision, rev);
    assert_eq!(f.ls("aa", false).await?.len(), 1);
    // A second session of the same user sees the same space.
    let other = SessionCtx {
        session_id: 99,
        ..f.alice.clone()
    };
    match route(
        &f.state,
        &other,
        Request::Stat {
            ns: P,
            path: "aa/bb/cc".into(),
        },
    )
    .await?
    {
        Response::Entry(e) => assert_eq!(e.kind, EntryKind::Dir),
        r => panic!("{r:?}"),
    }
    // The root always exists.
    match f
        .call(Request::Stat {
            ns: P,
            path: "".into(),
        })
        .await?
    {
        Response::Entry(e) => assert_eq!(e.kind, EntryKind::Dir),
        r => panic!("{r:?}"),
    }
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

// Batches of small files: upload_open_many → upload_put_many.

/// A `put_many` item with keys and metadata of the right lengths.
fn put_file(upload_id: i64, sealed: Vec<u8>) -> PutFile {
    PutFile {
        upload_id,
        sealed: sealed.into(),
        wrapped_key: vec![7; 61].into(),
        sealed_meta: vec![8; 86].into(),
    }
}

impl Fixture {
    async fn open_many(
        &self,
        files: &[(&str, u64)],
    ) -> Result<Vec<Result<OpenedUpload, ApiError>>, ApiError> {
        self.open_many_as(files, None).await
    }

    /// `open_many` under a batch token.
    async fn open_many_as(
        &self,
        files: &[(&str, u64)],
        batch: Option<&str>,
    ) -> Result<Vec<Result<OpenedUpload, ApiError>>, ApiError> {
        let request = Request::UploadOpenMany {
            batch: batch.map(str::to_owned),
            ns: P,
            files: files
                .iter()
                .map(|(path, sealed_size)| OpenFile {
                    path: (*path).into(),
                    sealed_size: *sealed_size,
                })
                .collect(),
        };
        match self.call(request).await? {
            Response::UploadsOpened { results } => {
                assert_eq!(results.len(), files.len());
                Ok(results.into_iter().map(BatchResult::into_result).collect())
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn put_many(
        &self,
        files: Vec<PutFile>,
    ) -> Result<Vec<Result<CommittedFile, ApiError>>, ApiError> {
        let count = files.len();
        match self.call(Request::UploadPutMany { files }).await? {
            Response::UploadsCommitted { results } => {
                assert_eq!(results.len(), count);
                Ok(results.into_iter().map(BatchResult::into_result).collect())
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn open_uploads(&self) -> R<i64> {
        let mut c = self.state.db.conn()?;
        Ok(crate::db::schema::uploads::table
            .count()
            .get_result(&mut *c)?)
    }

    fn set_quota(&self, quota: i64) -> R<()> {
        let mut c = self.state.db.conn()?;
        db::users::set_quota(&mut c, self.alice.user_id, quota)?;
        Ok(())
    }
}

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
    assert_eq!(f.call(abort(token)).await?, Response::Ok);
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
    assert_eq!(f.call(abort(&"ab".repeat(16))).await?, Response::Ok);
    for bad in ["", "abc", &"AB".repeat(16), &"0".repeat(33)] {
        let refused = f.call(abort(bad)).await.map_err(|e| e.code);
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
async fn a_user_holds_a_bounded_number_of_given_up_batch_tokens() -> R<()> {
    let f = fixture()?;
    let abort = |n: i64| Request::UploadAbortBatch {
        batch: format!("{n:032x}"),
    };
    for n in 0..MAX_ABANDONED_BATCHES {
        assert_eq!(f.call(abort(n)).await?, Response::Ok);
    }
    // The same token again takes no more room; a new one is refused.
    assert_eq!(f.call(abort(0)).await?, Response::Ok);
    let refused = f
        .call(abort(MAX_ABANDONED_BATCHES))
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
        .call(Request::Changes {
            ns: P,
            since: before.revision,
            after: None,
        })
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
    f.call(Request::Mkdir {
        ns: P,
        path: "dir".into(),
    })
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
    f.call(Request::Remove {
        ns: P,
        path: "gone".into(),
        recursive: false,
    })
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
        f.call(Request::UploadAbort { upload_id: id(i)? }).await?;
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
    let f = fixture()?;
    let bob = {
        let mut c = f.state.db.conn()?;
        add_user(&mut c, "bob", 1 << 20)?
    };
    let bytes = sealed_bytes(3, 3);
    let opened = f.open_many(&[("aa", bytes.len() as u64)]).await?;
    let id = opened[0].as_ref().map_err(Clone::clone)?.upload_id;
    let results = match route(
        &f.state,
        &bob,
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
    assert!(expires <= db::now() + super::small::BATCH_EXPIRY_S);
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

// The BLAKE3 of each version's blob, recorded at commit.

/// A blob store that counts how often a sealed blob is opened for reading.
#[derive(Debug)]
struct CountingOpens {
    inner: FsBlobStore,
    opens: Arc<std::sync::atomic::AtomicUsize>,
}

impl BlobStore for CountingOpens {
    fn write_partial(&self, id: &BlobId, offset: u64) -> io::Result<Box<dyn PartialWriter>> {
        self.inner.write_partial(id, offset)
    }
    fn partial_len(&self, id: &BlobId) -> io::Result<Option<u64>> {
        self.inner.partial_len(id)
    }
    fn truncate_partial(&self, id: &BlobId, len: u64) -> io::Result<()> {
        self.inner.truncate_partial(id, len)
    }
    fn seal_partial(&self, id: &BlobId) -> io::Result<u64> {
        self.inner.seal_partial(id)
    }
    fn remove_partial(&self, id: &BlobId) -> io::Result<()> {
        self.inner.remove_partial(id)
    }
    fn open(&self, id: &BlobId) -> io::Result<Box<dyn BlobReader>> {
        self.opens.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.open(id)
    }
    fn size(&self, id: &BlobId) -> io::Result<Option<u64>> {
        self.inner.size(id)
    }
    fn remove(&self, id: &BlobId) -> io::Result<()> {
        self.inner.remove(id)
    }
    fn list(&self) -> io::Result<Vec<StoredBlob>> {
        self.inner.list()
    }
    fn list_partials(&self) -> io::Result<Vec<StoredBlob>> {
        self.inner.list_partials()
    }
    fn copy_to(&self, id: &BlobId, dest_root: &std::path::Path) -> io::Result<()> {
        self.inner.copy_to(id, dest_root)
    }
}

/// A fixture whose blob store counts the blobs it opens.
fn counting_fixture() -> R<(Fixture, Arc<std::sync::atomic::AtomicUsize>)> {
    let opens = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&opens);
    let f = fixture_with(
        |_| {},
        move |inner| {
            Arc::new(CountingOpens {
                inner,
                opens: counter,
            })
        },
    )?;
    Ok((f, opens))
}

impl Fixture {
    /// (recorded BLAKE3, BLAKE3 of the blob as stored) of a file's current version.
    fn recorded_and_stored(&self, path: &str) -> R<(Option<Vec<u8>>, Vec<u8>)> {
        use crate::db::schema::versions;
        let mut c = self.state.db.conn()?;
        let (blob, recorded): (String, Option<Vec<u8>>) = versions::table
            .inner_join(
                entries::table.on(entries::id
                    .eq(versions::entry_id)
                    .and(entries::current_version.eq(versions::version.nullable()))),
            )
            .filter(entries::path.eq(path))
            .select((versions::blob_id, versions::blob_blake3))
            .get_result(&mut *c)?;
        let id = BlobId::parse(&blob).ok_or("bad blob id")?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut self.state.blobs.open(&id)?, &mut bytes)?;
        Ok((recorded, blake3::hash(&bytes).as_bytes().to_vec()))
    }
}

fn opened(opens: &std::sync::atomic::AtomicUsize) -> usize {
    opens.load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn an_upload_records_the_blake3_of_its_blob_without_reading_it_again() -> R<()> {
    let (f, opens) = counting_fixture()?;
    let bytes = sealed_bytes(2 * (1 << 20) + 77, 3);
    f.put("aaaa", &bytes).await?;
    assert_eq!(opened(&opens), 0, "the commit read the blob again");
    let (recorded, stored) = f.recorded_and_stored("aaaa")?;
    assert_eq!(recorded, Some(stored));
    assert_eq!(
        recorded.as_deref(),
        Some(blake3::hash(&bytes).as_bytes().as_slice())
    );
    Ok(())
}

#[tokio::test]
async fn a_resumed_upload_is_hashed_from_where_it_broke() -> R<()> {
    let (f, opens) = counting_fixture()?;
    let bytes = sealed_bytes(3 * (1 << 20) + 5, 4);
    let (id, _) = f.open("aaaa", bytes.len() as u64).await?;
    // 1.5 chunks arrive, then the stream breaks; the resume sends from the whole chunk.
    let mut broken = Broken {
        data: &bytes[..SEALED_CHUNK_LEN + SEALED_CHUNK_LEN / 2],
    };
    assert!(
        upload::receive(&f.state, &f.alice, id, 0, &mut broken)
            .await
            .is_err()
    );
    let received = f.status(id).await?;
    // More than declared: refused, cut back to whole chunks.
    let mut over = bytes[received as usize..].to_vec();
    over.push(0);
    assert_eq!(code(f.data(id, received, &over).await), ErrorCode::TooLarge);
    let received = f.status(id).await?;
    f.data(id, received, &bytes[received as usize..]).await?;
    f.commit(id).await?;
    assert_eq!(opened(&opens), 0, "the commit read the blob again");
    let (recorded, stored) = f.recorded_and_stored("aaaa")?;
    assert_eq!(recorded, Some(stored));
    assert_eq!(f.get("aaaa", None, 0).await?, bytes);
    Ok(())
}

#[tokio::test]
async fn after_a_restart_the_commit_hashes_the_blob_from_disk() -> R<()> {
    let (mut f, opens) = counting_fixture()?;
    let bytes = sealed_bytes(2 * (1 << 20), 5);
    let (id, _) = f.open("aaaa", bytes.len() as u64).await?;
    f.data(id, 0, &bytes[..SEALED_CHUNK_LEN]).await?;
    // A restarted server has no hash state of the upload.
    f.state.upload_hashes = Arc::new(crate::files::upload_hash::UploadHashes::new(
        std::time::Duration::from_secs(3600),
    ));
    f.data(id, SEALED_CHUNK_LEN as u64, &bytes[SEALED_CHUNK_LEN..])
        .await?;
    f.commit(id).await?;
    assert_eq!(opened(&opens), 1);
    let (recorded, stored) = f.recorded_and_stored("aaaa")?;
    assert_eq!(recorded, Some(stored));
    Ok(())
}

#[tokio::test]
async fn a_batch_records_the_blake3_of_every_blob() -> R<()> {
    let (f, opens) = counting_fixture()?;
    let names = ["aaaa", "bbbb", "cccc"];
    let contents: Vec<Vec<u8>> = (0..3u8)
        .map(|i| sealed_bytes(500 * u64::from(i) + 3, i))
        .collect();
    let request: Vec<(&str, u64)> = names
        .iter()
        .zip(&contents)
        .map(|(n, c)| (*n, c.len() as u64))
        .collect();
    let uploads: Vec<OpenedUpload> = f
        .open_many(&request)
        .await?
        .into_iter()
        .collect::<Result<_, _>>()?;
    let files = uploads
        .iter()
        .zip(&contents)
        .map(|(o, c)| put_file(o.upload_id, c.clone()))
        .collect();
    for result in f.put_many(files).await? {
        result?;
    }
    assert_eq!(opened(&opens), 0);
    for (name, content) in names.iter().zip(&contents) {
        let (recorded, stored) = f.recorded_and_stored(name)?;
        assert_eq!(recorded, Some(stored));
        assert_eq!(
            recorded.as_deref(),
            Some(blake3::hash(content).as_bytes().as_slice())
        );
    }
    Ok(())
}
