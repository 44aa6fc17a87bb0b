//! Small files in batches (docs/FORMAT.md §4): instead of `upload_open`,
//! `upload_data` and `upload_commit` per file, a batch of up to
//! [`BATCH_FILES`] files of one space takes two round trips in all:
//!
//! 1. every file is read whole into memory (and checked unchanged across the read);
//! 2. `upload_open_many` reserves an upload per file and answers each file's id and
//!    version: the wrapped key's associated data names both (docs/FORMAT.md §7.3), so they
//!    must be known before sealing, exactly as for one file;
//! 3. each file is sealed for its id and version under a fresh file key (STREAM contents,
//!    wrapped key, sealed metadata with the BLAKE3 of what was read);
//! 4. `upload_put_many` carries the sealed bytes, keys and metadata of the whole batch and
//!    the server commits every file that is in order in one transaction.
//!
//! A file whose remote current version already holds what was read
//! ([`super::unchanged`]) is left out before step 2 and reported unchanged.
//! Each file has its own result; a file the server refuses is aborted (best effort) and
//! does not stop the others. There are no resume records: a batch is small enough to send
//! again. When the connection breaks, [`upload_batch_with_retry`] reconnects, aborts the
//! uploads of the broken attempt (which the server may or may not have committed: a commit
//! that happened is not undone by the abort, it only gains a newer version) and starts the
//! batch over. Before `upload_open_many` is sent, a fresh random token for it goes into a
//! small record in `<state>/uploads/batches/` (0600, written whole through a rename, not
//! synced to disk: it only has to survive the process), and the request carries the
//! token; once the answer arrives, the record holds the ids of the uploads instead. The
//! next command aborts what a killed one left ([`abort_leftovers`]: `upload_abort_batch`
//! for a token, `upload_abort` for an id) before it reads the remote state, so that
//! nothing a dead client opened holds quota, and a late commit of a dead client cannot
//! land after a sync or a put took its files for missing. The server refuses an
//! `upload_open_many` whose token was aborted, so a request still on its way when the
//! next command cleans up opens nothing.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use vault_core::format::meta::Contents;
use vault_core::format::{
    FileMeta, content_hash, generate_file_key, seal_all, seal_meta, sealed_len,
};
use vault_core::proto::{
    BATCH_MAX_PATH_BYTES, BATCH_MAX_SEALED, BatchResult, NsRef, OpenFile, OpenedUpload, PutFile,
    Request, Response, SMALL_FILE_MAX,
};
use zeroize::Zeroizing;

use super::progress::{Progress, RateLimit, pace};
use super::transfer::with_retry;
use super::unchanged::CurrentVersion;
use super::upload::{LocalFile, Uploaded};
use super::{Files, FilesError, RemotePath, unexpected};
use crate::ClientError;

/// Files per batch this client sends: under the protocol's
/// [`vault_core::proto::BATCH_MAX_FILES`] so that
/// four batches in flight (`transfer::MAX_IN_FLIGHT`) stay under the server's limit of
/// 1000 unfinished uploads per user.
pub const BATCH_FILES: usize = 200;

/// Whether a file of `size` plaintext bytes goes in a batch.
pub fn is_small(size: u64) -> bool {
    sealed_len(size) <= SMALL_FILE_MAX
}

/// One file for a batch.
#[derive(Clone, Debug)]
pub struct SmallFile {
    pub local: PathBuf,
    pub remote: RemotePath,
    /// The plaintext size when the file was looked at (for cutting batches).
    pub size: u64,
    /// The remote file's current version, when known: a file it already holds is not
    /// sent.
    pub current: Option<CurrentVersion>,
}

/// The length of the encrypted form of `remote` (names encrypt to a length that depends
/// only on theirs: docs/FORMAT.md §7.5).
fn encrypted_len(remote: &RemotePath) -> usize {
    let segments: usize = remote
        .segments
        .iter()
        .map(|s| ((16 + (s.len() + 1).div_ceil(16) * 16) * 8).div_ceil(5))
        .sum();
    segments + remote.segments.len().saturating_sub(1)
}

