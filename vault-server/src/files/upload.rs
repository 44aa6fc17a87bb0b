//! Uploads: `upload_open` (quota checked, version reserved, the file's row created
//! invisible if new) → `upload_data` (raw sealed bytes appended to the partial blob and
//! hashed as they arrive, whole chunks acknowledged, resumable) → `upload_commit` (blob
//! sealed, then one transaction makes the version current and records the blob's BLAKE3).
//! Nothing is visible before the commit; `upload_abort` drops the upload.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};
use vault_proto::proto::{ApiError, ErrorCode, NsRef, OpenedUpload, Response, parent_of};
use vault_proto::sizes::SEALED_META_LEN;
use vault_proto::sizes::WRAPPED_FILE_KEY_LEN;
use vault_proto::sizes::{SEALED_CHUNK_LEN, plaintext_len};

use super::{Stamp, info, paths, tree};
use crate::blobs::{BlobHash, BlobId, BlobStore, hash};
use crate::db::files::entries::{self, Entry};
use crate::db::files::namespaces::{self, Namespace};
use crate::db::files::uploads::{self, NewUpload, Upload};
use crate::db::files::versions::{self, NewVersion};
use crate::db::{DbConn, now};
use crate::error::Failure;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

/// Bytes read from the stream at a time.
pub const READ_BUF_LEN: usize = 256 * 1024;
/// Buffers queued between the network reader and the disk writer (bounds memory to
/// `(QUEUE_LEN + 1) × READ_BUF_LEN` per upload stream).
const QUEUE_LEN: usize = 4;
/// At most this many unfinished uploads per user.
pub const MAX_OPEN_UPLOADS: i64 = 1000;

/// What the server acknowledges of `held` bytes of an upload of `size`: whole sealed
/// chunks, or everything once it is complete.
pub fn acknowledged(held: u64, size: u64) -> u64 {
    if held >= size {
        size
    } else {
        held - held % SEALED_CHUNK_LEN as u64
    }
}

pub(super) fn blob_id(upload: &Upload) -> Result<BlobId, ApiError> {
    BlobId::parse(&upload.blob_id)
        .ok_or_else(|| crate::error::internal("bad blob id in uploads", &upload.blob_id))
}

pub(super) fn gone() -> ApiError {
    ApiError::not_found("no such upload (it was committed, aborted or expired); start it again")
}

/// The upload `id` if it is the session user's (else `not_found`, as if absent) and, with
/// `live`, not expired.
async fn owned(
    state: &ServerState,
    session: &SessionCtx,
    id: i64,
    live: bool,
) -> Result<Upload, ApiError> {
    let user = session.user_id;
    let upload = super::read(state, move |c| Ok(uploads::get(c, id)?)).await?;
    match upload {
        Some(u) if u.user_id == user => {
            if live && u.expires_at < now() {
                Err(ApiError::not_found("the upload expired; start again"))
            } else {
                Ok(u)
            }
        }
        _ => Err(gone()),
    }
}

/// Runs blocking blob-store work off the runtime.
pub(super) async fn blocking<T: Send + 'static>(
    state: &ServerState,
    work: impl FnOnce(&dyn BlobStore) -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let blobs = Arc::clone(&state.blobs);
    tokio::task::spawn_blocking(move || work(blobs.as_ref()))
        .await
        .map_err(|e| std::io::Error::other(format!("blob worker failed: {e}")))?
}

pub(super) fn store_error(context: &str, e: &std::io::Error) -> ApiError {
    if crate::space::is_full_io(e) {
        tracing::error!(error = %e, "{context}: the disk is full");
        return crate::space::no_space();
    }
    tracing::error!(error = %e, "{context}");
    ApiError::internal_with(format!(
        "the server could not store the data ({}); nothing partial is visible: try again \
         later or ask the operator to free disk space",
        e.kind()
    ))
}

/// How many bytes of an upload the store holds: the sealed size once the blob was sealed
/// (a commit that failed after sealing), else the partial's length (0 if none).
async fn held(state: &ServerState, upload: &Upload) -> Result<u64, ApiError> {
    let id = blob_id(upload)?;
    let size = upload.sealed_size.max(0) as u64;
    blocking(state, move |b| {
        if b.size(&id)? == Some(size) {
            return Ok(size);
        }
        Ok(b.partial_len(&id)?.unwrap_or(0))
    })
    .await
    .map_err(|e| crate::error::internal("cannot read an upload's partial blob", e))
}

