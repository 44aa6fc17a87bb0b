//! Files to and from pipes, as rclone's `cat` and `rcat`: `vault get REMOTE -` (and `vault
//! cat`) writes a file to standard output, `vault put - REMOTE` stores standard input as a
//! file. Neither touches the disk, and memory stays bounded whatever the size.
//!
//! - [`download_to`] writes each chunk once it is proved (the STREAM chunks of format 1,
//!   or the chunks of format 2 against their ids), in order, so what the reader gets is
//!   always an authenticated prefix of the file. The BLAKE3 of the whole is checked at the
//!   end; a cut-off transfer or a mismatch is an error (exit status 1) after what came
//!   before went out, as with `age -d` on a truncated file. Nothing is resumed.
//! - [`upload_from`] cuts the input with the space's keyed chunker as it arrives, and
//!   sends each chunk the space lacks at once (`chunks_missing`, then `chunk_put` outside
//!   any upload: the quota is checked per chunk), a few at a time. Once the input ends, the
//!   version is opened and committed with its sealed chunk list, as for a file of format 2.
//!   Run again on the same input, it sends only the chunks the first try did not store:
//!   that is how it resumes. Until the commit nothing refers to the chunks sent, so they
//!   are marked in use every [`MARK_EVERY`] (gc frees unused chunks after its grace), and
//!   once more before the commit, which checks the space holds them all. One version from
//!   a pipe holds at most [`MAX_COMMIT_CHUNKS`] chunks (about 16 GiB); a longer input is
//!   refused once it gets there.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use vault_core::format::chunklist::ChunkRef;
use vault_core::format::chunks::{ChunkId, MAX_CHUNK};
use vault_core::format::meta::Contents;
use vault_core::format::{ContentHasher, FileMeta, StreamOpener, chunk_count};
use vault_core::proto::{MAX_COMMIT_CHUNKS, Request};
use zeroize::Zeroizing;

use super::delta::{self, IN_FLIGHT};
use super::download::{Labels, Opened, download_started, no_such_file, receive_chunks};
use super::leftovers::NotedOpen;
use super::progress::{Progress, RateLimit, pace};
use super::{Files, FilesError, RemotePath};

/// What a transfer through a pipe did.
#[derive(Clone, Debug)]
pub struct Piped {
    pub remote: RemotePath,
    /// Plaintext bytes.
    pub bytes: u64,
    pub file_id: i64,
    pub version: u64,
    /// Plaintext bytes of chunks the space held already, so not sent (uploads).
    pub reused: u64,
}

/// The name errors give the output or input of a pipe.
const STDOUT: &str = "standard output";

/// Writes the current version of `remote` to `out`, each chunk once it is proved (see the
/// module docs). Returns what was written once the whole proved to be the file.
pub async fn download_to<W: Write + Send + 'static>(
    files: &Files,
    remote: &RemotePath,
    out: W,
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<Piped, FilesError> {
    let keys = files.keys_for(&remote.ns).await?;
    let request = Request::Download {
        ns: remote.ns.clone(),
        path: keys.encrypt_path(&remote.segments)?,
        version: None,
        from_chunk: 0,
    };
    let conn = files.conn();
    let (response, mut stream) = conn
        .call_with_download(&request)
        .await
        .map_err(|e| no_such_file(remote, e))?;
    let (file_id, version, offset) = download_started(response)?;
    if offset != 0 {
        return Err(FilesError::Integrity(format!(
            "{remote}: asked for the whole file, the server started at byte {offset}"
        )));
    }
    let keys = files.keys_with(&remote.ns, [version.generation]).await?;
    let (key, meta) = keys.open_version(file_id, &version)?;
    progress.begin(1, meta.size);
    let labels = Labels {
        what: format!("{remote}: "),
        nothing: format!("; {STDOUT} got only what came before"),
        written_to: PathBuf::from(STDOUT),
    };
    let mut out = if meta.contents == Contents::Chunks {
        let wanted = delta::get::Wanted {
            keys,
            version: &version,
            key: &key,
            meta: &meta,
        };
        delta::get::stream_to(
            files,
            remote,
            wanted,
            stream,
            (out, labels),
            (progress, limit),
        )
        .await?
    } else {
        let opened = Opened {
            opener: StreamOpener::new(&key),
            hasher: ContentHasher::new(),
            out,
        };
        let nothing = labels.nothing.clone();
        let sizes = (version.sealed_size, chunk_count(meta.size));
        let (written, cut_short) = receive_chunks(
            &conn,
            &mut stream,
            sizes,
            0,
            opened,
            labels,
            (progress, limit),
        )
        .await?;
        if let Some(e) = cut_short {
            return Err(e);
        }
        let Opened {
            opener,
            hasher,
            out,
        } = written?;
        stream.expect_end().await?;
        opener.finish()?;
        if hasher.finalize() != meta.blake3 {
            return Err(FilesError::Integrity(format!(
                "{remote}: the contents do not match their BLAKE3 hash{nothing}"
            )));
        }
        out
    };
    out.flush()
        .map_err(|e| FilesError::io("write", STDOUT, e))?;
    progress.file_done();
    Ok(Piped {
        remote: remote.clone(),
        bytes: meta.size,
        file_id,
        version: version.version,
        reused: 0,
    })
}