/// Cuts `items` into batches within the limits of the protocol: one space per batch, at
/// most [`BATCH_FILES`] files, [`BATCH_MAX_SEALED`] sealed bytes and
/// [`BATCH_MAX_PATH_BYTES`] of encrypted paths each. `file` says which file an item
/// uploads, which must be [`is_small`]; the order is kept within each space.
pub fn batches<T>(items: Vec<T>, file: impl Fn(&T) -> &SmallFile) -> Vec<Vec<T>> {
    struct Open<T> {
        ns: NsRef,
        items: Vec<T>,
        sealed: u64,
        paths: usize,
    }
    let mut open: Vec<Open<T>> = Vec::new();
    let mut done = Vec::new();
    for item in items {
        let f = file(&item);
        let sealed = sealed_len(f.size);
        let path = encrypted_len(&f.remote);
        let slot = match open.iter().position(|o| o.ns == f.remote.ns) {
            Some(i) => i,
            None => {
                open.push(Open {
                    ns: f.remote.ns.clone(),
                    items: Vec::new(),
                    sealed: 0,
                    paths: 0,
                });
                open.len() - 1
            }
        };
        let o = &mut open[slot];
        if !o.items.is_empty()
            && (o.items.len() == BATCH_FILES
                || o.sealed + sealed > BATCH_MAX_SEALED
                || o.paths + path > BATCH_MAX_PATH_BYTES)
        {
            done.push(std::mem::take(&mut o.items));
            (o.sealed, o.paths) = (0, 0);
        }
        o.items.push(item);
        o.sealed += sealed;
        o.paths += path;
    }
    done.extend(open.into_iter().map(|o| o.items).filter(|b| !b.is_empty()));
    done
}

fn changed(file: &SmallFile) -> FilesError {
    FilesError::Usage(format!(
        "{} changed while it was being uploaded; run the command again when it is stable",
        file.local.display()
    ))
}

/// A file read whole, with what it looked like around the read and its BLAKE3.
struct Read {
    info: LocalFile,
    plain: Zeroizing<Vec<u8>>,
    blake3: [u8; 32],
}

/// Reads every file whole; a file that changes across the read (or is no longer small)
/// is an error of its own.
async fn read_all(batch: &[SmallFile]) -> Result<Vec<Result<Read, FilesError>>, FilesError> {
    let batch = batch.to_vec();
    tokio::task::spawn_blocking(move || {
        batch
            .iter()
            .map(|file| {
                let info = LocalFile::stat(&file.local)?;
                if !is_small(info.size) {
                    return Err(changed(file));
                }
                let plain = Zeroizing::new(
                    std::fs::read(&file.local)
                        .map_err(|e| FilesError::io("read", &file.local, e))?,
                );
                if plain.len() as u64 != info.size || LocalFile::stat(&file.local)? != info {
                    return Err(changed(file));
                }
                let blake3 = content_hash(&plain);
                Ok(Read {
                    info,
                    plain,
                    blake3,
                })
            })
            .collect()
    })
    .await
    .map_err(|e| FilesError::Usage(format!("reading files failed: {e}")))
}

fn refused(e: vault_core::proto::ApiError) -> FilesError {
    FilesError::Client(ClientError::Api(e))
}

