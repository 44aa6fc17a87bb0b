//! Uploading a file in format 2: scan, ask which chunks the space lacks, send those, then
//! commit the version (its sealed chunk list, and the ids it uses). See [`super`].

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use vault_core::crypto::Key32;
use vault_core::format::chunklist::{ChunkRef, seal_chunk_list, sealed_list_len};
use vault_core::format::chunks::{ChunkId, ChunkKeys, sealed_len};
use vault_core::format::meta::Contents;
use vault_core::format::{FileMeta, generate_file_key, seal_meta};
use vault_core::proto::{ByteBuf, CHUNKS_PER_QUERY, MAX_COMMIT_CHUNKS, NsRef, Request, Response};
use zeroize::Zeroizing;

use super::IN_FLIGHT;
use super::scan::{Scanned, scan_file};
use crate::files::leftovers::NotedOpen;
use crate::files::progress::{Progress, RateLimit, pace};
use crate::files::resume::{ResumeRecord, ResumeStore};
use crate::files::transfer::{THROTTLE_WAITS, pause};
use crate::files::unchanged::CurrentVersion;
use crate::files::upload::{LocalFile, Uploaded, changed};
use crate::files::{Files, FilesError, RemotePath, SpaceKeys, unexpected};
use crate::transport::Connection;