/// Refuses what `upload_open` would refuse of one file before looking at the database:
/// the root as a target, a sealed size that no plaintext seals to.
pub(super) fn check_open(path: &str, sealed_size: u64) -> Result<(), ApiError> {
    paths::check_not_root(path, "upload to")?;
    if plaintext_len(sealed_size).is_none() || i64::try_from(sealed_size).is_err() {
        return Err(ApiError::bad_request(format!(
            "{sealed_size} bytes is not the length of a sealed file"
        )));
    }
    Ok(())
}

/// Refuses `adding` more unfinished uploads when the user would then have more than
/// [`MAX_OPEN_UPLOADS`].
pub(super) fn check_open_uploads(
    conn: &mut DbConn,
    user: i64,
    adding: usize,
) -> Result<(), Failure> {
    let open = uploads::count_for_user(conn, user, now())?;
    if open.saturating_add(adding as i64) > MAX_OPEN_UPLOADS {
        return Err(ApiError::conflict(format!(
            "you have {open} unfinished uploads and at most {MAX_OPEN_UPLOADS} are allowed; \
             finish or abort some, or wait for them to expire"
        ))
        .into());
    }
    Ok(())
}

/// What one write transaction has learned about paths, so that a batch whose files share
/// parents looks each one up once. Only valid inside the transaction that filled it.
#[derive(Debug, Default)]
pub(super) struct KnownPaths {
    /// Live rows (or their absence) read ahead for a batch by [`KnownPaths::read_ahead`];
    /// a file's own path is taken out when it is reserved, so that a second upload of the
    /// same path in the batch reads the row the first one made.
    live: HashMap<String, Option<Entry>>,
    /// Paths that are no file: a folder, or nothing (checked for new files' parents).
    not_files: HashSet<String>,
    /// Folders that exist (made sure of for committed files' parents).
    dirs: HashSet<String>,
}

impl KnownPaths {
    /// Reads the live rows at `paths` and at all their parents in one go.
    pub(super) fn read_ahead<'a>(
        &mut self,
        c: &mut DbConn,
        ns: i64,
        paths: impl Iterator<Item = &'a str>,
    ) -> Result<(), Failure> {
        let mut wanted: HashSet<&str> = HashSet::new();
        for path in paths {
            wanted.extend(paths::ancestors(path));
            wanted.insert(path);
        }
        let wanted: Vec<&str> = wanted.into_iter().collect();
        for path in &wanted {
            self.live.insert((*path).to_owned(), None);
        }
        for entry in entries::live_at_many(c, ns, &wanted)? {
            self.live.insert(entry.path.clone(), Some(entry));
        }
        Ok(())
    }

    /// Whether the folders above `path` are known to exist.
    pub(super) fn has_parent_of(&self, path: &str) -> bool {
        let parent = parent_of(path);
        parent.is_empty() || self.dirs.contains(parent)
    }
}

/// How long a new upload lives, and the client's token of the batch that opens it.
pub(super) struct Lease<'a> {
    pub expiry_s: i64,
    pub batch: Option<&'a str>,
}

/// Refuses (`conflict`) an upload meant for version `if_current` of the file (0: no file at
/// the path) when `entry` (the live row at the path, if any) holds another current
/// version: the file changed since the client looked.
pub(super) fn check_if_current(
    entry: Option<&Entry>,
    if_current: Option<i64>,
) -> Result<(), ApiError> {
    let Some(expected) = if_current else {
        return Ok(());
    };
    let current = entry.and_then(|e| e.current_version).unwrap_or(0);
    if current == expected {
        return Ok(());
    }
    Err(ApiError::conflict(format!(
        "the file changed on the server since this client last saw it (version {expected} \
         expected, {} now): sync again",
        if current == 0 {
            "none".to_owned()
        } else {
            current.to_string()
        }
    )))
}

