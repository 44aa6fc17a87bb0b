//! One file's upload (docs/FORMAT.md §7.2): the local file is read in 1 MiB chunks, sealed with
//! STREAM under a fresh file key (on a blocking thread, a few chunks ahead) and streamed
//! after an `upload_data` frame; BLAKE3 of the plaintext, size, mtime and mode are sealed
//! into the metadata sent with `upload_commit`.
//! A resume record (see [`super::resume`]) lets a later attempt ask `upload_status` and
//! continue at the last whole chunk the server holds; the prefix is read again only to hash
//! it (and to advance the sealer: nothing of it is sent again). [`put_file`] first skips a
//! file the remote file's current version already holds ([`super::unchanged`]).
//! [`upload_any`], what `put`, `sync` and `push` use, sends a file of 1 MiB or more in
//! format 2 instead ([`super::delta::put`]), and [`upload_file`] stays for smaller files,
//! chat attachments and files of more chunks than a commit may name.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::Bytes;
use vault_core::crypto::Key32;
use vault_core::format::meta::Contents;
use vault_core::format::stream::{SEALED_CHUNK_LEN, TAG_LEN};
use vault_core::format::{
    CHUNK_LEN, ContentHasher, FileMeta, StreamSealer, chunk_count, generate_file_key, seal_meta,
    sealed_len,
};
use vault_core::proto::{ByteBuf, Request, Response};
use zeroize::Zeroizing;

use super::keys::SpaceKeys;
use super::leftovers::NotedOpen;
use super::progress::{Progress, RateLimit, pace};
use super::resume::{ResumeRecord, ResumeStore};
use super::unchanged::{CurrentVersion, file_matches};
use super::{Files, FilesError, RemotePath, unexpected};

/// A local file as it was when looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalFile {
    pub size: u64,
    pub mtime_s: i64,
    pub mtime_ns: u32,
    pub mode: u32,
}

