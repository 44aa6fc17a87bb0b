//! Small files in batches: `upload_open_many` → `upload_put_many`. The same checks, rows
//! and commit as `upload_open` + `upload_commit` once per file ([`super::upload`] shares
//! them), but one round trip and one write transaction each way for up to
//! [`BATCH_MAX_FILES`] files, one revision for the whole commit, and one filesystem sync
//! for all the blobs ([`crate::blobs::BlobStore::put_many`]).
//!
//! A batch over a limit of [`vault_proto::proto::files`] is refused as a whole
//! (`too_large`), and so is one over the quota (`quota_exceeded`) or over the limit of
//! unfinished uploads (`conflict`): nothing of it is reserved or committed. Otherwise every
//! file gets its own answer, in request order: a refused file (a bad path or length, a
//! folder at its path, a file among its parents, an upload that is gone or whose file was
//! deleted) does not stop the others: every refusal is found before that file's first
//! write (a missing parent folder is created in a savepoint), so a refused file leaves
//! nothing behind; a database error fails the whole batch. The revision is bumped once.
//! In a group's space, `upload_put_many` of an uploader who is no longer a member is
//! refused whole (`forbidden`), and a file opened under an older key generation than the
//! one in force is refused alone (`conflict`).
//! Both transactions read what many files share (parents, rows) once per batch.
//!
//! Batch uploads expire after [`BATCH_EXPIRY_S`]: a client that is killed between the
//! two requests leaves them behind, and expired uploads hold neither quota nor a place
//! under the open-upload limit. Sooner than that, the client's next command aborts them
//! with `upload_abort_batch` ([`abort_batch`]): `upload_open_many` names its uploads with a
//! token the client recorded before sending it, so even a batch whose answer never arrived
//! can be found. The abort leaves the token given up for [`BATCH_EXPIRY_S`], and an
//! `upload_open_many` with it that is still on its way is refused: both take the token's
//! lock ([`batches::lock`]) before they look. A large file's `upload_open` may carry a
//! token the same way (a batch of one, with the usual expiry), which `abort_batch` aborts
//! alike.
//!
//! `upload_put_many` makes every blob durable before its transaction, and hashes each
//! (BLAKE3, recorded with its version) from the bytes it holds in memory. After a crash in
//! between, the uploads are still open with their blobs sealed, exactly as after a crash
//! inside `upload_commit`: `upload_status` reports them complete and `upload_commit`
//! would finish them; otherwise `gc` drops the rows when they expire and then the blobs
//! as orphans after the grace period. Nothing is visible before the commit.

use std::collections::{HashMap, HashSet};

use vault_proto::proto::{
    ApiError, BATCH_MAX_FILES, BATCH_MAX_PATH_BYTES, BATCH_MAX_SEALED, BATCH_TOKEN_LEN,
    BatchResult, CommittedFile, ErrorCode, NsRef, OpenFile, PutFile, Response, SMALL_FILE_MAX,
    is_batch_token,
};
use vault_proto::units::format_size;

use super::Stamp;
use super::upload::{self, KnownPaths, Lease, blocking, gone, store_error};
use crate::blobs::{BlobHash, BlobId, hash};
use crate::db::files::batches;
use crate::db::files::entries::{self, Entry};
use crate::db::files::namespaces::{self, Namespace};
use crate::db::files::uploads::{self, Upload};
use crate::db::{self, DbConn, now};
use crate::error::Failure;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

/// Seconds an upload opened by `upload_open_many` lives (or less, as configured for all
/// uploads): it is sent within seconds, and the leftovers of an interrupted client should
/// stop holding quota and the open-upload limit soon (expired uploads count for neither).
pub const BATCH_EXPIRY_S: i64 = 600;

/// Given-up batch tokens a user may hold at once: a client gives up at most a few per
/// command it finds killed, so this bounds only what a client sending
/// `upload_abort_batch` in a loop leaves in the database.
pub const MAX_ABANDONED_BATCHES: i64 = 1024;

fn too_large(message: String) -> ApiError {
    ApiError::new(ErrorCode::TooLarge, message)
}

/// Refuses a batch of `count` files of `sealed` bytes in all, the largest `largest`.
fn check_batch(count: usize, sealed: u64, largest: u64) -> Result<(), ApiError> {
    if count == 0 {
        return Err(ApiError::bad_request(
            "an empty batch: send at least one file",
        ));
    }
    if count > BATCH_MAX_FILES {
        return Err(too_large(format!(
            "a batch has at most {BATCH_MAX_FILES} files; this one has {count}: split it"
        )));
    }
    if largest > SMALL_FILE_MAX {
        return Err(too_large(format!(
            "a file in a batch has at most {} sealed; one here has {largest} bytes: upload it \
             alone (upload_open, upload_data, upload_commit)",
            format_size(SMALL_FILE_MAX)
        )));
    }
    if sealed > BATCH_MAX_SEALED {
        return Err(too_large(format!(
            "a batch has at most {} of sealed files; this one has {sealed} bytes: split it",
            format_size(BATCH_MAX_SEALED)
        )));
    }
    Ok(())
}