/// The part of `upload_open` inside the namespace's write transaction, after the quota
/// check: finds the file's row (created, invisible, with version 1 reserved, if new; a
/// folder at the path or a file among its parents is a conflict), checks `if_current`
/// ([`check_if_current`]), reserves its next version and records the upload, whose file
/// key is wrapped under group key `generation` (0 in a personal space). Refusals come
/// before any write.
pub(super) fn reserve(
    c: &mut DbConn,
    ns: &Namespace,
    user: i64,
    (path, sealed_size, if_current): (&str, u64, Option<u64>),
    generation: i64,
    lease: &Lease<'_>,
    known: &mut KnownPaths,
) -> Result<OpenedUpload, Failure> {
    let existing = match known.live.remove(path) {
        Some(read_ahead) => read_ahead,
        None => entries::live_at(c, ns.id, path)?,
    };
    let if_current = if_current.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    check_if_current(existing.as_ref(), if_current)?;
    let (entry_id, version) = match existing {
        Some(e) if e.is_dir() => {
            return Err(ApiError::conflict(
                "a folder exists at this path; a file cannot replace it",
            )
            .into());
        }
        Some(e) => (e.id, entries::reserve_version(c, &e)?),
        None => {
            for ancestor in paths::ancestors(path) {
                if known.not_files.contains(ancestor) {
                    continue;
                }
                let row = match known.live.get(ancestor) {
                    Some(read_ahead) => read_ahead.clone(),
                    None => entries::live_at(c, ns.id, ancestor)?,
                };
                if row.is_some_and(|e| !e.is_dir()) {
                    return Err(ApiError::conflict(
                        "a parent on this path is a file; a file cannot contain others",
                    )
                    .into());
                }
                known.not_files.insert(ancestor.to_owned());
            }
            known.not_files.remove(path);
            // Invisible until the first commit; the revision is stamped then.
            (
                entries::insert_new_file(c, ns.id, path, ns.revision, now())?,
                1,
            )
        }
    };
    let created = now();
    let expires_at = created.saturating_add(lease.expiry_s);
    let blob = BlobId::random();
    let upload_id = uploads::insert(
        c,
        &NewUpload {
            user_id: user,
            namespace_id: ns.id,
            entry_id,
            version,
            generation,
            sealed_size: sealed_size as i64,
            blob_id: blob.as_str(),
            created_at: created,
            expires_at,
            batch_token: lease.batch,
            if_current,
        },
    )?;
    Ok(OpenedUpload {
        upload_id,
        file_id: entry_id,
        version: version.max(0) as u64,
        generation: crate::groups::tasks::generation(generation),
        expires_at,
    })
}

/// How long an unfinished upload lives, from the configuration.
pub(super) fn expiry_s(state: &ServerState) -> i64 {
    i64::try_from(state.config.files.upload_expiry_s).unwrap_or(i64::MAX)
}

/// Serves `upload_open` of `sealed_size` bytes, and for a version of format 2 the
/// `chunk_bytes` of chunks it will store: both are checked against the quota and the disk
/// before anything is sent, and held for the upload. The upload carries the client's
/// `batch` token, if any, as those of `upload_open_many` do.
pub async fn open(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    path: String,
    (sealed_size, chunk_bytes): (u64, u64),
    (batch, if_current): (Option<String>, Option<u64>),
) -> Result<Response, ApiError> {
    if let Some(token) = &batch {
        super::small::check_token(token)?;
    }
    check_open(&path, sealed_size)?;
    let most =
        (vault_proto::proto::MAX_COMMIT_CHUNKS as u64) * vault_proto::sizes::MAX_SEALED_CHUNK;
    if chunk_bytes > most {
        return Err(ApiError::bad_request(format!(
            "{chunk_bytes} bytes of chunks is more than one version may store ({most})"
        )));
    }
    let ns = super::namespace(state, session, ns).await?;
    state.space.check_room(sealed_size + chunk_bytes)?;
    let user = session.user_id;
    let expiry = expiry_s(state);
    let opened = super::write(state, ns.id, move |c, ns| {
        if let Some(token) = &batch {
            super::small::claim_token(c, user, token)?;
        }
        check_open_uploads(c, user, 1)?;
        let generation = crate::groups::files::upload_generation(c, ns)?;
        let pending = uploads::reserved_bytes(c, ns.id, now())?;
        super::check_quota(c, ns, sealed_size + chunk_bytes, pending)?;
        let opened = reserve(
            c,
            ns,
            user,
            (&path, sealed_size, if_current),
            generation,
            &Lease {
                expiry_s: expiry,
                batch: batch.as_deref(),
            },
            &mut KnownPaths::default(),
        )?;
        if chunk_bytes > 0 {
            uploads::set_chunk_bytes(c, opened.upload_id, chunk_bytes)?;
        }
        Ok(opened)
    })
    .await?;
    Ok(Response::UploadOpened {
        upload_id: opened.upload_id,
        file_id: opened.file_id,
        version: opened.version,
        generation: opened.generation,
        expires_at: opened.expires_at,
    })
}

