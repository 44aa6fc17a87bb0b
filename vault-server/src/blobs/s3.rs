//! The S3-compatible blob store (`storage.kind = "s3"`), on the `object_store` crate. One
//! bucket, every key under the configured prefix:
//!
//! ```text
//! <prefix>blobs/<blob id>             sealed blobs (immutable objects)
//! <prefix>partials/<blob id>/state    an upload in progress: its manifest (JSON)
//! <prefix>partials/<blob id>/tail     the bytes after its last whole part
//! ```
//!
//! A partial is an S3 multipart upload whose target is the sealed key, so sealing it is
//! the atomic `CompleteMultipartUpload`, and nothing is copied. The writer cuts the bytes
//! into parts of [`PART_LEN`] (whole sealed chunks, so a part always ends where an upload
//! can resume) and uploads one part while the next fills. The manifest — the upload id,
//! every part's ETag and length, and how many bytes of the tail object count — is written
//! after each part and at each `sync`, so any instance, or this one after a restart, can
//! resume the upload where the manifest says: parts, then the tail. Bytes written after
//! the last manifest write are not durable, as unsynced bytes on a disk are not.
//!
//! A partial can only be cut at whole parts or inside its tail: a cut inside a part drops
//! that whole part (the upload then resumes earlier; what a client was told it can resume
//! from is always at or after the last whole part, since parts end at chunk boundaries).
//!
//! The [`BlobStore`] calls are blocking, as everywhere: each runs its requests to
//! completion on this store's own small runtime, so the caller may be a blocking thread of
//! the server's runtime or a plain thread of the admin tool.

use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use vault_proto::sizes::SEALED_CHUNK_LEN;

use super::{BlobId, BlobReader, BlobStore, FsBlobStore, PartialWriter, StoredBlob};

/// The length of every part of a multipart upload but the last: 8 sealed chunks (just over
/// 8 MiB, above S3's 5 MiB floor). A writer holds at most two parts in memory.
pub const PART_LEN: usize = 8 * SEALED_CHUNK_LEN;

/// Batched small blobs go up this many at a time.
const PUT_CONCURRENCY: usize = 16;

/// Where the bucket is and how to sign for it.
#[derive(Clone)]
pub struct S3Settings {
    /// `http://host:port` of an S3-compatible service; empty: AWS.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: zeroize::Zeroizing<String>,
    /// `true`: `endpoint/bucket/key` (Garage, MinIO); `false`: `bucket.endpoint/key`.
    pub path_style: bool,
    /// Prepended to every key; `""` or ending in `/`.
    pub prefix: String,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl S3Settings {
    /// `s3://bucket/prefix at endpoint`, for messages (never the secret).
    pub fn describe(&self) -> String {
        let at = if self.endpoint.is_empty() {
            "AWS".to_owned()
        } else {
            self.endpoint.clone()
        };
        format!("s3://{}/{} at {at}", self.bucket, self.prefix)
    }

    fn client(&self, retry: RetryConfig, timeout: Duration) -> io::Result<AmazonS3> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(self.secret_access_key.as_str())
            .with_virtual_hosted_style_request(!self.path_style)
            // Bodies are not hashed into the signature (`UNSIGNED-PAYLOAD`): SHA-256 of
            // every byte cost the server 0.8 CPU-seconds per GiB, and the store hashes
            // them again to check. Blobs are sealed chunks whose BLAKE3 the database
            // records, and https protects them on the way (docs/FORMAT.md §7.9).
            .with_unsigned_payload(true)
            .with_retry(retry)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(self.endpoint.starts_with("http://"))
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(timeout),
            );
        if !self.endpoint.is_empty() {
            builder = builder.with_endpoint(&self.endpoint);
        }
        builder
            .build()
            .map_err(|e| io::Error::other(format!("S3 settings: {e}")))
    }
}