/// Uploads one batch (files of one space, each [`is_small`], within the limits that
/// [`batches`] keeps): one result per file, in order. An error for the whole batch means nothing of it was committed, except after a
/// broken connection, when the server may have committed it (see the module docs);
/// `opened` holds the uploads that are open on the server while the batch runs, so that
/// a retry can abort them.
pub async fn upload_batch(
    files: &Files,
    batch: &[SmallFile],
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
    opened: &OpenUploads,
) -> Result<Vec<Result<Uploaded, FilesError>>, FilesError> {
    let Some(ns) = batch.first().map(|f| f.remote.ns.clone()) else {
        return Ok(Vec::new());
    };
    if batch.iter().any(|f| f.remote.ns != ns) {
        return Err(FilesError::Usage(
            "the files of a batch must all be in one space".into(),
        ));
    }
    let keys = files.keys_for(&ns).await?;
    let mut results: Vec<Option<Result<Uploaded, FilesError>>> =
        std::iter::repeat_with(|| None).take(batch.len()).collect();
    let mut ready = Vec::new();
    for (index, (file, read)) in batch.iter().zip(read_all(batch).await?).enumerate() {
        let prepared = read.and_then(|read| {
            let path = keys.encrypt_path(&file.remote.segments)?;
            Ok((read, path))
        });
        match prepared {
            Ok((read, path)) => match file.current {
                Some(current) if current.matches(read.info.size, &read.blake3) => {
                    progress.advance(read.info.size);
                    results[index] = Some(Ok(Uploaded {
                        remote: file.remote.clone(),
                        bytes: read.info.size,
                        file_id: current.file_id,
                        version: current.version,
                        resumed_at: 0,
                        reused: 0,
                        unchanged: true,
                    }));
                }
                _ => ready.push((index, read, path)),
            },
            Err(e) => results[index] = Some(Err(e)),
        }
    }
    let finish = |results: Vec<Option<Result<Uploaded, FilesError>>>| -> Vec<_> {
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(FilesError::Usage(
                        "the file was left out of its batch; run the command again".into(),
                    ))
                })
            })
            .collect()
    };
    if ready.is_empty() {
        return Ok(finish(results));
    }
    // Before the uploads are opened: they are short-lived on the server.
    pace(limit, ready.iter().map(|(_, r, _)| r.info.size).sum()).await;

    let token = opened.intend()?;
    let request = Request::UploadOpenMany {
        batch: Some(token.clone()),
        ns: ns.clone(),
        files: ready
            .iter()
            .map(|(_, read, path)| OpenFile {
                path: path.clone(),
                sealed_size: sealed_len(read.info.size),
            })
            .collect(),
    };
    let tickets = match files.call(&request).await {
        Ok(Response::UploadsOpened { results }) if results.len() == ready.len() => results,
        // The request may have opened uploads: the token stays for the abort.
        Err(e) if e.is_connection() => return Err(e),
        Ok(other) => {
            abort_open(files, opened).await;
            return Err(unexpected("upload_open_many", &other));
        }
        Err(e) => {
            opened.settle(&token, []);
            return Err(e);
        }
    };
    opened.settle(
        &token,
        tickets.iter().filter_map(|t| match t {
            BatchResult::Ok(t) => Some(t.upload_id),
            BatchResult::Error(_) => None,
        }),
    );

    // The generations the server named (a rotation since the keys were read fetches them
    // again).
    let named = tickets.iter().filter_map(|t| match t {
        BatchResult::Ok(t) => Some(t.generation),
        BatchResult::Error(_) => None,
    });
    let keys = match files.keys_with(&ns, named.collect::<Vec<_>>()).await {
        Ok(keys) => keys,
        Err(e) => {
            abort_open(files, opened).await;
            return Err(e);
        }
    };
    let mut sending: Vec<(usize, Read, OpenedUpload)> = Vec::new();
    let mut puts = Vec::new();
    for ((index, read, _), ticket) in ready.into_iter().zip(tickets) {
        let ticket = match ticket {
            BatchResult::Ok(t) => t,
            BatchResult::Error(e) => {
                results[index] = Some(Err(refused(e)));
                continue;
            }
        };
        let key = generate_file_key()?;
        let wrapped = match keys.wrap(ticket.generation, ticket.file_id, ticket.version, &key) {
            Ok(wrapped) => wrapped,
            Err(e) => {
                results[index] = Some(Err(e));
                continue;
            }
        };
        let sealed: Vec<u8> = seal_all(&key, &read.plain)?.concat();
        let meta = FileMeta {
            size: read.info.size,
            mtime_s: read.info.mtime_s,
            mtime_ns: read.info.mtime_ns,
            mode: read.info.mode,
            blake3: read.blake3,
            contents: Contents::Stream,
        };
        puts.push(PutFile {
            upload_id: ticket.upload_id,
            sealed: sealed.into(),
            wrapped_key: wrapped.into(),
            sealed_meta: seal_meta(&key, &meta)?.into(),
        });
        sending.push((index, read, ticket));
    }
    if puts.is_empty() {
        abort_open(files, opened).await;
        return Ok(finish(results));
    }
    let committed = match files.call(&Request::UploadPutMany { files: puts }).await {
        Ok(Response::UploadsCommitted { results }) if results.len() == sending.len() => results,
        Ok(other) => {
            abort_open(files, opened).await;
            return Err(unexpected("upload_put_many", &other));
        }
        Err(e) if e.is_connection() => return Err(e),
        Err(e) => {
            abort_open(files, opened).await;
            return Err(e);
        }
    };
    let mut committed_ids = Vec::new();
    for ((index, read, ticket), result) in sending.into_iter().zip(committed) {
        let result = match result {
            BatchResult::Ok(done) => {
                committed_ids.push(ticket.upload_id);
                if done.file_id == ticket.file_id && done.version == ticket.version {
                    progress.advance(read.info.size);
                    Ok(Uploaded {
                        remote: batch[index].remote.clone(),
                        bytes: read.info.size,
                        file_id: done.file_id,
                        version: done.version,
                        resumed_at: 0,
                        reused: 0,
                        unchanged: false,
                    })
                } else {
                    Err(FilesError::Integrity(format!(
                        "the server committed file {} version {} for an upload of file {} \
                         version {}",
                        done.file_id, done.version, ticket.file_id, ticket.version
                    )))
                }
            }
            BatchResult::Error(e) => Err(refused(e)),
        };
        results[index] = Some(result);
    }
    // What is still open was refused: abort it.
    opened.forget(&committed_ids);
    abort_open(files, opened).await;
    Ok(finish(results))
}

