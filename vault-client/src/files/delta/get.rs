//! Downloading a version of format 2: open its chunk list, take what the machine already
//! holds (the file being replaced, and what an interrupted attempt left), fetch the rest,
//! prove every chunk and the whole, then rename into place. See [`super`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vault_core::crypto::Key32;
use vault_core::format::chunklist::{ChunkRef, open_chunk_list, sealed_list_len, total_len};
use vault_core::format::chunks::{ChunkId, MAX_CHUNK, sealed_len};
use vault_core::format::{ContentHasher, FileMeta};
use vault_core::proto::{ByteBuf, MAX_COMMIT_CHUNKS, NsRef, Request, Response, VersionInfo};
use vault_fsio::WriteBehind;
use zeroize::Zeroizing;

use super::IN_FLIGHT;
use super::scan::scan_chunks;
use crate::files::download::{Downloaded, Labels, PartPaths, finish};
use crate::files::progress::{Progress, RateLimit, pace};
use crate::files::{Files, FilesError, RemotePath, SpaceKeys, unexpected};
use crate::transport::{Connection, RawDownload};

/// What the version to fetch is: its number, key and metadata, and the keys of its space.
#[derive(Debug)]
pub struct Wanted<'a> {
    pub keys: Arc<SpaceKeys>,
    pub version: &'a VersionInfo,
    pub key: &'a Key32,
    pub meta: &'a FileMeta,
}

/// Writes the version whose sealed chunk list `stream` carries to `target`, through the
/// part file of `paths` (whose sidecar pins the version already), taking the chunks that
/// `target` or `reuse` (a file the download replaces) hold from them.
pub async fn fetch(
    files: &Files,
    remote: &RemotePath,
    (target, reuse): (&Path, Option<&Path>),
    paths: &PartPaths,
    wanted: Wanted<'_>,
    mut stream: RawDownload,
    (progress, limit): (&dyn Progress, Option<&RateLimit>),
) -> Result<Downloaded, FilesError> {
    let list = read_list(remote, &wanted, &mut stream).await?;
    let Wanted {
        keys,
        version,
        meta,
        ..
    } = wanted;

    // What this machine holds already: an interrupted attempt's part file (moved aside,
    // since the part file is written anew) and the file being replaced (at the target, or
    // where the caller says).
    let old_part = paths.part.with_extension("old");
    if paths.part.exists() {
        std::fs::rename(&paths.part, &old_part)
            .map_err(|e| FilesError::io("rename", &paths.part, e))?;
    }
    let mut sources: Vec<PathBuf> = vec![old_part.clone(), target.to_path_buf()];
    sources.extend(reuse.map(Path::to_path_buf));
    sources.dedup();
    sources.retain(|p| p.is_file());
    let generation = version.generation;
    let local = {
        let (keys, sources) = (Arc::clone(&keys), sources.clone());
        let ids: HashSet<ChunkId> = list.iter().map(|c| c.id).collect();
        tokio::task::spawn_blocking(move || index_local(&keys, generation, &sources, &ids))
            .await
            .map_err(|e| FilesError::Usage(format!("reading local files failed: {e}")))??
    };

    let out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&paths.part)
        .map_err(|e| FilesError::io("write", &paths.part, e))?;
    let out = WriteBehind::new(out, 0);
    let (tx, rx) = tokio::sync::mpsc::channel::<Piece>(IN_FLIGHT);
    let writing = {
        let keys = Arc::clone(&keys);
        let (part, what) = (paths.part.clone(), format!("{remote}: "));
        let nothing = format!("; nothing was written to {}", target.display());
        tokio::task::spawn_blocking(move || {
            write_all(
                &keys,
                generation,
                rx,
                sources,
                out,
                &part,
                (&what, &nothing),
            )
        })
    };
    let sent = send_pieces(files, &remote.ns, &list, &local, &tx, (progress, limit)).await;
    drop(tx);
    let written = writing
        .await
        .map_err(|e| FilesError::Usage(format!("writing {} failed: {e}", paths.part.display())))?;
    let reused = sent?;
    let (hasher, out) = written?;
    if hasher.finalize() != meta.blake3 {
        paths.discard();
        let _ = std::fs::remove_file(&old_part);
        return Err(FilesError::Integrity(format!(
            "{remote}: the contents do not match their BLAKE3 hash; nothing was written to {}",
            target.display()
        )));
    }
    finish(out.into_inner(), &paths.part, target, meta)?;
    let _ = std::fs::remove_file(&old_part);
    paths.tidy();
    Ok(Downloaded {
        local: target.to_path_buf(),
        bytes: meta.size,
        version: version.version,
        resumed_at: 0,
        reused,
        unchanged: false,
    })
}