/// What a partial is: its multipart upload, its parts so far, and its tail's length.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// The multipart upload, created with the first whole part.
    upload: Option<String>,
    parts: Vec<Part>,
    /// How many bytes of the tail object belong to the partial (the object may hold more).
    tail: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Part {
    etag: String,
    len: u64,
}

impl Manifest {
    fn parts_len(&self) -> u64 {
        self.parts.iter().map(|p| p.len).sum()
    }

    fn len(&self) -> u64 {
        self.parts_len() + self.tail
    }

    /// Keeps the parts that end at or before `len`; the tail goes.
    fn cut_parts(&mut self, len: u64) {
        let mut end = 0;
        let keep = self
            .parts
            .iter()
            .take_while(|p| {
                end += p.len;
                end <= len
            })
            .count();
        self.parts.truncate(keep);
        self.tail = 0;
    }
}

/// The client and the runtime its requests run on.
struct Inner {
    s3: Arc<AmazonS3>,
    prefix: String,
    describe: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Inner {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the store")
    }

    /// Runs `work` to completion from blocking code.
    fn wait<T>(&self, work: impl Future<Output = T>) -> T {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.runtime().block_on(work))
            }
            _ => self.runtime().block_on(work),
        }
    }

    fn sealed_key(&self, id: &BlobId) -> Key {
        Key::from(format!("{}blobs/{id}", self.prefix))
    }

    fn state_key(&self, id: &BlobId) -> Key {
        Key::from(format!("{}partials/{id}/state", self.prefix))
    }

    fn tail_key(&self, id: &BlobId) -> Key {
        Key::from(format!("{}partials/{id}/tail", self.prefix))
    }

    fn error(&self, doing: &str, e: object_store::Error) -> io::Error {
        let kind = match &e {
            object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
            object_store::Error::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, format!("{doing} in {}: {e}", self.describe))
    }

    async fn manifest(&self, id: &BlobId) -> io::Result<Option<Manifest>> {
        match self.s3.get(&self.state_key(id)).await {
            Ok(got) => {
                let bytes = got
                    .bytes()
                    .await
                    .map_err(|e| self.error("reading a partial's manifest", e))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| io::Error::other(format!("partial {id}: bad manifest: {e}")))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("reading a partial's manifest", e)),
        }
    }

    async fn save_manifest(&self, id: &BlobId, manifest: &Manifest) -> io::Result<()> {
        let json = serde_json::to_vec(manifest).map_err(io::Error::other)?;
        self.s3
            .put(&self.state_key(id), PutPayload::from(json))
            .await
            .map(drop)
            .map_err(|e| self.error("writing a partial's manifest", e))
    }

    /// The first `len` bytes of the tail object.
    async fn tail(&self, id: &BlobId, len: u64) -> io::Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let bytes = self
            .s3
            .get_range(&self.tail_key(id), 0..len)
            .await
            .map_err(|e| self.error("reading a partial's tail", e))?;
        if (bytes.len() as u64) < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("partial {id}: its tail holds fewer bytes than its manifest says"),
            ));
        }
        Ok(bytes.to_vec())
    }

    async fn delete_quietly(&self, key: &Key) -> io::Result<()> {
        match self.s3.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("deleting", e)),
        }
    }

    async fn drop_partial(&self, id: &BlobId, manifest: Option<Manifest>) -> io::Result<()> {
        if let Some(upload) = manifest.and_then(|m| m.upload) {
            match self.s3.abort_multipart(&self.sealed_key(id), &upload).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error("aborting a multipart upload", e)),
            }
        }
        self.delete_quietly(&self.tail_key(id)).await?;
        self.delete_quietly(&self.state_key(id)).await
    }

    async fn head_size(&self, key: &Key) -> io::Result<Option<u64>> {
        match self.s3.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("looking up a blob", e)),
        }
    }

    async fn put_one(&self, id: &BlobId, bytes: &[u8]) -> io::Result<()> {
        let key = self.sealed_key(id);
        if self.head_size(&key).await?.is_some() {
            let stored = self
                .s3
                .get(&key)
                .await
                .map_err(|e| self.error("reading a blob", e))?
                .bytes()
                .await
                .map_err(|e| self.error("reading a blob", e))?;
            if stored != bytes {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("blob {id} exists with other contents"),
                ));
            }
            return Ok(());
        }
        self.s3
            .put(&key, PutPayload::from(Bytes::copy_from_slice(bytes)))
            .await
            .map(drop)
            .map_err(|e| self.error("storing a blob", e))
    }
}