/// A record of uploads a batch holds open on the server, in `<state>/uploads/batches/`.
#[derive(Debug, Serialize, Deserialize)]
struct BatchRecord {
    server: String,
    user: String,
    /// The process that opened them.
    pid: u32,
    /// Unix seconds when the record was written.
    created: i64,
    upload_ids: Vec<i64>,
    /// Tokens of `upload_open_many` requests sent and not answered yet.
    #[serde(default)]
    batches: Vec<String>,
}

/// A record is at most this large; anything bigger is not ours.
const MAX_RECORD_LEN: u64 = 64 * 1024;

/// After this long a record's uploads have expired on the server (ten minutes for batch
/// uploads): the record is just removed.
const RECORD_STALE_S: i64 = 15 * 60;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn records_dir(files: &Files) -> PathBuf {
    files.state().path().join("uploads").join("batches")
}

/// What a batch may hold open on the server: the ids of its open uploads, and the tokens
/// of `upload_open_many` requests whose answer has not arrived.
#[derive(Debug, Default)]
struct Open {
    ids: Vec<i64>,
    tokens: Vec<String>,
}

impl Open {
    fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.tokens.is_empty()
    }
}

/// The uploads a batch holds open on the server, in memory and in a record file, so that
/// the next attempt after a broken connection, or the next command after this one was
/// killed ([`abort_leftovers`]), aborts them. Otherwise an upload sent just before the
/// client died would hold quota until it expired, and could still commit after the next
/// command read the remote state, which a sync would then take for someone else's change.
#[derive(Debug)]
pub struct OpenUploads {
    open: Mutex<Open>,
    record: Option<PathBuf>,
    server: String,
    user: String,
}