/// Reads the version's sealed chunk list from `stream` and opens it, checking it holds
/// as many bytes as the metadata says.
async fn read_list(
    remote: &RemotePath,
    wanted: &Wanted<'_>,
    stream: &mut RawDownload,
) -> Result<Vec<ChunkRef>, FilesError> {
    let sealed_size = wanted.version.sealed_size;
    if sealed_size > sealed_list_len(MAX_COMMIT_CHUNKS) {
        return Err(FilesError::Integrity(format!(
            "{remote}: a chunk list of {sealed_size} bytes is more than any version has"
        )));
    }
    let mut sealed = vec![0u8; sealed_size as usize];
    if stream.read_full(&mut sealed).await? < sealed.len() {
        return Err(FilesError::Integrity(format!(
            "{remote}: the server sent only part of the chunk list; run the command again"
        )));
    }
    stream.expect_end().await?;
    let list = open_chunk_list(wanted.key, &sealed)
        .map_err(|e| FilesError::Integrity(format!("{remote}: {e}")))?;
    if total_len(&list) != wanted.meta.size {
        return Err(FilesError::Integrity(format!(
            "{remote}: the chunk list holds {} bytes, the metadata says {}",
            total_len(&list),
            wanted.meta.size
        )));
    }
    Ok(list)
}

/// Writes the version whose sealed chunk list `stream` carries to `out` (standard output),
/// fetching every chunk and writing each once it proves its id, in order. The BLAKE3 of
/// the whole is checked at the end: a mismatch is an error after the bytes went out,
/// which `labels.nothing` says. Returns `out`.
pub(crate) async fn stream_to<W: Write + Send + 'static>(
    files: &Files,
    remote: &RemotePath,
    wanted: Wanted<'_>,
    mut stream: RawDownload,
    (out, labels): (W, Labels),
    (progress, limit): (&dyn Progress, Option<&RateLimit>),
) -> Result<W, FilesError> {
    let list = read_list(remote, &wanted, &mut stream).await?;
    let generation = wanted.version.generation;
    let (tx, rx) = tokio::sync::mpsc::channel::<Piece>(IN_FLIGHT);
    let writing = {
        let keys = Arc::clone(&wanted.keys);
        let labels = Labels {
            what: labels.what.clone(),
            nothing: labels.nothing.clone(),
            written_to: labels.written_to.clone(),
        };
        tokio::task::spawn_blocking(move || {
            write_all(
                &keys,
                generation,
                rx,
                Vec::new(),
                out,
                &labels.written_to,
                (&labels.what, &labels.nothing),
            )
        })
    };
    let sent = send_pieces(
        files,
        &remote.ns,
        &list,
        &LocalIndex::new(),
        &tx,
        (progress, limit),
    )
    .await;
    drop(tx);
    let written = writing
        .await
        .map_err(|e| FilesError::Usage(format!("writing the output failed: {e}")))?;
    sent?;
    let (hasher, out) = written?;
    if hasher.finalize() != wanted.meta.blake3 {
        return Err(FilesError::Integrity(format!(
            "{remote}: the contents do not match their BLAKE3 hash{}",
            labels.nothing
        )));
    }
    Ok(out)
}

/// Where a chunk of the list is on this machine: which source, at which offset.
type LocalIndex = HashMap<ChunkId, (usize, u64)>;

/// Scans each of `sources` with the chunker of `generation` and notes where the chunks of
/// `ids` are (the first place found).
fn index_local(
    keys: &SpaceKeys,
    generation: u32,
    sources: &[PathBuf],
    ids: &HashSet<ChunkId>,
) -> Result<LocalIndex, FilesError> {
    let chunker = keys.chunk_keys(generation)?;
    let mut index = LocalIndex::new();
    for (n, path) in sources.iter().enumerate() {
        let Ok(mut file) = std::fs::File::open(path) else {
            continue; // unreadable: fetch instead
        };
        let Ok(scanned) = scan_chunks(chunker, &mut file) else {
            continue;
        };
        for (offset, chunk) in scanned.chunks {
            if ids.contains(&chunk.id) {
                index.entry(chunk.id).or_insert((n, offset));
            }
        }
    }
    Ok(index)
}

/// One chunk for the writing thread, in the list's order.
enum Piece {
    /// Read it from local source `source` at `offset`.
    Local {
        chunk: ChunkRef,
        source: usize,
        offset: u64,
    },
    /// Open it from these sealed bytes.
    Fetched { chunk: ChunkRef, sealed: Vec<u8> },
}