/// A chunk of the input, sealed: its id, plaintext length and sealed bytes.
type SealedPiece = (ChunkId, u32, Bytes);

/// What the reading thread found once the input ended: its length and BLAKE3.
type InputEnd = (u64, [u8; 32]);

/// Stores what `input` holds, to its end, as a new version of `remote` (see the module
/// docs). `input` is read on a thread of its own, so a reader that never ends does not
/// hold the command up once it has failed.
pub async fn upload_from<R: Read + Send + 'static>(
    files: &Files,
    input: R,
    remote: &RemotePath,
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<Piped, FilesError> {
    let keys = files.keys_for(&remote.ns).await?;
    let generation = keys.newest_generation();
    let encrypted = keys.encrypt_path(&remote.segments)?;
    progress.begin(1, 0);

    let (tx, mut rx) = tokio::sync::mpsc::channel::<SealedPiece>(2);
    let (end_tx, end_rx) = tokio::sync::oneshot::channel();
    {
        let keys = std::sync::Arc::clone(&keys);
        std::thread::spawn(move || {
            let read = keys
                .chunk_keys(generation)
                .and_then(|chunker| read_input(chunker, input, &tx));
            let _ = end_tx.send(read);
        });
    }

    let mut list: Vec<ChunkRef> = Vec::new();
    let mut distinct: Vec<ChunkId> = Vec::new();
    let mut seen = HashSet::new();
    let mut reused = 0u64;
    // The chunks the space is known to hold, and when they were last marked in use.
    let mut stored: Vec<ChunkId> = Vec::new();
    let mut marked = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    let sent: Result<(), FilesError> = async {
        loop {
            if marked.elapsed() >= MARK_EVERY {
                keep_in_use(files, remote, &stored).await?;
                marked = Instant::now();
            }
            // Room for one more chunk in flight, or wait for one to finish.
            if running.len() >= IN_FLIGHT {
                if let Some(done) = running.join_next().await {
                    reused += chunk_done(done, progress, &mut stored)?;
                }
                continue;
            }
            // The next chunk; an input that is slow to come still gets its marks.
            let next = tokio::select! {
                next = rx.recv() => next,
                () = tokio::time::sleep_until((marked + MARK_EVERY).into()) => continue,
            };
            let Some((id, len, sealed)) = next else {
                break;
            };
            list.push(ChunkRef { id, len });
            if list.len() > MAX_COMMIT_CHUNKS {
                return Err(FilesError::Usage(format!(
                    "the input is longer than one version from a pipe may be ({MAX_COMMIT_CHUNKS} \
                     chunks, about {} GiB): write it to a file and put that",
                    MAX_COMMIT_CHUNKS >> 10
                )));
            }
            if !seen.insert(id) {
                reused += u64::from(len);
                progress.advance(u64::from(len));
                continue;
            }
            distinct.push(id);
            pace(limit, sealed.len() as u64).await;
            let (conn, ns) = (files.conn(), remote.ns.clone());
            running.spawn(async move {
                let held = delta::put::ask_missing_on(&conn, &ns, &[id])
                    .await?
                    .is_empty();
                if !held {
                    delta::put::put_chunk(&conn, (ns, None), id, sealed).await?;
                }
                Ok::<_, FilesError>((id, len, held))
            });
        }
        while let Some(done) = running.join_next().await {
            reused += chunk_done(done, progress, &mut stored)?;
        }
        Ok(())
    }
    .await;
    running.abort_all();
    drop(rx);
    if let Err(e) = sent {
        return Err(with_what_stays(
            e,
            list.iter().map(|c| u64::from(c.len)).sum(),
        ));
    }
    let (size, blake3) = end_rx
        .await
        .map_err(|_| FilesError::Usage("reading the input failed".into()))??;
    // Marked in use once more, which also proves that the space holds every one.
    keep_in_use(files, remote, &distinct).await?;

    let meta = FileMeta {
        size,
        mtime_s: now_s(),
        mtime_ns: 0,
        mode: 0o600,
        blake3,
        contents: Contents::Chunks,
    };
    // Noted until the version commits or is aborted: should this command die in
    // between, the next one aborts what it opened.
    let noted = NotedOpen::new(files)?;
    let opened = delta::put::open_version(
        files,
        (remote, &encrypted, noted.token(), None),
        &keys,
        generation,
        &list,
        0,
    )
    .await?;
    match delta::put::finish_version(files, &opened, (&list, &distinct), &meta).await {
        Ok(()) => noted.done(),
        Err(e) if e.is_connection() => return Err(e),
        Err(e) => {
            opened.abort(files).await;
            noted.done();
            return Err(e);
        }
    }
    progress.file_done();
    Ok(Piped {
        remote: remote.clone(),
        bytes: size,
        file_id: opened.file_id,
        version: opened.version,
        reused,
    })
}