/// Uploads `local` to `remote` as a new version in format 2, unless `current` (the remote
/// file's current version, when known) holds what the scan finds (the same size and
/// BLAKE3): then nothing is sent and the file is reported unchanged. With `if_current`,
/// the version commits only while the remote file's current version is that one (0:
/// none). `None` when the file has more chunks than one commit may name
/// ([`MAX_COMMIT_CHUNKS`]): it is then for format 1.
pub async fn upload_chunked(
    files: &Files,
    local: &Path,
    remote: &RemotePath,
    (current, if_current): (Option<&CurrentVersion>, Option<u64>),
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<Option<Uploaded>, FilesError> {
    let info = LocalFile::stat(local)?;
    let keys = files.keys_for(&remote.ns).await?;
    let generation = keys.newest_generation();
    let encrypted = keys.encrypt_path(&remote.segments)?;
    let absolute = std::path::absolute(local).map_err(|e| FilesError::io("read", local, e))?;
    let scanned = match files.scans().get(&absolute, &info, generation) {
        Some(scanned) => scanned,
        None => {
            let (keys, path) = (Arc::clone(&keys), local.to_path_buf());
            let scanned = tokio::task::spawn_blocking(move || -> Result<Scanned, FilesError> {
                scan_file(keys.chunk_keys(generation)?, &path)
                    .map_err(|e| FilesError::io("read", &path, e))
            })
            .await
            .map_err(|e| FilesError::Usage(format!("reading {} failed: {e}", local.display())))??;
            let scanned = Arc::new(scanned);
            files
                .scans()
                .put(&absolute, info, generation, Arc::clone(&scanned));
            scanned
        }
    };
    if scanned.size != info.size {
        return Err(changed(local));
    }
    if let Some(current) = current
        && current.matches(scanned.size, &scanned.blake3)
    {
        files.scans().forget(&absolute);
        progress.advance(info.size);
        return Ok(Some(Uploaded {
            remote: remote.clone(),
            bytes: info.size,
            file_id: current.file_id,
            version: current.version,
            resumed_at: 0,
            reused: 0,
            unchanged: true,
        }));
    }
    if scanned.chunks.len() > MAX_COMMIT_CHUNKS {
        return Ok(None);
    }
    let places = scanned.first_places();
    let mut distinct: Vec<ChunkId> = Vec::with_capacity(places.len());
    let mut seen = HashSet::with_capacity(places.len());
    for (_, chunk) in &scanned.chunks {
        if seen.insert(chunk.id) {
            distinct.push(chunk.id);
        }
    }
    let missing = ask_missing(files, &remote.ns, &distinct).await?;
    let mut occurrences: HashMap<ChunkId, u64> = HashMap::new();
    for (_, chunk) in &scanned.chunks {
        *occurrences.entry(chunk.id).or_default() += 1;
    }
    let mut sends: Vec<Send> = distinct
        .iter()
        .filter(|id| missing.contains(*id))
        .map(|id| {
            let (offset, len) = places[id];
            Send {
                id: *id,
                offset,
                len,
                occurrences: occurrences[id],
            }
        })
        .collect();
    sends.sort_by_key(|s| s.offset);
    let chunk_bytes: u64 = sends
        .iter()
        .map(|s| sealed_len(s.len as usize) as u64)
        .sum();
    let list: Vec<ChunkRef> = scanned.chunks.iter().map(|(_, c)| *c).collect();

    // The version's upload is opened first: the server checks the quota and the disk for
    // everything this version will store before a chunk is sent. Its token, noted before
    // the request, and then a record of it let the next run abort it should this one die.
    let store = ResumeStore::new(files.state());
    let record_path = store.path_for(files.server(), files.user(), &encrypted, &absolute);
    if let Some(earlier) = store.load(&record_path) {
        let abort = Request::UploadAbort {
            upload_id: earlier.upload_id,
        };
        if let Err(e) = files.call(&abort).await
            && e.is_connection()
        {
            return Err(e);
        }
        store.remove(&record_path);
    }
    let noted = NotedOpen::new(files)?;
    let opened = match open_version(
        files,
        (remote, &encrypted, noted.token(), if_current),
        &keys,
        generation,
        &list,
        chunk_bytes,
    )
    .await
    {
        Ok(opened) => opened,
        // The request may have opened the upload: its token stays noted for the abort.
        Err(e) if e.is_connection() => return Err(e),
        Err(e) => {
            noted.done();
            return Err(e);
        }
    };
    store.save(&record_path, &opened.record(&encrypted, &list, &info))?;
    noted.done();

    let to_send: u64 = sends.iter().map(|s| u64::from(s.len) * s.occurrences).sum();
    let reused = info.size - to_send;
    progress.advance(reused);
    let sent = send_chunks(
        files,
        (&remote.ns, opened.upload_id),
        (Arc::clone(&keys), generation),
        local,
        sends,
        progress,
        limit,
    )
    .await;
    let finished = match sent {
        Ok(()) if LocalFile::stat(local)? != info => Err(changed(local)),
        Ok(()) => {
            let meta = FileMeta {
                size: info.size,
                mtime_s: info.mtime_s,
                mtime_ns: info.mtime_ns,
                mode: info.mode,
                blake3: scanned.blake3,
                contents: Contents::Chunks,
            };
            finish_version(files, &opened, (&list, &distinct), &meta).await
        }
        Err(e) => Err(e),
    };
    match finished {
        Ok(()) => {
            store.remove(&record_path);
            files.scans().forget(&absolute);
        }
        // The chunks sent stay for the next run; the version's upload goes (a lost
        // connection leaves it to the next run, which aborts it by its record).
        Err(e) if e.is_connection() => return Err(e),
        Err(e) => {
            opened.abort(files).await;
            store.remove(&record_path);
            return Err(e);
        }
    }
    Ok(Some(Uploaded {
        remote: remote.clone(),
        bytes: info.size,
        file_id: opened.file_id,
        version: opened.version,
        resumed_at: 0,
        reused,
        unchanged: false,
    }))
}

/// The ids among `ids` that the space of `ns` does not hold, asked a page at a time.
async fn ask_missing(
    files: &Files,
    ns: &NsRef,
    ids: &[ChunkId],
) -> Result<HashSet<ChunkId>, FilesError> {
    ask_missing_on(&files.conn(), ns, ids).await
}

/// [`ask_missing`] on `conn`, each page sent again after a "slow down" answer as often
/// as [`THROTTLE_WAITS`].
pub(crate) async fn ask_missing_on(
    conn: &Connection,
    ns: &NsRef,
    ids: &[ChunkId],
) -> Result<HashSet<ChunkId>, FilesError> {
    let mut missing = HashSet::new();
    for page in ids.chunks(CHUNKS_PER_QUERY) {
        let request = Request::ChunksMissing {
            ns: ns.clone(),
            ids: page.iter().map(|id| ByteBuf::from(id.0.to_vec())).collect(),
        };
        let mut tries = 0;
        let answer = loop {
            match conn.call(&request).await.map_err(FilesError::from) {
                Err(e) if tries < THROTTLE_WAITS && e.retry_after().is_some() => {
                    tries += 1;
                    pause(e.retry_after().unwrap_or(1)).await;
                }
                answer => break answer?,
            }
        };
        match answer {
            Response::ChunksMissing { missing: indexes } => {
                for i in indexes {
                    let id = page.get(i as usize).ok_or_else(|| {
                        FilesError::Integrity(format!(
                            "the server named chunk {i} of a page of {}",
                            page.len()
                        ))
                    })?;
                    missing.insert(*id);
                }
            }
            other => return Err(unexpected("chunks_missing", &other)),
        }
    }
    Ok(missing)
}

/// A chunk to send: where it is in the file, and how often the file holds it.
#[derive(Clone, Copy, Debug)]
struct Send {
    id: ChunkId,
    offset: u64,
    len: u32,
    occurrences: u64,
}

/// A sealed chunk ready to go, and the plaintext bytes of the file it stands for.
type Sealed = (ChunkId, Bytes, u64);

/// Reads, checks and seals each chunk of `sends` on a blocking thread a few chunks ahead,
/// and sends them with `chunk_put`, [`IN_FLIGHT`] at a time, each for the version's upload
/// (`upload_id`) so that the server holds its reservation no longer than needed.
async fn send_chunks(
    files: &Files,
    (ns, upload_id): (&NsRef, i64),
    (keys, generation): (Arc<SpaceKeys>, u32),
    local: &Path,
    sends: Vec<Send>,
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<(), FilesError> {
    if sends.is_empty() {
        return Ok(());
    }
    let file = std::fs::File::open(local).map_err(|e| FilesError::io("open", local, e))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Sealed>(2);
    let reading = {
        let path = local.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<(), FilesError> {
            let keys: &ChunkKeys = keys.chunk_keys(generation)?;
            for send in sends {
                let mut plain = Zeroizing::new(vec![0u8; send.len as usize]);
                file.read_exact_at(&mut plain, send.offset)
                    .map_err(|e| FilesError::io("read", &path, e))?;
                let (id, sealed) = keys.seal(&plain)?;
                if id != send.id {
                    return Err(changed(&path));
                }
                let bytes = u64::from(send.len) * send.occurrences;
                if tx.blocking_send((id, Bytes::from(sealed), bytes)).is_err() {
                    return Ok(()); // the network side gave up: its error is reported
                }
            }
            Ok(())
        })
    };
    let mut running = tokio::task::JoinSet::new();
    let mut sent: Result<(), FilesError> = Ok(());
    'sending: loop {
        while running.len() < IN_FLIGHT {
            let Some((id, sealed, bytes)) = rx.recv().await else {
                break;
            };
            pace(limit, sealed.len() as u64).await;
            let (conn, ns) = (files.conn(), ns.clone());
            running.spawn(async move {
                put_chunk(&conn, (ns, Some(upload_id)), id, sealed)
                    .await
                    .map(|()| bytes)
            });
        }
        match running.join_next().await {
            None => break 'sending,
            Some(Ok(Ok(bytes))) => progress.advance(bytes),
            Some(Ok(Err(e))) => {
                sent = Err(e);
                break 'sending;
            }
            Some(Err(e)) => {
                sent = Err(FilesError::Usage(format!("sending a chunk failed: {e}")));
                break 'sending;
            }
        }
    }
    running.abort_all();
    drop(rx);
    let read = reading
        .await
        .map_err(|e| FilesError::Usage(format!("reading {} failed: {e}", local.display())))?;
    sent?;
    read
}