/// Hands the writing thread every chunk of `list` in order, fetching those not in `local`
/// ([`IN_FLIGHT`] ahead). Returns the plaintext bytes taken from local sources.
async fn send_pieces(
    files: &Files,
    ns: &NsRef,
    list: &[ChunkRef],
    local: &LocalIndex,
    tx: &tokio::sync::mpsc::Sender<Piece>,
    (progress, limit): (&dyn Progress, Option<&RateLimit>),
) -> Result<u64, FilesError> {
    let mut remote = list
        .iter()
        .filter(|c| !local.contains_key(&c.id))
        .map(|c| c.id);
    let mut pending: VecDeque<tokio::task::JoinHandle<Result<Vec<u8>, FilesError>>> =
        VecDeque::new();
    let spawn = |id: ChunkId| {
        let (conn, ns) = (files.conn(), ns.clone());
        tokio::spawn(async move { get_chunk(&conn, ns, id).await })
    };
    let mut reused = 0u64;
    let result = async {
        for chunk in list {
            while pending.len() < IN_FLIGHT {
                let Some(id) = remote.next() else { break };
                pending.push_back(spawn(id));
            }
            let piece = match local.get(&chunk.id) {
                Some(&(source, offset)) => {
                    reused += u64::from(chunk.len);
                    Piece::Local {
                        chunk: *chunk,
                        source,
                        offset,
                    }
                }
                None => {
                    let next = pending
                        .pop_front()
                        .ok_or_else(|| FilesError::Usage("a chunk fetch went missing".into()))?;
                    let sealed = next.await.map_err(|e| {
                        FilesError::Usage(format!("fetching a chunk failed: {e}"))
                    })??;
                    pace(limit, sealed.len() as u64).await;
                    Piece::Fetched {
                        chunk: *chunk,
                        sealed,
                    }
                }
            };
            if tx.send(piece).await.is_err() {
                break; // the writing thread failed: its error is read by the caller
            }
            progress.advance(u64::from(chunk.len));
        }
        Ok(reused)
    }
    .await;
    for task in pending {
        task.abort();
    }
    result
}

/// One `chunk_get`: the sealed bytes of chunk `id` (opened by the writing thread).
async fn get_chunk(conn: &Connection, ns: NsRef, id: ChunkId) -> Result<Vec<u8>, FilesError> {
    let request = Request::ChunkGet {
        ns,
        id: ByteBuf::from(id.0.to_vec()),
    };
    let (response, mut stream) = conn.call_with_download(&request).await?;
    let size = match response {
        Response::Chunk { sealed_size } => sealed_size,
        other => return Err(unexpected("chunk_get", &other)),
    };
    if size > sealed_len(MAX_CHUNK) as u64 {
        return Err(FilesError::Integrity(format!(
            "the server announced a chunk of {size} bytes, more than any chunk has"
        )));
    }
    let mut sealed = vec![0u8; size as usize];
    if stream.read_full(&mut sealed).await? < sealed.len() {
        return Err(if conn.is_closed() {
            crate::ClientError::Closed("the download was cut off".into()).into()
        } else {
            FilesError::Integrity(
                "the server sent only part of a chunk; run the command again to resume".into(),
            )
        });
    }
    stream.expect_end().await?;
    Ok(sealed)
}

/// The writing thread: takes the pieces in order, reads or opens each, proves it against
/// its id, hashes it and writes it to the part file. Returns the hash of the whole and
/// the part file. A chunk that does not prove its id stops it, with `prefix`, the reason
/// and `suffix` as the error.
fn write_all<W: Write>(
    keys: &SpaceKeys,
    generation: u32,
    mut queue: tokio::sync::mpsc::Receiver<Piece>,
    sources: Vec<PathBuf>,
    mut out: W,
    part: &Path,
    (prefix, suffix): (&str, &str),
) -> Result<(ContentHasher, W), FilesError> {
    let chunker = keys.chunk_keys(generation)?;
    let opened: Vec<Option<std::fs::File>> = sources
        .iter()
        .map(|p| std::fs::File::open(p).ok())
        .collect();
    let mut hasher = ContentHasher::new();
    while let Some(piece) = queue.blocking_recv() {
        let (chunk, plain) = match piece {
            Piece::Local {
                chunk,
                source,
                offset,
            } => {
                let mut plain = Zeroizing::new(vec![0u8; chunk.len as usize]);
                let read = opened
                    .get(source)
                    .and_then(Option::as_ref)
                    .map(|f| f.read_exact_at(&mut plain, offset));
                if !matches!(read, Some(Ok(()))) || chunker.id(&plain) != chunk.id {
                    return Err(FilesError::Usage(format!(
                        "{prefix}{} changed while it was read; run the command again{suffix}",
                        sources[source].display()
                    )));
                }
                (chunk, plain)
            }
            Piece::Fetched { chunk, sealed } => {
                let plain = chunker
                    .open(&chunk.id, &sealed)
                    .map_err(|e| FilesError::Integrity(format!("{prefix}{e}{suffix}")))?;
                if plain.len() != chunk.len as usize {
                    return Err(FilesError::Integrity(format!(
                        "{prefix}a chunk holds {} bytes, the chunk list says {}{suffix}",
                        plain.len(),
                        chunk.len
                    )));
                }
                (chunk, plain)
            }
        };
        debug_assert_eq!(plain.len(), chunk.len as usize);
        hasher.update(&plain);
        out.write_all(&plain)
            .map_err(|e| FilesError::io("write", part, e))?;
    }
    Ok((hasher, out))
}
