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
//! batch over. Its uploads are noted, by token before `upload_open_many` is sent and by
//! id once it is answered, in [`super::leftovers`], so that the next command aborts what
//! a killed one left.

use std::path::PathBuf;

use vault_core::format::meta::Contents;
use vault_core::format::{
    FileMeta, content_hash, generate_file_key, seal_all, seal_meta, sealed_len,
};
use vault_core::proto::{
    BATCH_MAX_PATH_BYTES, BATCH_MAX_SEALED, BatchResult, NsRef, OpenFile, OpenedUpload, PutFile,
    Request, Response, SMALL_FILE_MAX,
};
use zeroize::Zeroizing;

use super::leftovers::{OpenUploads, abort_open};
use super::progress::{Attempt, Progress, RateLimit, pace};
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
    /// Commit only while the remote file's current version is this one (0: none), as
    /// `vault sync` asks: else the file is refused with `conflict`.
    pub if_current: Option<u64>,
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
            .map(|(index, read, path)| OpenFile {
                path: path.clone(),
                sealed_size: sealed_len(read.info.size),
                if_current: batch[*index].if_current,
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
    let progress = &Attempt::new(progress);
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
            if_current: None,
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