pub async fn status(
    state: &ServerState,
    session: &SessionCtx,
    upload_id: i64,
) -> Result<Response, ApiError> {
    let upload = owned(state, session, upload_id, true).await?;
    let size = upload.sealed_size.max(0) as u64;
    let held = held(state, &upload).await?;
    Ok(Response::UploadStatus {
        received: acknowledged(held, size),
        sealed_size: size,
    })
}

/// Serves `upload_data`: appends the raw bytes that follow the request on `body` to the
/// upload's partial blob, from `offset` (which must be what `upload_status` reports), and
/// hashes them on the way ([`super::upload_hash`]). Memory stays bounded whatever the
/// size. Bytes beyond the declared size and write errors cut the partial back to whole
/// chunks.
pub async fn receive<R: AsyncRead + Unpin>(
    state: &ServerState,
    session: &SessionCtx,
    upload_id: i64,
    offset: u64,
    body: &mut R,
) -> Result<Response, ApiError> {
    let upload = owned(state, session, upload_id, true).await?;
    let size = upload.sealed_size.max(0) as u64;
    let id = blob_id(&upload)?;
    let held_now = held(state, &upload).await?;
    let received = acknowledged(held_now, size);
    if offset != received {
        return Err(ApiError::conflict(format!(
            "resume at byte {received}: the server holds {received} of {size} bytes of this upload"
        )));
    }
    if received == size && held_now == size && size > 0 {
        // Complete (possibly already sealed): any byte more is too many.
        let mut probe = [0u8; 1];
        return match body.read(&mut probe).await {
            Ok(0) | Err(_) => Ok(Response::UploadStatus {
                received: size,
                sealed_size: size,
            }),
            Ok(_) => Err(too_many(size)),
        };
    }

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(QUEUE_LEN);
    let writer = {
        let blobs = Arc::clone(&state.blobs);
        let id = id.clone();
        // Held by the writing thread until it stops writing, whatever becomes of this
        // request: only then does the partial hold what the hasher saw.
        let mut hashing = state.upload_hashes.begin(&id, offset);
        tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let mut hasher = hashing.take_hasher();
            let mut out = blobs.write_partial(&id, offset)?;
            let mut written = 0u64;
            while let Some(buf) = rx.blocking_recv() {
                out.write_all(&buf)?;
                if let Some(h) = hasher.as_mut() {
                    h.update(&buf);
                }
                written += buf.len() as u64;
            }
            out.flush()?;
            out.sync()?;
            hashing.finish(hasher, size);
            Ok(written)
        })
    };

    let mut pos = offset;
    let mut over = false;
    let mut broken = false;
    loop {
        let (buf, ended) = match fill(body).await {
            Ok(filled) => filled,
            Err(e) => {
                tracing::debug!(error = %e, "upload stream broke");
                broken = true;
                break;
            }
        };
        if pos + buf.len() as u64 > size {
            over = true;
            break;
        }
        pos += buf.len() as u64;
        if !buf.is_empty() && tx.send(buf).await.is_err() {
            break; // the writer stopped: its error is read below
        }
        if ended {
            break;
        }
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| std::io::Error::other(format!("blob writer failed: {e}")))
        .and_then(|r| r);

    match written {
        Err(e) if crate::space::is_full_io(&e) => {
            release_stopped(state, session, &[upload_id]).await;
            Err(store_error("writing an upload failed", &e))
        }
        Err(e) => {
            cut_back(state, &id, size).await;
            Err(store_error("writing an upload failed", &e))
        }
        Ok(_) if over => {
            cut_back(state, &id, size).await;
            Err(too_many(size))
        }
        Ok(_) if broken => Err(ApiError::bad_request(
            "the upload stream broke; ask upload_status and resume",
        )),
        Ok(written) => Ok(Response::UploadStatus {
            received: acknowledged(offset + written, size),
            sealed_size: size,
        }),
    }
}