/// Blobs as objects in one S3-compatible bucket.
#[derive(Clone)]
pub struct S3BlobStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("at", &self.inner.describe)
            .finish()
    }
}

impl S3BlobStore {
    /// Connects to the bucket and proves it can write, read and delete there: a wrong
    /// endpoint, bucket or key fails here, naming which, rather than at the first upload.
    pub fn open(settings: &S3Settings) -> io::Result<S3BlobStore> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-blobs")
            .enable_all()
            .build()?;
        let describe = settings.describe();
        let s3 = settings.client(RetryConfig::default(), Duration::from_secs(120))?;
        let inner = Inner {
            s3: Arc::new(s3),
            prefix: settings.prefix.clone(),
            describe,
            runtime: Some(runtime),
        };
        let probe = settings.client(
            RetryConfig {
                max_retries: 1,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            },
            Duration::from_secs(10),
        )?;
        inner.wait(check_access(&probe, settings))?;
        Ok(S3BlobStore {
            inner: Arc::new(inner),
        })
    }

    pub fn describe(&self) -> &str {
        &self.inner.describe
    }
}

/// Writes, reads back and deletes a small object under the prefix, and turns what goes
/// wrong into a sentence naming the setting to check.
async fn check_access(s3: &AmazonS3, settings: &S3Settings) -> io::Result<()> {
    let key = Key::from(format!("{}vault-access-check", settings.prefix));
    let at = settings.describe();
    let explain = |e: object_store::Error| -> io::Error {
        let text = e.to_string();
        let hint =
            if text.contains("NoSuchBucket") || matches!(e, object_store::Error::NotFound { .. }) {
                format!(
                    "the bucket {:?} does not exist there: create it (for Garage: `garage bucket \
                 create {}`) or fix storage.s3_bucket",
                    settings.bucket, settings.bucket
                )
            } else if text.contains("AuthorizationHeaderMalformed") || text.contains("region") {
                format!(
                    "the region {:?} is not the service's: set storage.s3_region to the one it \
                 expects (Garage: its s3_region, \"garage\" in the examples)",
                    settings.region
                )
            } else if text.contains("InvalidAccessKeyId")
                || text.contains("SignatureDoesNotMatch")
                || text.contains("AccessDenied")
                || text.contains("Forbidden")
                || matches!(
                    e,
                    object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }
                )
            {
                format!(
                    "the key {:?} was refused: check storage.s3_access_key_id and \
                 storage.s3_secret_access_key, and that the key may read and write the \
                 bucket (for Garage: `garage bucket allow --read --write {} --key …`)",
                    settings.access_key_id, settings.bucket
                )
            } else if ["connect", "dns", "timed out", "error sending request"]
                .iter()
                .any(|s| text.contains(s))
            {
                format!(
                    "cannot reach the endpoint {:?}: check storage.s3_endpoint and that the \
                 service runs",
                    settings.endpoint
                )
            } else {
                "check the storage.s3_* settings".to_owned()
            };
        io::Error::other(format!(
            "the blob store {at} cannot be used: {hint} ({text})"
        ))
    };
    let probe = Bytes::from_static(b"vault checks it may write here");
    s3.put(&key, PutPayload::from(probe.clone()))
        .await
        .map_err(explain)?;
    let back = s3
        .get(&key)
        .await
        .map_err(explain)?
        .bytes()
        .await
        .map_err(explain)?;
    if back != probe {
        return Err(io::Error::other(format!(
            "the blob store {at} returned other bytes than were written to it"
        )));
    }
    s3.delete(&key).await.map_err(explain)
}