/// Refuses a batch token of the wrong shape.
pub(super) fn check_token(token: &str) -> Result<(), ApiError> {
    if is_batch_token(token) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "a batch token is {BATCH_TOKEN_LEN} lowercase hex digits (16 random bytes)"
        )))
    }
}

/// In the transaction that opens uploads under `token`: waits for an abort of the same
/// token to finish, and refuses a token a later command gave up (the request of a killed
/// client that arrived after the cleanup).
pub(super) fn claim_token(c: &mut DbConn, user: i64, token: &str) -> Result<(), Failure> {
    batches::lock(c, user, token)?;
    if batches::is_abandoned(c, user, token)? {
        return Err(ApiError::not_found(
            "this batch was aborted by a later command; open it again under a new token",
        )
        .into());
    }
    Ok(())
}

/// Serves `upload_open_many`: `upload_open` for every file, in one transaction; the
/// uploads carry the client's `batch` token, if any.
pub async fn open_many(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    files: Vec<OpenFile>,
    batch: Option<String>,
) -> Result<Response, ApiError> {
    if let Some(token) = &batch {
        check_token(token)?;
    }
    let sealed = files
        .iter()
        .fold(0u64, |sum, f| sum.saturating_add(f.sealed_size));
    let largest = files.iter().map(|f| f.sealed_size).max().unwrap_or(0);
    check_batch(files.len(), sealed, largest)?;
    let path_bytes: usize = files.iter().map(|f| f.path.len()).sum();
    if path_bytes > BATCH_MAX_PATH_BYTES {
        return Err(too_large(format!(
            "the paths of a batch have at most {BATCH_MAX_PATH_BYTES} bytes in all; these have \
             {path_bytes}: split it"
        )));
    }
    let checks: Vec<Result<(), ApiError>> = files
        .iter()
        .map(|f| upload::check_open(&f.path, f.sealed_size))
        .collect();
    let ns = super::namespace(state, session, ns).await?;
    state.space.check_room(sealed)?;
    let user = session.user_id;
    let expiry = upload::expiry_s(state).min(BATCH_EXPIRY_S);
    let results = super::write(state, ns.id, move |c, ns| {
        if let Some(token) = &batch {
            claim_token(c, user, token)?;
        }
        let lease = Lease {
            expiry_s: expiry,
            batch: batch.as_deref(),
        };
        let valid = || files.iter().zip(&checks).filter(|(_, check)| check.is_ok());
        upload::check_open_uploads(c, user, valid().count())?;
        let generation = crate::groups::files::upload_generation(c, ns)?;
        let adding: u64 = valid().map(|(f, _)| f.sealed_size).sum();
        let pending = uploads::reserved_bytes(c, ns.id, now())?;
        super::check_quota(c, ns, adding, pending)?;
        // Refusals come before any write (`reserve`), so no savepoint is needed; a
        // database error fails the whole batch.
        let mut known = KnownPaths::default();
        known.read_ahead(c, ns.id, valid().map(|(f, _)| f.path.as_str()))?;
        let mut results = Vec::with_capacity(files.len());
        for (file, check) in files.iter().zip(&checks) {
            let result = match check {
                Err(e) => Err(e.clone()),
                Ok(()) => {
                    let file = (file.path.as_str(), file.sealed_size, file.if_current);
                    match upload::reserve(c, ns, user, file, generation, &lease, &mut known) {
                        Ok(opened) => Ok(opened),
                        Err(Failure::Api(e)) => Err(e),
                        Err(failure) => return Err(failure),
                    }
                }
            };
            results.push(BatchResult::from(result));
        }
        Ok(results)
    })
    .await?;
    Ok(Response::UploadsOpened { results })
}