/// Reads up to [`READ_BUF_LEN`] bytes into a fresh buffer (its spare capacity: never
/// zeroed first), as many reads as it takes; `true` when the stream ended.
async fn fill<R: AsyncRead + Unpin>(body: &mut R) -> std::io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::with_capacity(READ_BUF_LEN);
    while buf.len() < READ_BUF_LEN {
        if body.read_buf(&mut buf).await? == 0 {
            return Ok((buf, true));
        }
    }
    Ok((buf, false))
}

fn too_many(size: u64) -> ApiError {
    ApiError::new(
        ErrorCode::TooLarge,
        format!(
            "more bytes than declared: this upload is {size} bytes; ask upload_status and resume"
        ),
    )
}

/// Cuts a partial back to whole chunks after a failed or refused write.
async fn cut_back(state: &ServerState, id: &BlobId, size: u64) {
    let id = id.clone();
    let result = blocking(state, move |b| {
        if let Some(len) = b.partial_len(&id)? {
            let keep = acknowledged(len, size).min(len);
            if keep < len || len > size {
                b.truncate_partial(&id, keep.min(size))?;
            }
        }
        Ok(())
    })
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not cut a partial back to whole chunks");
    }
}

/// Refuses a wrapped file key or sealed metadata of the wrong length.
pub(super) fn check_commit(wrapped_key: &[u8], sealed_meta: &[u8]) -> Result<(), ApiError> {
    if wrapped_key.len() != WRAPPED_FILE_KEY_LEN {
        return Err(ApiError::bad_request(format!(
            "a wrapped file key is {WRAPPED_FILE_KEY_LEN} bytes, not {}",
            wrapped_key.len()
        )));
    }
    if sealed_meta.len() != SEALED_META_LEN {
        return Err(ApiError::bad_request(format!(
            "sealed metadata is {SEALED_META_LEN} bytes, not {}",
            sealed_meta.len()
        )));
    }
    Ok(())
}

/// Refuses more chunk ids than a commit may name, or ids of the wrong length.
fn check_chunk_ids(ids: &[Vec<u8>]) -> Result<(), ApiError> {
    use vault_proto::proto::MAX_COMMIT_CHUNKS;
    use vault_proto::sizes::CHUNK_ID_LEN;
    if ids.len() > MAX_COMMIT_CHUNKS {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "a version of {} chunks; at most {MAX_COMMIT_CHUNKS} in one commit",
                ids.len()
            ),
        ));
    }
    if let Some(bad) = ids.iter().find(|id| id.len() != CHUNK_ID_LEN) {
        return Err(ApiError::bad_request(format!(
            "a chunk id is {CHUNK_ID_LEN} bytes, not {}",
            bad.len()
        )));
    }
    Ok(())
}

/// Inside the commit's transaction: records the chunks the new version uses, all of which
/// the space must still hold (gc may have removed one no version used meanwhile).
fn attach_chunks(
    c: &mut DbConn,
    ns: i64,
    upload: &Upload,
    ids: &[Vec<u8>],
    now: i64,
) -> Result<(), Failure> {
    let version =
        versions::get(c, upload.entry_id, upload.version)?.ok_or_else(ApiError::internal)?;
    match crate::db::files::chunks::attach(c, ns, version.id, ids, now)? {
        Ok(bytes) => Ok(versions::set_chunk_bytes(c, version.id, bytes)?),
        Err(missing) => Err(ApiError::conflict(format!(
            "chunk {} of this version is not stored in this space (it may have been collected \
             since it was sent); run the command again to send it",
            hex::encode(&missing[..8])
        ))
        .into()),
    }
}

/// Inside a write transaction: refuses an upload whose file went to the trash meanwhile.
pub(super) fn check_live(entry: &Entry) -> Result<(), ApiError> {
    if entry.trash_id.is_some() {
        return Err(ApiError::conflict(
            "the file was deleted while it was uploading; upload it again",
        ));
    }
    Ok(())
}

/// Inside a write transaction: makes sure the folders above `path` exist, creating the
/// missing ones stamped with `stamp` (a file on the way is a conflict).
pub(super) fn ensure_parent(
    c: &mut DbConn,
    ns_id: i64,
    path: &str,
    stamp: &mut Stamp,
    known: &mut KnownPaths,
) -> Result<(), Failure> {
    if known.has_parent_of(path) {
        return Ok(());
    }
    let parent = parent_of(path);
    tree::ensure_dir(c, ns_id, parent, stamp)?;
    for dir in paths::ancestors(parent).chain(std::iter::once(parent)) {
        known.dirs.insert(dir.to_owned());
    }
    Ok(())
}