/// One `chunk_put` for upload `upload_id` (if any: without one, the server checks the
/// quota for the chunk alone), sent again after a "slow down" answer (the server's request
/// budget was spent) as often as [`THROTTLE_WAITS`].
pub(crate) async fn put_chunk(
    conn: &Connection,
    (ns, upload_id): (NsRef, Option<i64>),
    id: ChunkId,
    sealed: Bytes,
) -> Result<(), FilesError> {
    let request = Request::ChunkPut {
        ns,
        id: ByteBuf::from(id.0.to_vec()),
        sealed_size: sealed.len() as u64,
        upload_id,
    };
    let mut tries = 0;
    loop {
        let attempt = async {
            let mut upload = conn.call_with_upload(&request).await?;
            upload.write(sealed.clone()).await?;
            match upload.finish().await? {
                Response::Ok => Ok(()),
                other => Err(unexpected("chunk_put", &other)),
            }
        };
        match attempt.await {
            Err(e) if tries < THROTTLE_WAITS && e.retry_after().is_some() => {
                tries += 1;
                pause(e.retry_after().unwrap_or(1)).await;
            }
            done => return done,
        }
    }
}

/// The upload of a version of format 2, opened: its ids, and its file key (made after
/// the server named the file and version, and wrapped for them).
pub(crate) struct OpenedVersion {
    pub(crate) upload_id: i64,
    pub(crate) file_id: i64,
    pub(crate) version: u64,
    generation: u32,
    key: Key32,
    wrapped: Vec<u8>,
}