/// Serves `upload_abort_batch`: gives up `batch` (a late `upload_open_many` with it is
/// refused) and drops the caller's unfinished uploads it opened, with their files' rows if
/// nothing else holds them, in one transaction. A token that opened nothing is fine: the
/// client cannot tell whether its request arrived.
pub async fn abort_batch(
    state: &ServerState,
    session: &SessionCtx,
    batch: String,
) -> Result<Response, ApiError> {
    check_token(&batch)?;
    let user = session.user_id;
    let partials = state
        .db
        .run(move |c| {
            db::transaction(c, |c| {
                batches::lock(c, user, &batch)?;
                let today = now();
                batches::abandon(c, user, &batch, today.saturating_add(BATCH_EXPIRY_S))?;
                // Counted after the write, which takes SQLite's write lock.
                if batches::count_abandoned(c, user, today)? > MAX_ABANDONED_BATCHES {
                    return Err(ApiError::conflict(format!(
                        "more than {MAX_ABANDONED_BATCHES} batches were aborted in the last \
                         {} minutes; wait for them to expire",
                        BATCH_EXPIRY_S / 60
                    ))
                    .into());
                }
                let open = batches::uploads_of(c, user, &batch)?;
                let ids: Vec<i64> = open.iter().map(|(id, _)| *id).collect();
                let purged = crate::maintenance::purge::drop_uploads(c, &ids)?;
                let entries: HashSet<i64> = open.iter().map(|(_, entry)| *entry).collect();
                for entry in entries {
                    crate::maintenance::purge::delete_if_abandoned(c, entry)?;
                }
                Ok::<_, Failure>(purged.partials)
            })
        })
        .await?;
    let partials = partials.iter().map(|id| id.as_str().to_owned()).collect();
    super::tree::remove_partials(state, partials).await;
    Ok(Response::Ok)
}

/// Each committed or refused file of a batch by its index in the request.
type Outcomes = Vec<(usize, Result<CommittedFile, ApiError>)>;

/// One file of `upload_put_many` that passed the checks before the transaction.
struct Accepted {
    index: usize,
    upload_id: i64,
    wrapped_key: Vec<u8>,
    sealed_meta: Vec<u8>,
    /// BLAKE3 of the sealed bytes, filled in when they are stored.
    blob_hash: BlobHash,
}

/// Serves `upload_put_many`: stores the blobs of every upload that is in order, durably,
/// then makes them all current in one transaction.
pub async fn put_many(
    state: &ServerState,
    session: &SessionCtx,
    files: Vec<PutFile>,
) -> Result<Response, ApiError> {
    let sealed: u64 = files.iter().map(|f| f.sealed.len() as u64).sum();
    let largest = files
        .iter()
        .map(|f| f.sealed.len() as u64)
        .max()
        .unwrap_or(0);
    check_batch(files.len(), sealed, largest)?;

    let user = session.user_id;
    let ids: Vec<i64> = files.iter().map(|f| f.upload_id).collect();
    let found = super::read(state, move |c| Ok(uploads::get_many(c, &ids)?)).await?;
    let uploads: HashMap<i64, Upload> = found
        .into_iter()
        .filter(|u| u.user_id == user)
        .map(|u| (u.id, u))
        .collect();

    let mut results: Vec<Option<Result<CommittedFile, ApiError>>> = vec![None; files.len()];
    let mut seen = HashSet::new();
    let mut ns_id = None;
    let mut accepted = Vec::new();
    let mut blobs: Vec<(BlobId, Vec<u8>)> = Vec::new();
    let today = now();
    for (index, file) in files.into_iter().enumerate() {
        let checked = (|| {
            upload::check_commit(&file.wrapped_key, &file.sealed_meta)?;
            if !seen.insert(file.upload_id) {
                return Err(ApiError::bad_request(
                    "this upload is in the batch twice; send each file once",
                ));
            }
            let upload = uploads.get(&file.upload_id).ok_or_else(gone)?;
            if upload.expires_at < today {
                return Err(ApiError::not_found("the upload expired; start again"));
            }
            if upload.sealed_size != file.sealed.len() as i64 {
                return Err(ApiError::bad_request(format!(
                    "the upload was opened for {} sealed bytes, not {}",
                    upload.sealed_size,
                    file.sealed.len()
                )));
            }
            if *ns_id.get_or_insert(upload.namespace_id) != upload.namespace_id {
                return Err(ApiError::bad_request(
                    "the files of a batch must all be in one space; send this one in another",
                ));
            }
            upload::blob_id(upload)
        })();
        match checked {
            Ok(blob) => {
                blobs.push((blob, file.sealed.into_vec()));
                accepted.push(Accepted {
                    index,
                    upload_id: file.upload_id,
                    wrapped_key: file.wrapped_key.into_vec(),
                    sealed_meta: file.sealed_meta.into_vec(),
                    blob_hash: [0; 32],
                });
            }
            Err(e) => results[index] = Some(Err(e)),
        }
    }

    if let Some(ns_id) = ns_id.filter(|_| !accepted.is_empty()) {
        let hashes = blocking(state, move |b| {
            let batch: Vec<(BlobId, &[u8])> = blobs
                .iter()
                .map(|(id, bytes)| (id.clone(), bytes.as_slice()))
                .collect();
            b.put_many(&batch)?;
            Ok(blobs
                .iter()
                .map(|(_, bytes)| hash::of_bytes(bytes))
                .collect::<Vec<BlobHash>>())
        })
        .await;
        let hashes = match hashes {
            Ok(hashes) => hashes,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ApiError::conflict(
                    "an upload of this batch was already sent with other bytes; open new uploads",
                ));
            }
            Err(e) => {
                if crate::space::is_full_io(&e) {
                    let ids: Vec<i64> = accepted.iter().map(|f| f.upload_id).collect();
                    upload::release_stopped(state, session, &ids).await;
                }
                return Err(store_error("writing a batch of small files failed", &e));
            }
        };
        for (file, blob_hash) in accepted.iter_mut().zip(hashes) {
            file.blob_hash = blob_hash;
        }

        let retention = upload::retention(state);
        let committed = super::write(state, ns_id, move |c, ns| {
            commit(c, ns, user, accepted, retention)
        })
        .await?;
        for (index, result) in committed {
            results[index] = Some(result);
        }
    }
    let results = results
        .into_iter()
        .map(|r| BatchResult::from(r.unwrap_or_else(|| Err(ApiError::internal()))))
        .collect();
    Ok(Response::UploadsCommitted { results })
}