impl BlobStore for S3BlobStore {
    fn write_partial(&self, id: &BlobId, offset: u64) -> io::Result<Box<dyn PartialWriter>> {
        let inner = &self.inner;
        let (manifest, buf) = inner.wait(async {
            let stored = inner.manifest(id).await?;
            if offset == 0 {
                if stored.is_some() {
                    inner.drop_partial(id, stored).await?;
                }
                let fresh = Manifest::default();
                inner.save_manifest(id, &fresh).await?;
                return Ok((fresh, Vec::new()));
            }
            let mut manifest = stored.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no partial blob {id}"))
            })?;
            if offset < manifest.parts_len() {
                manifest.cut_parts(offset);
            }
            let parts = manifest.parts_len();
            if offset < parts || manifest.len() < offset {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "partial blob {id} holds {} bytes, fewer than the {offset} to write after",
                        parts.min(manifest.len())
                    ),
                ));
            }
            let tail = inner.tail(id, offset - parts).await?;
            manifest.tail = tail.len() as u64;
            Ok::<_, io::Error>((manifest, tail))
        })?;
        Ok(Box::new(S3PartialWriter {
            inner: Arc::clone(inner),
            id: id.clone(),
            manifest,
            buf,
            in_flight: None,
        }))
    }

    fn partial_len(&self, id: &BlobId) -> io::Result<Option<u64>> {
        Ok(self.inner.wait(self.inner.manifest(id))?.map(|m| m.len()))
    }

    fn truncate_partial(&self, id: &BlobId, len: u64) -> io::Result<()> {
        let inner = &self.inner;
        inner.wait(async {
            let Some(mut manifest) = inner.manifest(id).await? else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no partial blob {id}"),
                ));
            };
            if len >= manifest.len() {
                return Ok(());
            }
            let parts = manifest.parts_len();
            if len >= parts {
                manifest.tail = len - parts;
            } else {
                manifest.cut_parts(len);
            }
            inner.save_manifest(id, &manifest).await
        })
    }

    fn seal_partial(&self, id: &BlobId) -> io::Result<u64> {
        let inner = &self.inner;
        inner.wait(async {
            let manifest = inner.manifest(id).await?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no partial blob {id}"))
            })?;
            let size = manifest.len();
            let tail = inner.tail(id, manifest.tail).await?;
            let key = inner.sealed_key(id);
            match &manifest.upload {
                Some(upload) if !manifest.parts.is_empty() => {
                    let mut parts: Vec<PartId> = manifest
                        .parts
                        .iter()
                        .map(|p| PartId {
                            content_id: p.etag.clone(),
                        })
                        .collect();
                    if !tail.is_empty() {
                        let last = inner
                            .s3
                            .put_part(&key, upload, parts.len(), PutPayload::from(tail))
                            .await
                            .map_err(|e| inner.error("uploading the last part", e))?;
                        parts.push(last);
                    }
                    inner
                        .s3
                        .complete_multipart(&key, upload, parts)
                        .await
                        .map_err(|e| inner.error("completing a multipart upload", e))?;
                }
                _ => {
                    inner
                        .s3
                        .put(&key, PutPayload::from(tail))
                        .await
                        .map_err(|e| inner.error("storing a blob", e))?;
                    if let Some(upload) = &manifest.upload {
                        let _ = inner.s3.abort_multipart(&key, upload).await;
                    }
                }
            }
            inner.delete_quietly(&inner.tail_key(id)).await?;
            inner.delete_quietly(&inner.state_key(id)).await?;
            Ok(size)
        })
    }

    fn remove_partial(&self, id: &BlobId) -> io::Result<()> {
        let inner = &self.inner;
        inner.wait(async {
            let manifest = inner.manifest(id).await?;
            inner.drop_partial(id, manifest).await
        })
    }

    fn open(&self, id: &BlobId) -> io::Result<Box<dyn BlobReader>> {
        let key = self.inner.sealed_key(id);
        let size = self
            .inner
            .wait(self.inner.head_size(&key))?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no blob {id}")))?;
        Ok(Box::new(S3Reader {
            inner: Arc::clone(&self.inner),
            key,
            size,
            pos: 0,
            stream: None,
            buf: Bytes::new(),
        }))
    }

    fn size(&self, id: &BlobId) -> io::Result<Option<u64>> {
        self.inner
            .wait(self.inner.head_size(&self.inner.sealed_key(id)))
    }

    fn remove(&self, id: &BlobId) -> io::Result<()> {
        self.inner
            .wait(self.inner.delete_quietly(&self.inner.sealed_key(id)))
    }

    fn list(&self) -> io::Result<Vec<StoredBlob>> {
        let inner = &self.inner;
        let prefix = Key::from(format!("{}blobs", inner.prefix));
        let now = crate::db::now();
        inner.wait(async {
            let mut blobs = Vec::new();
            let mut listing = inner.s3.list(Some(&prefix));
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| inner.error("listing blobs", e))?;
                if let Some(id) = meta.location.filename().and_then(BlobId::parse) {
                    blobs.push(StoredBlob {
                        id,
                        size: meta.size,
                        age_s: age(now, meta.last_modified.timestamp()),
                    });
                }
            }
            Ok(blobs)
        })
    }

    fn list_partials(&self) -> io::Result<Vec<StoredBlob>> {
        let inner = &self.inner;
        let prefix = Key::from(format!("{}partials", inner.prefix));
        let now = crate::db::now();
        inner.wait(async {
            // Newest object of each partial: its age is the time since it last grew.
            let mut seen: std::collections::BTreeMap<BlobId, i64> = Default::default();
            let mut listing = inner.s3.list(Some(&prefix));
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| inner.error("listing partial blobs", e))?;
                let parts: Vec<_> = meta.location.parts().collect();
                let Some(id) = parts
                    .len()
                    .checked_sub(2)
                    .and_then(|i| BlobId::parse(parts[i].as_ref()))
                else {
                    continue;
                };
                let at = meta.last_modified.timestamp();
                let newest = seen.entry(id).or_insert(at);
                *newest = (*newest).max(at);
            }
            let mut partials = Vec::with_capacity(seen.len());
            for (id, at) in seen {
                let size = inner.manifest(&id).await?.map_or(0, |m| m.len());
                partials.push(StoredBlob {
                    id,
                    size,
                    age_s: age(now, at),
                });
            }
            Ok(partials)
        })
    }

    fn copy_to(&self, id: &BlobId, dest_root: &std::path::Path) -> io::Result<()> {
        let dest = FsBlobStore::sealed_path(dest_root, id);
        let dir = dest.parent().ok_or_else(|| io::Error::other("no parent"))?;
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{id}.tmp"));
        let mut out = std::fs::File::create(&tmp)?;
        let mut reader = self.open(id)?;
        io::copy(&mut reader, &mut out)?;
        out.sync_all()?;
        drop(out);
        std::fs::rename(&tmp, &dest)
    }

    fn put_many(&self, blobs: &[(BlobId, &[u8])]) -> io::Result<()> {
        let inner = &self.inner;
        inner.wait(async {
            futures::stream::iter(blobs.iter().map(|(id, bytes)| inner.put_one(id, bytes)))
                .buffer_unordered(PUT_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await
                .map(drop)
        })
    }
}