/// The heart of `upload_commit` inside the namespace's write transaction, for an upload
/// whose blob is sealed (and hashed: `blob_hash`) and whose parents exist
/// ([`ensure_parent`]): inserts the version. The caller then makes it current
/// (`entries::set_current`), prunes ([`prune`]), adds the bytes to `used_bytes` and drops
/// the upload row.
pub(super) fn insert_version(
    c: &mut DbConn,
    upload: &Upload,
    (wrapped_key, sealed_meta): (&[u8], &[u8]),
    blob_hash: &BlobHash,
    now: i64,
) -> Result<(), Failure> {
    versions::insert(
        c,
        &NewVersion {
            entry_id: upload.entry_id,
            version: upload.version,
            blob_id: &upload.blob_id,
            sealed_size: upload.sealed_size,
            wrapped_key,
            sealed_meta,
            generation: upload.generation,
            created_at: now,
            blob_blake3: Some(blob_hash.as_slice()),
        },
    )?;
    Ok(())
}

/// Prunes the versions of `entry` (read in this transaction) beyond `retention`, never
/// `current`; returns the bytes freed.
pub(super) fn prune(
    c: &mut DbConn,
    entry: &Entry,
    current: i64,
    retention: usize,
    now: i64,
) -> Result<i64, Failure> {
    // Versions are numbered from 1 and `next_version` is above every one ever reserved:
    // no more than that many can exist.
    if entry.next_version.saturating_sub(1) <= retention as i64 {
        return Ok(0);
    }
    Ok(versions::prune(c, entry.id, retention, current, now)?)
}

/// How many versions of a file are kept, from the configuration.
pub(super) fn retention(state: &ServerState) -> usize {
    state.config.version_retention.max(1) as usize
}

/// What `upload_commit` brings: the wrapped file key and sealed metadata, and for a
/// version of format 2 the ids of the chunks it uses.
#[derive(Debug)]
pub struct Sealed {
    pub wrapped_key: Vec<u8>,
    pub sealed_meta: Vec<u8>,
    pub chunks: Vec<Vec<u8>>,
}

pub async fn commit(
    state: &ServerState,
    session: &SessionCtx,
    upload_id: i64,
    sealed: Sealed,
) -> Result<Response, ApiError> {
    let Sealed {
        wrapped_key,
        sealed_meta,
        chunks: chunk_ids,
    } = sealed;
    check_commit(&wrapped_key, &sealed_meta)?;
    check_chunk_ids(&chunk_ids)?;
    let upload = owned(state, session, upload_id, true).await?;
    let size = upload.sealed_size.max(0) as u64;
    let held = held(state, &upload).await?;
    if held != size {
        return Err(ApiError::conflict(format!(
            "upload incomplete: {} of {size} bytes arrived; resume it",
            acknowledged(held, size)
        )));
    }
    // Cheap early refusals; the transaction checks again.
    let ns_id = upload.namespace_id;
    let early = upload.clone();
    super::read(state, move |c| {
        let ns = namespaces::by_id(c, ns_id)?.ok_or_else(gone)?;
        crate::groups::files::check_commit(c, &ns, &early)?;
        super::check_quota(c, &ns, size, 0)
    })
    .await?;

    let id = blob_id(&upload)?;
    let arrived = state.upload_hashes.complete(&id, size);
    let sealing = id.clone();
    let (sealed, blob_hash) = blocking(state, move |b| {
        let sealed = if b.size(&sealing)? == Some(size) {
            size
        } else {
            b.seal_partial(&sealing)?
        };
        let blob_hash = match arrived {
            Some(h) => h,
            // Not every byte was hashed here as it arrived: read the blob once.
            None => hash::of_blob(b, &sealing, &mut |_| Ok(()))?.hash,
        };
        Ok((sealed, blob_hash))
    })
    .await
    .map_err(|e| store_error("sealing an upload failed", &e))?;
    if sealed != size {
        return Err(crate::error::internal(
            "a sealed upload has the wrong size",
            format!("{sealed} != {size}"),
        ));
    }

    let retention = retention(state);
    let committed = super::write(state, ns_id, move |c, ns| {
        let upload = uploads::get(c, upload_id)?.ok_or_else(gone)?;
        crate::groups::files::check_commit(c, ns, &upload)?;
        let entry = entries::by_id(c, upload.entry_id)?.ok_or_else(gone)?;
        check_live(&entry)?;
        check_if_current(Some(&entry), upload.if_current)?;
        super::check_quota(c, ns, size, 0)?;
        let mut stamp = Stamp::new(ns.id);
        ensure_parent(
            c,
            ns.id,
            &entry.path,
            &mut stamp,
            &mut KnownPaths::default(),
        )?;
        let revision = stamp.revision(c)?;
        let keys = (wrapped_key.as_slice(), sealed_meta.as_slice());
        insert_version(c, &upload, keys, &blob_hash, stamp.now)?;
        if !chunk_ids.is_empty() {
            attach_chunks(c, ns.id, &upload, &chunk_ids, stamp.now)?;
        }
        entries::set_current(c, entry.id, upload.version, revision, stamp.now)?;
        let freed = prune(c, &entry, upload.version, retention, stamp.now)?;
        namespaces::add_used(c, ns.id, upload.sealed_size - freed)?;
        uploads::delete(c, upload.id)?;
        let row = entries::by_id(c, entry.id)?.ok_or_else(ApiError::internal)?;
        Ok(Response::Entry(info::entry_info(c, &row)?))
    })
    .await;
    if committed.is_ok() {
        state.upload_hashes.forget(&id);
    }
    committed
}

