//! Handler-level tests of the file requests, on the shared [`Fixture`] with one user,
//! alice, in her personal space: a temp SQLite database (or a fresh PostgreSQL one with
//! `VAULT_TEST_POSTGRES_URL`) and a temp `FsBlobStore` (or one whose writer fails), driven
//! through the router, `receive`, `prepare` and `send` without QUIC. Sealed bytes are
//! arbitrary bytes of a valid STREAM length: the server never opens them.
//!
//! By subject: single-file uploads (`uploads`), batches of small files (`batches`),
//! chunks of format 2 (`chunks`), the
//! BLAKE3 recorded at commit (`hashes`), versions (`versions`), the trash (`trash`),
//! folders and moves (`tree`), listings and changes (`listing`). What alice's client
//! does is [`FileCalls`], here, with the blob stores that fail and a connection that
//! breaks.

mod batches;
mod chunks;
mod hashes;
mod listing;
mod trash;
mod tree;
mod uploads;
mod versions;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use diesel::prelude::*;
use tokio::io::{AsyncRead, ReadBuf};
use vault_proto::proto::{
    ApiError, BatchResult, CommittedFile, EntryInfo, NsRef, OpenFile, OpenedUpload, PutFile,
    Request, Response, Usage,
};

use super::{download, upload};
use crate::blobs::{BlobId, BlobReader, BlobStore, FsBlobStore, PartialWriter, StoredBlob};
use crate::config::Config;
use crate::db;
use crate::db::schema::deleted_blobs;
use crate::net::connection::SessionCtx;
use crate::testing::{Fixture, R};

const P: NsRef = NsRef::Personal;

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

/// A server with alice, its configuration changed by `config` and its blob store made by
/// `store` of the plain one.
fn fixture_with(
    config: impl FnOnce(&mut Config),
    store: impl FnOnce(FsBlobStore) -> Arc<dyn BlobStore>,
) -> R<Fixture> {
    Fixture::with("files", &["alice"], config, store)
}

/// A server with alice.
fn fixture() -> R<Fixture> {
    Fixture::new("files", &["alice"])
}

/// What alice's client does in her personal space (all but `alice` through the router, or
/// the upload and download halves the connection runs).
trait FileCalls {
    /// alice's session.
    fn alice(&self) -> &SessionCtx;
    /// `upload_open` of `path`, `size` sealed bytes: (upload id, version).
    async fn open(&self, path: &str, size: u64) -> Result<(i64, u64), ApiError>;
    /// `upload_data` from `offset`.
    async fn data(&self, id: i64, offset: u64, bytes: &[u8]) -> Result<Response, ApiError>;
    /// `upload_commit` with keys and metadata of the right lengths.
    async fn commit(&self, id: i64) -> Result<Response, ApiError>;
    /// A whole upload of `bytes` to `path`.
    async fn put(&self, path: &str, bytes: &[u8]) -> R<EntryInfo>;
    /// The download of `path` from chunk `from_chunk`.
    async fn get(&self, path: &str, version: Option<u64>, from_chunk: u64) -> R<Vec<u8>>;
    /// How many bytes an upload has received.
    async fn status(&self, id: i64) -> R<u64>;
    /// Every page of a listing of `dir`.
    async fn ls(&self, dir: &str, recursive: bool) -> R<Vec<EntryInfo>>;
    /// [`FileCalls::ls`], of names only if `names_only`.
    async fn list_all(&self, dir: &str, recursive: bool, names_only: bool) -> R<Vec<EntryInfo>>;
    async fn usage(&self) -> R<Usage>;
    /// Blobs waiting for gc.
    fn deleted_blob_count(&self) -> R<i64>;
    /// Partial blobs in the store.
    fn partials(&self) -> R<usize>;
    /// `upload_open_many` of `(path, sealed size)`s.
    async fn open_many(
        &self,
        files: &[(&str, u64)],
    ) -> Result<Vec<Result<OpenedUpload, ApiError>>, ApiError>;
    /// `open_many` under a batch token.
    async fn open_many_as(
        &self,
        files: &[(&str, u64)],
        batch: Option<&str>,
    ) -> Result<Vec<Result<OpenedUpload, ApiError>>, ApiError>;
    /// `upload_put_many`.
    async fn put_many(
        &self,
        files: Vec<PutFile>,
    ) -> Result<Vec<Result<CommittedFile, ApiError>>, ApiError>;
    /// Open uploads, of anyone.
    fn open_uploads(&self) -> R<i64>;
    /// Sets alice's quota.
    fn set_quota(&self, quota: i64) -> R<()>;
}

/// A `put_many` item with keys and metadata of the right lengths.
fn put_file(upload_id: i64, sealed: Vec<u8>) -> PutFile {
    PutFile {
        upload_id,
        sealed: sealed.into(),
        wrapped_key: vec![7; 61].into(),
        sealed_meta: vec![8; 86].into(),
    }
}

impl FileCalls for Fixture {
    fn alice(&self) -> &SessionCtx {
        &self.who("alice").session
    }

    async fn open(&self, path: &str, size: u64) -> Result<(i64, u64), ApiError> {
        match self
            .call(
                "alice",
                Request::UploadOpen {
                    ns: P,
                    path: path.into(),
                    sealed_size: size,
                    chunk_bytes: 0,
                    batch: None,
                    if_current: None,
                },
            )
            .await?
        {
            Response::UploadOpened {
                upload_id, version, ..
            } => Ok((upload_id, version)),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn data(&self, id: i64, offset: u64, mut bytes: &[u8]) -> Result<Response, ApiError> {
        upload::receive(&self.state, self.alice(), id, offset, &mut bytes).await
    }

    async fn commit(&self, id: i64) -> Result<Response, ApiError> {
        self.call(
            "alice",
            Request::UploadCommit {
                upload_id: id,
                wrapped_key: vec![7; 61].into(),
                sealed_meta: vec![8; 86].into(),
                chunks: Vec::new(),
            },
        )
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
            self.alice(),
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
        match self
            .call("alice", Request::UploadStatus { upload_id: id })
            .await?
        {
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
                .call(
                    "alice",
                    Request::List {
                        ns: P,
                        dir: dir.into(),
                        recursive,
                        after: after.clone(),
                        before: None,
                        names_only,
                    },
                )
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

    async fn usage(&self) -> R<Usage> {
        match self.call("alice", Request::Usage { ns: P }).await? {
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

    async fn open_many(
        &self,
        files: &[(&str, u64)],
    ) -> Result<Vec<Result<OpenedUpload, ApiError>>, ApiError> {
        self.open_many_as(files, None).await
    }

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
                    if_current: None,
                })
                .collect(),
        };
        match self.call("alice", request).await? {
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
        match self.call("alice", Request::UploadPutMany { files }).await? {
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
        db::users::set_quota(&mut c, self.id("alice"), quota)?;
        Ok(())
    }
}