fn age(now: i64, at: i64) -> u64 {
    u64::try_from(now - at).unwrap_or(0)
}

/// A partial being written: whole parts go up as they fill, one in flight at a time.
struct S3PartialWriter {
    inner: Arc<Inner>,
    id: BlobId,
    manifest: Manifest,
    /// Bytes after the last whole part: the tail the manifest counts, then unsynced bytes.
    buf: Vec<u8>,
    /// The part going up, and its length.
    in_flight: Option<(JoinHandle<object_store::Result<PartId>>, u64)>,
}

impl S3PartialWriter {
    /// Waits for the part in flight and records it in the manifest.
    async fn land(&mut self) -> io::Result<()> {
        if let Some((upload, len)) = self.in_flight.take() {
            let part = upload
                .await
                .map_err(|e| io::Error::other(format!("part upload failed: {e}")))?
                .map_err(|e| self.inner.error("uploading a part", e))?;
            self.manifest.parts.push(Part {
                etag: part.content_id,
                len,
            });
            // The bytes the tail object held are in the part now.
            self.manifest.tail = 0;
            self.inner.save_manifest(&self.id, &self.manifest).await?;
        }
        Ok(())
    }

    /// Sends the first [`PART_LEN`] bytes of the buffer as the next part.
    async fn send_part(&mut self) -> io::Result<()> {
        self.land().await?;
        let key = self.inner.sealed_key(&self.id);
        let upload = match &self.manifest.upload {
            Some(upload) => upload.clone(),
            None => {
                let upload = self
                    .inner
                    .s3
                    .create_multipart(&key)
                    .await
                    .map_err(|e| self.inner.error("starting a multipart upload", e))?;
                self.manifest.upload = Some(upload.clone());
                self.inner.save_manifest(&self.id, &self.manifest).await?;
                upload
            }
        };
        let rest = self.buf.split_off(PART_LEN);
        let part = Bytes::from(std::mem::replace(&mut self.buf, rest));
        let len = part.len() as u64;
        let index = self.manifest.parts.len();
        let s3 = Arc::clone(&self.inner.s3);
        let handle = self.inner.runtime().spawn(async move {
            s3.put_part(&key, &upload, index, PutPayload::from(part))
                .await
        });
        self.in_flight = Some((handle, len));
        Ok(())
    }
}