/// Releases uploads a full disk stopped, so that nothing is half-kept: their partials
/// first (removing a file always frees room), then their rows, in `abort`'s way; the client
/// starts over once there is room. Best effort: a row that cannot go now is collected by
/// gc when it expires.
pub(super) async fn release_stopped(state: &ServerState, session: &SessionCtx, upload_ids: &[i64]) {
    let mut partials = Vec::new();
    for &id in upload_ids {
        if let Ok(upload) = owned(state, session, id, false).await {
            partials.push(upload.blob_id.clone());
            if let Ok(blob) = blob_id(&upload) {
                state.upload_hashes.forget(&blob);
            }
        }
    }
    tree::remove_partials(state, partials).await;
    for &id in upload_ids {
        if let Err(e) = abort(state, session, id).await {
            tracing::warn!(error = %e, "could not release an upload the full disk stopped");
        }
    }
}

pub async fn abort(
    state: &ServerState,
    session: &SessionCtx,
    upload_id: i64,
) -> Result<Response, ApiError> {
    let upload = owned(state, session, upload_id, false).await?;
    let id = blob_id(&upload)?;
    let size = upload.sealed_size.max(0) as u64;
    let probe = id.clone();
    let was_sealed = blocking(state, move |b| Ok(b.size(&probe)? == Some(size)))
        .await
        .unwrap_or(false);
    super::write(state, upload.namespace_id, move |c, _ns| {
        let Some(upload) = uploads::get(c, upload_id)? else {
            return Err(gone().into());
        };
        uploads::delete(c, upload.id)?;
        if let Some(entry) = entries::by_id(c, upload.entry_id)?
            && !entry.is_visible()
            && !uploads::any_for_entry(c, entry.id)?
        {
            entries::delete(c, &[entry.id])?;
        }
        if was_sealed {
            versions::mark_deleted(c, std::slice::from_ref(&upload.blob_id), now())?;
        }
        Ok::<_, Failure>(())
    })
    .await?;
    state.upload_hashes.forget(&id);
    tree::remove_partials(state, vec![upload.blob_id]).await;
    Ok(Response::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_chunks_are_acknowledged() {
        let c = SEALED_CHUNK_LEN as u64;
        assert_eq!(acknowledged(0, 3 * c), 0);
        assert_eq!(acknowledged(c - 1, 3 * c), 0);
        assert_eq!(acknowledged(c, 3 * c), c);
        assert_eq!(acknowledged(2 * c + 5, 3 * c), 2 * c);
        assert_eq!(acknowledged(3 * c, 3 * c), 3 * c);
        assert_eq!(acknowledged(17, 17), 17);
        assert_eq!(acknowledged(16, 17), 0);
    }
}