impl OpenUploads {
    pub fn new(files: &Files) -> Self {
        let name = vault_core::crypto::random_bytes::<8>()
            .ok()
            .map(|r| format!("{}-{}.json", std::process::id(), hex::encode(r)));
        OpenUploads {
            open: Mutex::new(Open::default()),
            record: name.map(|n| records_dir(files).join(n)),
            server: files.server().to_owned(),
            user: files.user().to_owned(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh token for an `upload_open_many` about to be sent, noted (on disk too)
    /// before it is.
    fn intend(&self) -> Result<String, FilesError> {
        let token =
            hex::encode(vault_core::crypto::random_bytes::<16>().map_err(ClientError::from)?);
        self.change(|open| open.tokens.push(token.clone()));
        Ok(token)
    }

    /// The answer to the request of `token` arrived: it opened `ids`.
    fn settle(&self, token: &str, ids: impl IntoIterator<Item = i64>) {
        self.change(|open| {
            open.tokens.retain(|t| t != token);
            open.ids.extend(ids);
        });
    }

    /// Forgets uploads that are no longer open (committed or aborted).
    fn forget(&self, done: &[i64]) {
        self.change(|open| open.ids.retain(|id| !done.contains(id)));
    }

    /// Forgets a token whose uploads were aborted.
    fn forget_token(&self, token: &str) {
        self.change(|open| open.tokens.retain(|t| t != token));
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Applies `edit` and writes the record (removed once nothing is open). Best effort:
    /// without the record only the next command's cleanup is lost.
    fn change(&self, edit: impl FnOnce(&mut Open)) {
        let record = {
            let mut open = self.lock();
            edit(&mut open);
            (!open.is_empty()).then(|| BatchRecord {
                server: self.server.clone(),
                user: self.user.clone(),
                pid: std::process::id(),
                created: unix_now(),
                upload_ids: open.ids.clone(),
                batches: open.tokens.clone(),
            })
        };
        let Some(path) = &self.record else {
            return;
        };
        let Some(record) = record else {
            let _ = std::fs::remove_file(path);
            return;
        };
        // Whole or not at all: a process killed while writing must not leave a record the
        // next command cannot read.
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            let text = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&text)?;
            std::fs::rename(&tmp, path)
        };
        if let Err(e) = write() {
            tracing::debug!(error = %e, "cannot write a batch record");
        }
    }
}

/// Asks the server to abort what the request of `token` opened. `Err` only for a broken
/// connection; a refusal (an older server that does not know the request) is logged.
async fn abort_token(files: &Files, token: &str) -> Result<(), FilesError> {
    let abort = Request::UploadAbortBatch {
        batch: token.to_owned(),
    };
    match files.call(&abort).await {
        Err(e) if e.is_connection() => Err(e),
        Err(e) => {
            tracing::debug!(error = %e, "the server did not abort a batch");
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}

/// Aborts what `opened` holds (best effort) and forgets it; stops at a broken connection,
/// leaving the rest for the next attempt.
async fn abort_open(files: &Files, opened: &OpenUploads) {
    loop {
        let next = opened.lock().tokens.last().cloned();
        let Some(token) = next else {
            break;
        };
        if abort_token(files, &token).await.is_err() {
            return;
        }
        opened.forget_token(&token);
    }
    loop {
        let next = opened.lock().ids.last().copied();
        let Some(upload_id) = next else {
            return;
        };
        match files.call(&Request::UploadAbort { upload_id }).await {
            Err(e) if e.is_connection() => return,
            // Done, or committed or gone already.
            _ => opened.forget(&[upload_id]),
        }
    }
}

/// Aborts the uploads that batches of an earlier command left open on the server (it was
/// killed or lost its connection for good), as their records in `<state>/uploads/batches/`
/// say; a record of a process that still runs is left alone (where `/proc` tells). A sync
/// calls this before it reads the remote state: afterwards no such upload can commit
/// behind its back.
pub async fn abort_leftovers(files: &Files) -> Result<(), FilesError> {
    let Ok(read) = std::fs::read_dir(records_dir(files)) else {
        return Ok(());
    };
    let now = unix_now();
    let procs = std::path::Path::new("/proc/self").exists();
    for item in read.flatten() {
        let path = item.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            // A record a killed process never finished (what it was to note was not sent
            // yet); a running one renames its own soon.
            let writer = path
                .file_stem()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            let dead = procs
                && writer.is_some_and(|pid| {
                    pid != std::process::id()
                        && !std::path::Path::new("/proc").join(pid.to_string()).exists()
                });
            let old = item
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 60));
            if dead || old {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        let record: Option<BatchRecord> = std::fs::metadata(&path)
            .ok()
            .filter(|m| m.is_file() && m.len() <= MAX_RECORD_LEN)
            .and_then(|_| std::fs::read(&path).ok())
            .and_then(|text| serde_json::from_slice(&text).ok());
        let Some(record) = record else {
            continue;
        };
        if record.server != files.server() || record.user != files.user() {
            continue;
        }
        let stale = now.saturating_sub(record.created) > RECORD_STALE_S;
        let other_running = record.pid != std::process::id()
            && (!procs
                || std::path::Path::new("/proc")
                    .join(record.pid.to_string())
                    .exists());
        if !stale && other_running {
            continue;
        }
        if !stale {
            for token in &record.batches {
                abort_token(files, token).await?;
            }
            for upload_id in &record.upload_ids {
                let abort = Request::UploadAbort {
                    upload_id: *upload_id,
                };
                match files.call(&abort).await {
                    Err(e) if e.is_connection() => return Err(e),
                    _ => {}
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}

/// [`upload_batch`] with reconnects: after a broken connection the uploads of the broken
/// attempt are aborted and the batch starts over (see the module docs).
pub async fn upload_batch_with_retry(
    files: &Files,
    batch: &[SmallFile],
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<Vec<Result<Uploaded, FilesError>>, FilesError> {
    let opened = OpenUploads::new(files);
    let what = match batch {
        [one] => one.local.display().to_string(),
        _ => format!("a batch of {} small files", batch.len()),
    };
    with_retry(files, &what, progress, || async {
        abort_open(files, &opened).await;
        if !opened.is_empty() {
            return Err(FilesError::Client(ClientError::Closed(
                "the connection broke again".into(),
            )));
        }
        upload_batch(files, batch, progress, limit, &opened).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use vault_core::proto::BATCH_MAX_FILES;

    use super::*;

    fn file(name: &str, size: u64) -> SmallFile {
        SmallFile {
            local: PathBuf::from(name),
            remote: RemotePath {
                ns: NsRef::Personal,
                segments: vec!["dir".into(), name.into()],
                dir_hint: false,
            },
            size,
            current: None,
        }
    }

    #[test]
    fn small_means_the_sealed_size_fits() {
        assert!(is_small(0));
        assert!(is_small(SMALL_FILE_MAX - 16));
        assert!(!is_small(SMALL_FILE_MAX - 15));
    }

    #[test]
    fn encrypted_lengths_are_exact() {
        // 1..=15 bytes pad to 16 (32 with the SIV: 52 base32 chars), 16 to 32 (48: 77).
        // "dir" + "/" + the name.
        assert_eq!(encrypted_len(&file("a", 0).remote), 52 + 1 + 52);
        assert_eq!(encrypted_len(&file(&"b".repeat(16), 0).remote), 52 + 1 + 77);
        let longest = "x".repeat(255);
        let mut deep = file(&longest, 0);
        deep.remote.segments[0] = longest.clone();
        assert_eq!(encrypted_len(&deep.remote), 436 * 2 + 1);
    }

    #[test]
    fn batches_keep_to_every_limit() {
        let count = 2 * BATCH_FILES + 10;
        let many: Vec<SmallFile> = (0..count).map(|i| file(&format!("f{i}"), 0)).collect();
        let cut = batches(many, |f| f);
        assert_eq!(
            cut.iter().map(Vec::len).collect::<Vec<_>>(),
            [BATCH_FILES, BATCH_FILES, 10]
        );
        const { assert!(BATCH_FILES <= BATCH_MAX_FILES) };

        let big = SMALL_FILE_MAX - 16;
        let heavy: Vec<SmallFile> = (0..30).map(|i| file(&format!("h{i}"), big)).collect();
        let cut = batches(heavy, |f| f);
        assert!(
            cut.iter()
                .all(|b| b.len() as u64 * SMALL_FILE_MAX <= BATCH_MAX_SEALED)
        );
        assert_eq!(cut.iter().map(Vec::len).sum::<usize>(), 30);
        assert_eq!(cut[0].len() as u64, BATCH_MAX_SEALED / SMALL_FILE_MAX);

        // Long names: the encrypted paths fill a batch first.
        let long: Vec<SmallFile> = (0..300)
            .map(|i| {
                let mut f = file(&format!("l{i}"), 0);
                f.remote.segments = vec![format!("{i:0>255}"); 10];
                f
            })
            .collect();
        let per_file = encrypted_len(&long[0].remote);
        assert_eq!(per_file, 10 * 436 + 9);
        let cut = batches(long, |f| f);
        assert_eq!(cut[0].len(), BATCH_MAX_PATH_BYTES / per_file);
        assert!(
            cut.iter()
                .all(|b| b.len() * per_file <= BATCH_MAX_PATH_BYTES)
        );

        let mut mixed: Vec<SmallFile> = (0..4).map(|i| file(&format!("p{i}"), 1)).collect();
        mixed[1].remote.ns = NsRef::Group {
            name: "team".into(),
        };
        mixed[3].remote.ns = NsRef::Group {
            name: "team".into(),
        };
        let cut = batches(mixed, |f| f);
        assert_eq!(cut.len(), 2);
        assert!(
            cut.iter()
                .all(|b| b.iter().all(|f| f.remote.ns == b[0].remote.ns))
        );
        assert_eq!(cut[1][0].local, PathBuf::from("p1"));
    }
}