impl Write for S3PartialWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = PART_LEN.saturating_sub(self.buf.len()).max(1);
        let take = bytes.len().min(room);
        self.buf.extend_from_slice(&bytes[..take]);
        if self.buf.len() >= PART_LEN {
            let inner = Arc::clone(&self.inner);
            inner.wait(self.send_part())?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PartialWriter for S3PartialWriter {
    fn sync(&mut self) -> io::Result<()> {
        let inner = Arc::clone(&self.inner);
        inner.wait(async {
            self.land().await?;
            if self.buf.len() as u64 != self.manifest.tail {
                let tail = Bytes::copy_from_slice(&self.buf);
                self.inner
                    .s3
                    .put(&self.inner.tail_key(&self.id), PutPayload::from(tail))
                    .await
                    .map_err(|e| self.inner.error("writing a partial's tail", e))?;
                self.manifest.tail = self.buf.len() as u64;
                self.inner.save_manifest(&self.id, &self.manifest).await?;
            }
            Ok(())
        })
    }
}

/// A sealed blob read as one streamed GET from the current position, opened again after a
/// seek.
struct S3Reader {
    inner: Arc<Inner>,
    key: Key,
    size: u64,
    pos: u64,
    stream: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    buf: Bytes,
}

impl Read for S3Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.pos >= self.size {
            return Ok(0);
        }
        if self.buf.is_empty() {
            let inner = Arc::clone(&self.inner);
            let next = inner.wait(async {
                if self.stream.is_none() {
                    let got = inner
                        .s3
                        .get_opts(
                            &self.key,
                            GetOptions {
                                range: Some(GetRange::Offset(self.pos)),
                                ..GetOptions::default()
                            },
                        )
                        .await
                        .map_err(|e| inner.error("reading a blob", e))?;
                    self.stream = Some(got.into_stream());
                }
                let stream = self.stream.as_mut().expect("opened above");
                stream
                    .next()
                    .await
                    .transpose()
                    .map_err(|e| inner.error("reading a blob", e))
            })?;
            match next {
                Some(bytes) => self.buf = bytes,
                None => {
                    self.stream = None;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("a blob ended at byte {} of {}", self.pos, self.size),
                    ));
                }
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for S3Reader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        if target != self.pos {
            self.pos = target;
            self.stream = None;
            self.buf = Bytes::new();
        }
        Ok(self.pos)
    }
}