/// How often the chunks sent so far are marked in use while the input lasts: well within
/// the server's gc grace (`files.blob_grace_s`, an hour by default), which frees chunks
/// that no version uses and nothing marked for that long.
const MARK_EVERY: Duration = Duration::from_secs(300);

/// Asks the server about `ids` (`chunks_missing`), which marks those it holds in use so
/// that gc leaves them for the commit to come; fails if it lacks any.
async fn keep_in_use(
    files: &Files,
    remote: &RemotePath,
    ids: &[ChunkId],
) -> Result<(), FilesError> {
    let missing = delta::put::ask_missing_on(&files.conn(), &remote.ns, ids).await?;
    if !missing.is_empty() {
        return Err(FilesError::Usage(format!(
            "{remote}: the server no longer holds {} of the chunks sent (its gc freed them \
             meanwhile); run the command again with the same input",
            missing.len()
        )));
    }
    Ok(())
}

/// `e`, and for a refusal over the quota what became of the `read` bytes of input sent so
/// far: their chunks stay stored and counted until gc frees them, and a later `put -` of
/// the same input does not send them again.
fn with_what_stays(e: FilesError, read: u64) -> FilesError {
    if e.api_code() != Some("quota_exceeded") {
        return e;
    }
    FilesError::Usage(format!(
        "{e}. What was sent of the first {} of the input stays stored and counted until the \
         server's gc frees it (after its grace period), unless `put -` of the same input \
         uses it first",
        vault_core::units::format_size(read)
    ))
}

/// A chunk's task ended: its bytes advance the progress, and its id joins `stored`;
/// returns its bytes if the space held the chunk already (not sent).
fn chunk_done(
    done: Result<Result<(ChunkId, u32, bool), FilesError>, tokio::task::JoinError>,
    progress: &dyn Progress,
    stored: &mut Vec<ChunkId>,
) -> Result<u64, FilesError> {
    let (id, len, held) =
        done.map_err(|e| FilesError::Usage(format!("sending a chunk failed: {e}")))??;
    progress.advance(u64::from(len));
    stored.push(id);
    Ok(if held { u64::from(len) } else { 0 })
}

/// The bytes read at once (1 MiB).
const BLOCK: usize = 1 << 20;

/// Reads `input` to its end, cutting it with `chunker` and sealing each chunk on `to_send`;
/// returns its length and BLAKE3. Stops early when the other side is gone.
fn read_input(
    chunker: &vault_core::format::chunks::ChunkKeys,
    mut input: impl Read,
    to_send: &tokio::sync::mpsc::Sender<SealedPiece>,
) -> Result<InputEnd, FilesError> {
    let mut cutter = chunker.cutter();
    let mut whole = ContentHasher::new();
    let mut block = Zeroizing::new(vec![0u8; BLOCK]);
    let mut chunk: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(MAX_CHUNK));
    let mut size = 0u64;
    let mut ends = Vec::new();
    let send = |chunk: &mut Zeroizing<Vec<u8>>| -> Result<bool, FilesError> {
        let (id, sealed) = chunker.seal(chunk)?;
        let len = chunk.len() as u32;
        chunk.clear();
        Ok(to_send
            .blocking_send((id, len, Bytes::from(sealed)))
            .is_ok())
    };
    loop {
        let n = match input.read(&mut block[..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FilesError::io("read", "standard input", e)),
        };
        let bytes = &block[..n];
        whole.update(bytes);
        size += n as u64;
        ends.clear();
        cutter.feed(bytes, |end| ends.push(end));
        let mut from = 0;
        for &end in &ends {
            chunk.extend_from_slice(&bytes[from..end]);
            if !send(&mut chunk)? {
                return Ok((size, whole.finalize()));
            }
            from = end;
        }
        chunk.extend_from_slice(&bytes[from..]);
    }
    if !chunk.is_empty() {
        send(&mut chunk)?;
    }
    Ok((size, whole.finalize()))
}

/// Seconds since the epoch: the mtime of a file stored from a pipe.
fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