/// The transaction of `upload_put_many`: every accepted upload whose row and file are
/// still there becomes current, under one revision. The rows are read in two queries,
/// each missing parent folder is created once (in a savepoint, so that a file in the way
/// refuses only the files below it), and the bytes are counted and the uploads dropped
/// once for the batch.
fn commit(
    c: &mut db::DbConn,
    ns: &Namespace,
    user: i64,
    accepted: Vec<Accepted>,
    retention: usize,
) -> Result<Outcomes, Failure> {
    // In a group's space: refused as a whole once the uploader is no longer a member.
    let rule = crate::groups::files::commit_rule(c, ns, user)?;
    let ids: Vec<i64> = accepted.iter().map(|a| a.upload_id).collect();
    let uploads: HashMap<i64, Upload> = uploads::get_many(c, &ids)?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let entry_ids: Vec<i64> = uploads.values().map(|u| u.entry_id).collect();
    let entries: HashMap<i64, Entry> = entries::by_ids(c, &entry_ids)?
        .into_iter()
        .map(|e| (e.id, e))
        .collect();
    let mut out = Vec::with_capacity(accepted.len());
    let mut ready = Vec::with_capacity(accepted.len());
    for file in accepted {
        let found = uploads
            .get(&file.upload_id)
            .and_then(|u| entries.get(&u.entry_id).map(|e| (u, e)));
        match found {
            None => out.push((file.index, Err(gone()))),
            Some((upload, entry)) => {
                let checked = upload::check_live(entry)
                    .and_then(|()| upload::check_if_current(Some(entry), upload.if_current))
                    .and_then(|()| rule.check(upload));
                match checked {
                    Ok(()) => ready.push((file, upload, entry)),
                    Err(e) => out.push((file.index, Err(e))),
                }
            }
        }
    }
    if ready.is_empty() {
        return Ok(out);
    }
    let adding: u64 = ready
        .iter()
        .map(|(_, upload, _)| upload.sealed_size.max(0) as u64)
        .sum();
    super::check_quota(c, ns, adding, 0)?;
    let mut stamp = Stamp::new(ns.id);
    // Before the savepoints: a folder rolled back must not take the bump with it.
    let revision = stamp.revision(c)?;
    let mut known = KnownPaths::default();
    let mut added = 0;
    let mut committed = Vec::with_capacity(ready.len());
    // Each file's version, in request order: a file uploaded twice ends at the later one.
    let mut current: HashMap<i64, (i64, &Entry)> = HashMap::new();
    for (file, upload, entry) in ready {
        if !known.has_parent_of(&entry.path) {
            let parents = db::transaction(c, |c| {
                upload::ensure_parent(c, ns.id, &entry.path, &mut stamp, &mut known)
            });
            match parents {
                Ok(()) => {}
                Err(Failure::Api(e)) => {
                    out.push((file.index, Err(e)));
                    continue;
                }
                Err(failure) => return Err(failure),
            }
        }
        let keys = (file.wrapped_key.as_slice(), file.sealed_meta.as_slice());
        upload::insert_version(c, upload, keys, &file.blob_hash, stamp.now)?;
        added += upload.sealed_size;
        committed.push(upload.id);
        current.insert(entry.id, (upload.version, entry));
        out.push((
            file.index,
            Ok(CommittedFile {
                file_id: entry.id,
                version: upload.version.max(0) as u64,
                revision: revision.max(0) as u64,
            }),
        ));
    }
    if committed.is_empty() {
        return Ok(out);
    }
    let pairs: Vec<(i64, i64)> = current.iter().map(|(id, (v, _))| (*id, *v)).collect();
    entries::set_current_many(c, &pairs, revision, stamp.now)?;
    for (version, entry) in current.values() {
        added -= upload::prune(c, entry, *version, retention, stamp.now)?;
    }
    namespaces::add_used(c, ns.id, added)?;
    uploads::delete_many(c, &committed)?;
    Ok(out)
}