/// The store against a real S3-compatible service: these run when `VAULT_TEST_S3_*` names
/// one (CI starts Garage) and say so and pass when not, as the PostgreSQL tests do.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{R, s3_settings};

    fn store() -> R<Option<S3BlobStore>> {
        let Some(settings) = s3_settings() else {
            eprintln!("VAULT_TEST_S3_ENDPOINT is not set: S3 blob store tests skipped");
            return Ok(None);
        };
        Ok(Some(S3BlobStore::open(&settings)?))
    }

    /// `len` bytes that differ from offset to offset.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8)
            .collect()
    }

    fn read_all(store: &S3BlobStore, id: &BlobId) -> R<Vec<u8>> {
        let mut out = Vec::new();
        store.open(id)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_large_partial_goes_up_in_parts_resumes_from_a_new_writer_and_seals_whole() -> R<()> {
        let Some(store) = store()? else { return Ok(()) };
        let data = pattern(2 * PART_LEN + PART_LEN / 2 + 123, 7);
        let id = BlobId::random();

        // The first writer gets a part and a half in, syncs, and is gone (a broken stream).
        let first = PART_LEN + PART_LEN / 2;
        let mut w = store.write_partial(&id, 0)?;
        w.write_all(&data[..first])?;
        w.sync()?;
        drop(w);
        assert_eq!(store.partial_len(&id)?, Some(first as u64));

        // Bytes written but never synced are not held (the writer died).
        let mut w = store.write_partial(&id, first as u64)?;
        w.write_all(&data[first..first + 1000])?;
        drop(w);
        assert_eq!(store.partial_len(&id)?, Some(first as u64));

        // A cut inside the tail keeps the parts; the rest resumes from a fresh writer.
        store.truncate_partial(&id, (first - 10) as u64)?;
        assert_eq!(store.partial_len(&id)?, Some((first - 10) as u64));
        let mut w = store.write_partial(&id, (first - 10) as u64)?;
        w.write_all(&data[first - 10..])?;
        w.sync()?;
        drop(w);
        assert_eq!(store.partial_len(&id)?, Some(data.len() as u64));
        assert_eq!(store.size(&id)?, None, "not sealed yet");

        assert_eq!(store.seal_partial(&id)?, data.len() as u64);
        assert_eq!(store.partial_len(&id)?, None);
        assert_eq!(store.size(&id)?, Some(data.len() as u64));
        assert!(
            read_all(&store, &id)? == data,
            "the sealed blob holds what was written"
        );

        // Ranged reads after a seek.
        let mut r = store.open(&id)?;
        let at = PART_LEN as u64 + 5;
        r.seek(SeekFrom::Start(at))?;
        let mut some = vec![0; 4096];
        r.read_exact(&mut some)?;
        assert!(some == data[at as usize..at as usize + 4096]);
        assert_eq!(r.seek(SeekFrom::End(-3))?, data.len() as u64 - 3);
        let mut end = Vec::new();
        r.read_to_end(&mut end)?;
        assert_eq!(end, data[data.len() - 3..]);

        assert!(
            store
                .list()?
                .iter()
                .any(|b| b.id == id && b.size == data.len() as u64)
        );
        store.remove(&id)?;
        assert_eq!(store.size(&id)?, None);
        assert!(store.open(&id).is_err());
        Ok(())
    }

    #[test]
    fn a_cut_inside_a_part_drops_that_part_and_the_writer_refuses_to_skip_ahead() -> R<()> {
        let Some(store) = store()? else { return Ok(()) };
        let data = pattern(2 * PART_LEN + 10, 3);
        let id = BlobId::random();
        let mut w = store.write_partial(&id, 0)?;
        w.write_all(&data)?;
        w.sync()?;
        drop(w);
        store.truncate_partial(&id, PART_LEN as u64 + 100)?;
        assert_eq!(store.partial_len(&id)?, Some(PART_LEN as u64));
        let err = store
            .write_partial(&id, PART_LEN as u64 + 100)
            .err()
            .ok_or("a write past the end must fail")?;
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut w = store.write_partial(&id, PART_LEN as u64)?;
        w.write_all(&data[PART_LEN..])?;
        w.sync()?;
        drop(w);
        store.seal_partial(&id)?;
        assert!(read_all(&store, &id)? == data);

        let partials = store.list_partials()?;
        assert!(partials.iter().all(|p| p.id != id), "{partials:?}");
        store.remove(&id)?;
        Ok(())
    }

    #[test]
    fn small_partials_batches_and_removal() -> R<()> {
        let Some(store) = store()? else { return Ok(()) };
        // A partial smaller than a part seals with one PUT.
        let id = BlobId::random();
        let mut w = store.write_partial(&id, 0)?;
        w.write_all(b"hello")?;
        w.sync()?;
        drop(w);
        let partials = store.list_partials()?;
        assert!(
            partials.iter().any(|p| p.id == id && p.size == 5),
            "{partials:?}"
        );
        assert_eq!(store.seal_partial(&id)?, 5);
        assert_eq!(read_all(&store, &id)?, b"hello");

        // A batch: stored whole; the same bytes again are fine, other bytes are refused.
        let (a, b) = (BlobId::random(), BlobId::random());
        store.put_many(&[(a.clone(), &b"alpha"[..]), (b.clone(), &b""[..])])?;
        assert_eq!(store.size(&a)?, Some(5));
        assert_eq!(store.size(&b)?, Some(0));
        store.put_many(&[(a.clone(), &b"alpha"[..])])?;
        let err = store
            .put_many(&[(a.clone(), &b"omega"[..])])
            .err()
            .ok_or("other bytes must be refused")?;
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(read_all(&store, &a)?, b"alpha");

        // A removed partial leaves nothing behind, its multipart upload included.
        let gone = BlobId::random();
        let mut w = store.write_partial(&gone, 0)?;
        w.write_all(&pattern(PART_LEN + 1, 1))?;
        w.sync()?;
        drop(w);
        store.remove_partial(&gone)?;
        assert_eq!(store.partial_len(&gone)?, None);
        assert!(store.list_partials()?.iter().all(|p| p.id != gone));

        // A backup copy lands in the filesystem store's layout.
        let dir = tempfile::tempdir()?;
        store.copy_to(&a, dir.path())?;
        let copy = FsBlobStore::open(dir.path())?;
        assert_eq!(copy.size(&a)?, Some(5));
        for id in [id, a, b] {
            store.remove(&id)?;
        }
        Ok(())
    }

    #[test]
    fn a_wrong_bucket_key_or_endpoint_is_named_at_open() -> R<()> {
        let Some(good) = s3_settings() else {
            eprintln!("VAULT_TEST_S3_ENDPOINT is not set: S3 blob store tests skipped");
            return Ok(());
        };
        let cases = [
            (
                S3Settings {
                    bucket: "no-such-bucket-here".into(),
                    ..good.clone()
                },
                "does not exist",
            ),
            (
                S3Settings {
                    secret_access_key: zeroize::Zeroizing::new("0".repeat(64)),
                    ..good.clone()
                },
                "was refused",
            ),
            (
                S3Settings {
                    region: "us-east-1".into(),
                    ..good.clone()
                },
                "storage.s3_region",
            ),
            (
                S3Settings {
                    endpoint: "http://127.0.0.1:9".into(),
                    ..good.clone()
                },
                "cannot reach",
            ),
        ];
        for (settings, says) in cases {
            let err = S3BlobStore::open(&settings)
                .err()
                .ok_or("a wrong setting must fail at open")?;
            let text = err.to_string();
            assert!(text.contains(says), "{says:?} not in {text}");
            assert!(!text.contains(good.secret_access_key.as_str()), "{text}");
        }
        Ok(())
    }
}