impl OpenedVersion {
    /// Asks the server to drop this upload (best effort: what is left expires).
    pub(crate) async fn abort(&self, files: &Files) {
        let _ = files
            .call(&Request::UploadAbort {
                upload_id: self.upload_id,
            })
            .await;
    }

    /// What the next run needs to abort this upload should this one die.
    fn record(&self, encrypted: &str, list: &[ChunkRef], info: &LocalFile) -> ResumeRecord {
        ResumeRecord {
            upload_id: self.upload_id,
            file_id: self.file_id,
            version: self.version,
            generation: self.generation,
            remote: encrypted.to_owned(),
            sealed_size: sealed_list_len(list.len()),
            local_size: info.size,
            local_mtime_s: info.mtime_s,
            local_mtime_ns: info.mtime_ns,
            wrapped_key: hex::encode(&self.wrapped),
        }
    }
}

/// Opens the upload of a version whose sealed chunk list holds `list` under the noted
/// `token`, announcing the `chunk_bytes` of chunks it will store, and makes and wraps its
/// file key.
pub(crate) async fn open_version(
    files: &Files,
    (remote, encrypted, token, if_current): (&RemotePath, &str, String, Option<u64>),
    keys: &SpaceKeys,
    generation: u32,
    list: &[ChunkRef],
    chunk_bytes: u64,
) -> Result<OpenedVersion, FilesError> {
    let request = Request::UploadOpen {
        ns: remote.ns.clone(),
        path: encrypted.to_owned(),
        sealed_size: sealed_list_len(list.len()),
        chunk_bytes,
        batch: Some(token),
        if_current,
    };
    let (upload_id, file_id, version, opened_generation) = match files.call(&request).await? {
        Response::UploadOpened {
            upload_id,
            file_id,
            version,
            generation,
            ..
        } => (upload_id, file_id, version, generation),
        other => return Err(unexpected("upload_open", &other)),
    };
    let made = (|| {
        if opened_generation != generation {
            return Err(FilesError::Usage(
                "the group key was rotated during the upload; run the command again".into(),
            ));
        }
        let key = generate_file_key()?;
        let wrapped = keys.wrap(generation, file_id, version, &key)?;
        Ok((key, wrapped))
    })();
    match made {
        Ok((key, wrapped)) => Ok(OpenedVersion {
            upload_id,
            file_id,
            version,
            generation,
            key,
            wrapped,
        }),
        Err(e) => {
            let _ = files.call(&Request::UploadAbort { upload_id }).await;
            Err(e)
        }
    }
}

/// Sends the version's sealed chunk list and commits it with the ids of the chunks it
/// uses and its metadata.
pub(crate) async fn finish_version(
    files: &Files,
    opened: &OpenedVersion,
    (list, distinct): (&[ChunkRef], &[ChunkId]),
    meta: &FileMeta,
) -> Result<(), FilesError> {
    let sealed_size = sealed_list_len(list.len());
    let sealed_list = seal_chunk_list(&opened.key, list)?;
    let mut upload = files
        .conn()
        .call_with_upload(&Request::UploadData {
            upload_id: opened.upload_id,
            offset: 0,
        })
        .await?;
    upload.write(Bytes::from(sealed_list)).await?;
    match upload.finish().await? {
        Response::UploadStatus { received, .. } if received == sealed_size => {}
        other => return Err(unexpected("upload_data", &other)),
    }
    let commit = Request::UploadCommit {
        upload_id: opened.upload_id,
        wrapped_key: ByteBuf::from(opened.wrapped.clone()),
        sealed_meta: ByteBuf::from(seal_meta(&opened.key, meta)?),
        chunks: distinct
            .iter()
            .map(|id| ByteBuf::from(id.0.to_vec()))
            .collect(),
    };
    files.call(&commit).await?;
    Ok(())
}
