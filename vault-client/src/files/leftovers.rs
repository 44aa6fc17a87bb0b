//! Uploads a command holds open on the server, noted on disk so that the next command
//! aborts what a killed one left: otherwise such an upload holds quota until it expires,
//! and a late commit of a dead client could land after a sync or a put took its files for
//! missing.
//!
//! Before a request that opens uploads is sent (`upload_open_many` for a batch of small
//! files, `upload_open` for a large one), a fresh random token for it goes into a small
//! record in `<state>/uploads/batches/` (0600, written whole through a rename, not synced
//! to disk: it only has to survive the process), and the request carries the token. Once
//! the answer arrives, the record holds the ids of the uploads instead (a batch), or
//! forgets the token once the upload's own resume record holds its id (a large file,
//! [`super::resume`]). The next command aborts what a killed one left
//! ([`abort_leftovers`]: `upload_abort_batch` for a token, `upload_abort` for an id)
//! before it reads the remote state. The server refuses a request whose token was
//! aborted, so one still on its way when the next command cleans up opens nothing.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use vault_core::proto::Request;

use super::{Files, FilesError};
use crate::ClientError;

/// A record of uploads a command holds open on the server, in `<state>/uploads/batches/`.
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

/// After this long the uploads a record names by id (a batch's) have expired on the
/// server (they live ten minutes): only its tokens are still aborted.
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
    pub fn intend(&self) -> Result<String, FilesError> {
        let token =
            hex::encode(vault_core::crypto::random_bytes::<16>().map_err(ClientError::from)?);
        self.change(|open| open.tokens.push(token.clone()));
        Ok(token)
    }

    /// The answer to the request of `token` arrived: it opened `ids`.
    pub fn settle(&self, token: &str, ids: impl IntoIterator<Item = i64>) {
        self.change(|open| {
            open.tokens.retain(|t| t != token);
            open.ids.extend(ids);
        });
    }

    /// Forgets uploads that are no longer open (committed or aborted).
    pub fn forget(&self, done: &[i64]) {
        self.change(|open| open.ids.retain(|id| !done.contains(id)));
    }

    /// Forgets a token whose uploads were aborted.
    pub fn forget_token(&self, token: &str) {
        self.change(|open| open.tokens.retain(|t| t != token));
    }

    pub fn is_empty(&self) -> bool {
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

/// The token of one large file's `upload_open`, noted before the request is sent (see the
/// module docs). It stays noted, for the next command to abort, until [`Self::done`]:
/// call that once the upload's resume record holds its id, or once the upload is refused
/// or aborted. Dropped without it (a broken connection), the token stays noted.
#[derive(Debug)]
pub struct NotedOpen {
    uploads: OpenUploads,
    token: String,
}

impl NotedOpen {
    pub fn new(files: &Files) -> Result<Self, FilesError> {
        let uploads = OpenUploads::new(files);
        let token = uploads.intend()?;
        Ok(NotedOpen { uploads, token })
    }

    /// The token for the request's `batch`.
    pub fn token(&self) -> String {
        self.token.clone()
    }

    /// Forgets the token: what it opened is recorded elsewhere, or nothing is open.
    pub fn done(self) {
        self.uploads.forget_token(&self.token);
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
pub async fn abort_open(files: &Files, opened: &OpenUploads) {
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

/// Aborts the uploads that an earlier command left open on the server (it was
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
        // A token is aborted however old its record: a large file's upload lives as long
        // as the server's `upload_expiry_s`.
        for token in &record.batches {
            abort_token(files, token).await?;
        }
        if !stale {
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