impl LocalFile {
    /// Looks at `path`, which must be a regular file.
    pub fn stat(path: &Path) -> Result<Self, FilesError> {
        let meta = std::fs::metadata(path).map_err(|e| FilesError::io("read", path, e))?;
        if !meta.is_file() {
            return Err(FilesError::Usage(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        Ok(LocalFile {
            size: meta.len(),
            mtime_s: meta.mtime(),
            mtime_ns: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
            mode: meta.mode(),
        })
    }
}

/// What an upload did.
#[derive(Clone, Debug)]
pub struct Uploaded {
    pub remote: RemotePath,
    /// Plaintext bytes of the file.
    pub bytes: u64,
    /// The file's id (stable across renames) and the version it became.
    pub file_id: i64,
    pub version: u64,
    /// Plaintext bytes that were already on the server from an earlier attempt.
    pub resumed_at: u64,
    /// Plaintext bytes whose chunks the space already held (format 2: an earlier version,
    /// another file, or an interrupted attempt), so they were not sent.
    pub reused: u64,
    /// The remote file already held these contents: nothing was sent and `version` is
    /// the version that holds them.
    pub unchanged: bool,
}

enum Resume {
    /// Continue from `received` sealed bytes.
    Continue(Key32, u64),
    /// The earlier attempt was committed after all.
    Committed,
    /// The upload is gone (expired or collected): start again.
    Gone,
}

/// The error for a file that changed while it was being uploaded.
pub(crate) fn changed(local: &Path) -> FilesError {
    FilesError::Usage(format!(
        "{} changed while it was being uploaded; run the command again when it is stable",
        local.display()
    ))
}

/// Uploads `local` to `remote` as a new version, resuming an earlier attempt when the
/// record matches the unchanged file.
pub async fn upload_file(
    files: &Files,
    local: &Path,
    remote: &RemotePath,
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<Uploaded, FilesError> {
    upload_file_if(files, local, remote, None, progress, limit).await
}

/// [`upload_file`], committing only while the remote file's current version is
/// `if_current` (0: none), when given.
async fn upload_file_if(
    files: &Files,
    local: &Path,
    remote: &RemotePath,
    if_current: Option<u64>,
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<Uploaded, FilesError> {
    let info = LocalFile::stat(local)?;
    let keys = files.keys_for(&remote.ns).await?;
    let encrypted = keys.encrypt_path(&remote.segments)?;
    let sealed_size = sealed_len(info.size);
    let absolute = std::path::absolute(local).map_err(|e| FilesError::io("read", local, e))?;
    let store = ResumeStore::new(files.state());
    let record_path = store.path_for(files.server(), files.user(), &encrypted, &absolute);

    let mut resumed = None;
    if let Some(record) = store.load(&record_path) {
        let same_file = record.remote == encrypted
            && record.sealed_size == sealed_size
            && record.local_size == info.size
            && record.local_mtime_s == info.mtime_s
            && record.local_mtime_ns == info.mtime_ns;
        let outcome = if same_file {
            try_resume(files, &keys, remote, &record).await?
        } else {
            Resume::Gone
        };
        match outcome {
            Resume::Continue(key, received) => resumed = Some((record, key, received)),
            Resume::Committed => {
                store.remove(&record_path);
                progress.advance(info.size);
                return Ok(Uploaded {
                    remote: remote.clone(),
                    bytes: info.size,
                    file_id: record.file_id,
                    version: record.version,
                    resumed_at: info.size,
                    reused: 0,
                    unchanged: false,
                });
            }
            Resume::Gone => {
                if !same_file {
                    // The file changed: its old upload is of no use any more.
                    let _ = files
                        .call(&Request::UploadAbort {
                            upload_id: record.upload_id,
                        })
                        .await;
                }
                store.remove(&record_path);
            }
        }
    }
    let (record, key, received) = match resumed {
        Some(r) => r,
        None => {
            let noted = NotedOpen::new(files)?;
            let opening = (encrypted.as_str(), &info, if_current);
            let (record, key) = match open_upload(files, remote, opening, &noted).await {
                Ok(opened) => opened,
                // The request may have opened the upload: its token stays noted.
                Err(e) if e.is_connection() => return Err(e),
                Err(e) => {
                    noted.done();
                    return Err(e);
                }
            };
            store.save(&record_path, &record)?;
            noted.done();
            (record, key, 0)
        }
    };

    let hash = send_contents(
        files, local, &info, &record, &key, received, progress, limit,
    )
    .await?;
    if LocalFile::stat(local)? != info {
        abort(files, &store, &record_path, record.upload_id).await;
        return Err(changed(local));
    }
    let meta = FileMeta {
        size: info.size,
        mtime_s: info.mtime_s,
        mtime_ns: info.mtime_ns,
        mode: info.mode,
        blake3: hash,
        contents: Contents::Stream,
    };
    let wrapped = hex::decode(&record.wrapped_key).map_err(|_| {
        FilesError::Usage("a resume record is damaged; run the command again".into())
    })?;
    let commit = Request::UploadCommit {
        upload_id: record.upload_id,
        wrapped_key: ByteBuf::from(wrapped),
        sealed_meta: ByteBuf::from(seal_meta(&key, &meta)?),
        chunks: Vec::new(),
    };
    match files.call(&commit).await {
        Ok(_) => {}
        Err(e) if e.is_connection() => return Err(e),
        Err(e) => {
            abort(files, &store, &record_path, record.upload_id).await;
            return Err(e);
        }
    }
    store.remove(&record_path);
    Ok(Uploaded {
        remote: remote.clone(),
        bytes: info.size,
        file_id: record.file_id,
        version: record.version,
        resumed_at: received / SEALED_CHUNK_LEN as u64 * CHUNK_LEN as u64,
        reused: 0,
        unchanged: false,
    })
}

/// How an upload stores a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storing {
    /// In format 2 when it is large enough ([`super::delta::CHUNKED_MIN`]), else whole.
    #[default]
    Chunked,
    /// Whole, in format 1, whatever its size (`put --whole-file`).
    Whole,
}

/// The upload of `put`: in format 2 ([`super::delta`]) for a file of at least
/// [`super::delta::CHUNKED_MIN`] bytes, so only the chunks the space lacks are sent; else,
/// stored [`Storing::Whole`], or for a file of more chunks than a commit may name,
/// [`upload_file`].
pub async fn upload_any(
    files: &Files,
    (local, storing): (&Path, Storing),
    remote: &RemotePath,
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<Uploaded, FilesError> {
    upload_to(files, (local, storing), (remote, None), progress, limit).await
}

/// The upload of `sync` and `push`: [`upload_any`] (stored as chunks), committing only while
/// the remote file's current version is `if_current` (0: none); else the server refuses
/// it with `conflict` and nothing changes there.
pub async fn upload_if_current(
    files: &Files,
    local: &Path,
    remote: &RemotePath,
    if_current: u64,
    progress: &dyn Progress,
) -> Result<Uploaded, FilesError> {
    let to = (remote, Some(if_current));
    upload_to(files, (local, Storing::Chunked), to, progress, None).await
}

/// [`upload_any`], with the `if_current` condition when given.
async fn upload_to(
    files: &Files,
    (local, storing): (&Path, Storing),
    (remote, if_current): (&RemotePath, Option<u64>),
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<Uploaded, FilesError> {
    if storing == Storing::Chunked
        && LocalFile::stat(local)?.size >= super::delta::CHUNKED_MIN
        && let Some(done) = super::delta::put::upload_chunked(
            files,
            local,
            remote,
            (None, if_current),
            progress,
            limit,
        )
        .await?
    {
        return Ok(done);
    }
    upload_file_if(files, local, remote, if_current, progress, limit).await
}

/// [`upload_any`], unless `current` (the remote file's current version, when known)
/// already holds what `local` holds: then nothing is sent, the file is reported unchanged,
/// and an earlier attempt's resume record is dropped, its upload aborted unless it is the
/// very version that holds the contents.
pub async fn put_file(
    files: &Files,
    (local, storing): (&Path, Storing),
    remote: &RemotePath,
    current: Option<&CurrentVersion>,
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<Uploaded, FilesError> {
    let Some(current) = current else {
        return upload_any(files, (local, storing), remote, progress, limit).await;
    };
    if storing == Storing::Chunked && LocalFile::stat(local)?.size >= super::delta::CHUNKED_MIN {
        // The scan of format 2 hashes the whole file anyway: it tells unchanged apart
        // without a read of its own.
        let done = super::delta::put::upload_chunked(
            files,
            local,
            remote,
            (Some(current), None),
            progress,
            limit,
        )
        .await?;
        match done {
            Some(done) if done.unchanged => {
                drop_resume_record(files, local, remote, current).await?;
                return Ok(done);
            }
            Some(done) => return Ok(done),
            None => {} // more chunks than a commit names: format 1, below
        }
    }
    if !file_matches(local, current).await? {
        return upload_any(files, (local, storing), remote, progress, limit).await;
    }
    drop_resume_record(files, local, remote, current).await?;
    progress.advance(current.size);
    Ok(Uploaded {
        remote: remote.clone(),
        bytes: current.size,
        file_id: current.file_id,
        version: current.version,
        resumed_at: 0,
        reused: 0,
        unchanged: true,
    })
}

/// Drops the resume record of an upload of `local` to `remote`, if there is one, aborting
/// its upload unless that upload became `current`.
async fn drop_resume_record(
    files: &Files,
    local: &Path,
    remote: &RemotePath,
    current: &CurrentVersion,
) -> Result<(), FilesError> {
    let encrypted = files.encrypt(remote).await?;
    let absolute = std::path::absolute(local).map_err(|e| FilesError::io("read", local, e))?;
    let store = ResumeStore::new(files.state());
    let record_path = store.path_for(files.server(), files.user(), &encrypted, &absolute);
    let Some(record) = store.load(&record_path) else {
        return Ok(());
    };
    if (record.file_id, record.version) != (current.file_id, current.version) {
        let abort = Request::UploadAbort {
            upload_id: record.upload_id,
        };
        match files.call(&abort).await {
            Err(e) if e.is_connection() => return Err(e),
            // Aborted, or gone already.
            _ => {}
        }
    }
    store.remove(&record_path);
    Ok(())
}

async fn abort(files: &Files, store: &ResumeStore, record_path: &Path, upload_id: i64) {
    let _ = files.call(&Request::UploadAbort { upload_id }).await;
    store.remove(record_path);
}

/// Asks the server how much of the recorded upload it holds.
async fn try_resume(
    files: &Files,
    keys: &SpaceKeys,
    remote: &RemotePath,
    record: &ResumeRecord,
) -> Result<Resume, FilesError> {
    let Ok(wrapped) = hex::decode(&record.wrapped_key) else {
        return Ok(Resume::Gone);
    };
    // An upload under an older key generation would be refused at commit: start again.
    if record.generation != keys.newest_generation() {
        return Ok(Resume::Gone);
    }
    let Ok(key) = keys.unwrap(record.generation, record.file_id, record.version, &wrapped) else {
        return Ok(Resume::Gone);
    };
    let status = Request::UploadStatus {
        upload_id: record.upload_id,
    };
    match files.call(&status).await {
        Ok(Response::UploadStatus {
            received,
            sealed_size,
        }) if sealed_size == record.sealed_size => {
            if received != sealed_size && received % SEALED_CHUNK_LEN as u64 != 0
                || received > sealed_size
            {
                return Err(FilesError::Integrity(format!(
                    "the server reports {received} bytes received, which is not a whole number of chunks"
                )));
            }
            Ok(Resume::Continue(key, received))
        }
        Ok(Response::UploadStatus { .. }) => Ok(Resume::Gone),
        Ok(other) => Err(unexpected("upload_status", &other)),
        Err(e) if e.is_connection() => Err(e),
        Err(_) => {
            // Committed just before the connection broke?
            match files.stat(remote).await? {
                Some(entry)
                    if entry.id == record.file_id
                        && entry
                            .current
                            .as_ref()
                            .is_some_and(|(v, _)| v.version == record.version) =>
                {
                    Ok(Resume::Committed)
                }
                _ => Ok(Resume::Gone),
            }
        }
    }
}

/// Opens a fresh upload under the token of `noted` and makes its file key, wrapped under
/// the key generation the server names (the newest one held: see [`SpaceKeys::wrap`]).
async fn open_upload(
    files: &Files,
    remote: &RemotePath,
    (encrypted, info, if_current): (&str, &LocalFile, Option<u64>),
    noted: &NotedOpen,
) -> Result<(ResumeRecord, Key32), FilesError> {
    let sealed_size = sealed_len(info.size);
    let request = Request::UploadOpen {
        ns: remote.ns.clone(),
        path: encrypted.to_owned(),
        sealed_size,
        chunk_bytes: 0,
        batch: Some(noted.token()),
        if_current,
    };
    let (upload_id, file_id, version, generation) = match files.call(&request).await? {
        Response::UploadOpened {
            upload_id,
            file_id,
            version,
            generation,
            ..
        } => (upload_id, file_id, version, generation),
        other => return Err(unexpected("upload_open", &other)),
    };
    let keys = match files.keys_with(&remote.ns, [generation]).await {
        Ok(keys) => keys,
        Err(e) => {
            let _ = files.call(&Request::UploadAbort { upload_id }).await;
            return Err(e);
        }
    };
    let key = generate_file_key()?;
    let wrapped = match keys.wrap(generation, file_id, version, &key) {
        Ok(wrapped) => wrapped,
        Err(e) => {
            let _ = files.call(&Request::UploadAbort { upload_id }).await;
            return Err(e);
        }
    };
    let record = ResumeRecord {
        upload_id,
        file_id,
        version,
        generation,
        remote: encrypted.to_owned(),
        sealed_size,
        local_size: info.size,
        local_mtime_s: info.mtime_s,
        local_mtime_ns: info.mtime_ns,
        wrapped_key: hex::encode(wrapped),
    };
    Ok((record, key))
}

/// Sealed chunks queued between the reading thread and the network (each up to 1 MiB).
const SEALED_QUEUE: usize = 4;

/// What the reading thread hands the network: a chunk's plaintext length, and its sealed
/// bytes when they are to be sent (chunks the server already holds are only hashed).
type SealedChunk = (usize, Option<Bytes>);

/// Reads, hashes and seals the whole file; sends the chunks from `received` on. Returns
/// the BLAKE3 of the plaintext. Reading, hashing and sealing run on a blocking thread
/// ([`read_and_seal`]) a few chunks ahead of the network, which takes the sealed buffers
/// without copying them.
#[allow(clippy::too_many_arguments)]
async fn send_contents(
    files: &Files,
    local: &Path,
    info: &LocalFile,
    record: &ResumeRecord,
    key: &Key32,
    received: u64,
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<[u8; 32], FilesError> {
    let chunks = chunk_count(info.size);
    let start = if received == record.sealed_size {
        chunks
    } else {
        received / SEALED_CHUNK_LEN as u64
    };
    let file = std::fs::File::open(local).map_err(|e| FilesError::io("open", local, e))?;
    let mut upload = if start < chunks {
        let request = Request::UploadData {
            upload_id: record.upload_id,
            offset: received,
        };
        Some(files.conn().call_with_upload(&request).await?)
    } else {
        None
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<SealedChunk>(SEALED_QUEUE);
    let reading = {
        let (local, info, key) = (local.to_path_buf(), *info, key.clone());
        tokio::task::spawn_blocking(move || read_and_seal(file, &local, &info, &key, start, &tx))
    };
    let mut sent: Result<(), FilesError> = Ok(());
    while let Some((len, sealed)) = rx.recv().await {
        if let (Some(upload), Some(sealed)) = (upload.as_mut(), sealed) {
            pace(limit, len as u64).await;
            if let Err(e) = upload.write(sealed).await {
                sent = Err(e.into());
                break;
            }
        }
        progress.advance(len as u64);
    }
    // Dropping the queue stops the reading thread if the network failed first.
    drop(rx);
    let read = reading
        .await
        .map_err(|e| FilesError::Usage(format!("reading {} failed: {e}", local.display())))?;
    sent?;
    let hash = read?;
    if let Some(upload) = upload {
        match upload.finish().await? {
            Response::UploadStatus { received, .. } if received == record.sealed_size => {}
            Response::UploadStatus { received, .. } => {
                return Err(FilesError::Integrity(format!(
                    "the server holds {received} of {} bytes after the upload; run the command again to resume",
                    record.sealed_size
                )));
            }
            other => return Err(unexpected("upload_data", &other)),
        }
    }
    Ok(hash)
}

/// The reading thread of [`send_contents`]: reads `local` chunk by chunk into a buffer
/// with room for the tag, hashes it, seals it in place and queues it (the chunks before
/// `start` are sealed only to advance the sealer, and not queued for sending). Returns the
/// BLAKE3 of the plaintext; fails if the file is not `info.size` bytes long after all.
fn read_and_seal(
    mut file: std::fs::File,
    local: &Path,
    info: &LocalFile,
    key: &Key32,
    start: u64,
    queue: &tokio::sync::mpsc::Sender<SealedChunk>,
) -> Result<[u8; 32], FilesError> {
    let chunks = chunk_count(info.size);
    let mut sealer = StreamSealer::new(key);
    let mut hasher = ContentHasher::new();
    for index in 0..chunks {
        let last = index + 1 == chunks;
        let len = if last {
            (info.size - index * CHUNK_LEN as u64) as usize
        } else {
            CHUNK_LEN
        };
        let mut buf = Zeroizing::new(Vec::with_capacity(len + TAG_LEN));
        let got = (&mut file)
            .take(len as u64)
            .read_to_end(&mut buf)
            .map_err(|e| FilesError::io("read", local, e))?;
        if got < len {
            return Err(changed(local));
        }
        hasher.update(&buf);
        sealer.seal_chunk_in_place(&mut buf, last)?;
        // Ciphertext from here on: nothing to wipe.
        let sealed = (index >= start).then(|| Bytes::from(std::mem::take(&mut *buf)));
        if queue.blocking_send((len, sealed)).is_err() {
            // The network side gave up; its error is the one to report.
            return Ok(hasher.finalize());
        }
    }
    let mut probe = [0u8; 1];
    if file
        .read(&mut probe)
        .map_err(|e| FilesError::io("read", local, e))?
        != 0
    {
        return Err(changed(local));
    }
    Ok(hasher.finalize())
}
