//! Carrying out one planned action, with the safety checks of README.md, Sync: a local file is
//! re-checked (size + mtime) right before it is replaced or deleted, and skipped when it
//! changed during the run; downloads land in `LOCAL/.vault-sync/tmp/` first and are
//! renamed into place only after that check; local deletions move the file into
//! `LOCAL/.vault-sync/trash/`; remote deletions go to the server's trash. Small uploads go
//! in batches of two round trips ([`upload_batch`]) under the same rules as one upload.
//! Each completed action goes to the state's journal at once; the state file is rewritten
//! at least every [`SAVE_EVERY`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vault_core::format::ContentHasher;

use super::plan::Action;
use super::scan::stamp;
use super::state::{Base, Entry, RemoteFile, Stamp, StateFile, SyncState, create_private_dir};
use super::{SyncError, conflict_name};
use crate::files::download::download_reusing;
use crate::files::progress::{Attempt, Progress};
use crate::files::small::{SmallFile, is_small, upload_batch_with_retry};
use crate::files::transfer::with_retry;
use crate::files::upload::{Uploaded, upload_if_current};
use crate::files::{Files, FilesError, RemotePath};

/// The state is written at least this often while actions complete.
pub const SAVE_EVERY: Duration = Duration::from_secs(10);

/// One path's planned action and what the plan saw.
#[derive(Clone, Debug)]
pub struct Item {
    pub path: String,
    pub action: Action,
    pub local: Option<Stamp>,
    pub remote: Option<RemoteFile>,
    /// Replacing this local file loses an edit that is not on the server (pull): keep it
    /// in the local trash first.
    pub keep_local: bool,
}

/// What one action did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `bytes` of the file, `reused` of them not sent: chunks the space held already.
    Uploaded {
        bytes: u64,
        reused: u64,
    },
    /// `bytes` of the file, `reused` of them not fetched: chunks the file it replaced held.
    Downloaded {
        bytes: u64,
        reused: u64,
    },
    DeletedLocal,
    DeletedRemote,
    /// The local file was kept as `copy` (uploaded too), the remote one downloaded.
    Conflict {
        copy: String,
        bytes: u64,
        reused: u64,
    },
    Recorded,
    Forgotten,
    /// Left for the next run, with why.
    Skipped(String),
}

/// The state, shared by the running actions, saved now and then.
#[derive(Debug)]
pub struct Store {
    file: StateFile,
    state: Mutex<(SyncState, Instant)>,
}

impl Store {
    pub fn new(file: StateFile, state: SyncState) -> Self {
        Store {
            file,
            state: Mutex::new((state, Instant::now())),
        }
    }

    /// Records the state of `path` after an action: in memory, in the journal at once,
    /// and in the state file at least every [`SAVE_EVERY`].
    fn update(
        &self,
        path: &str,
        synced: Option<Base>,
        remote: Option<RemoteFile>,
    ) -> Result<(), SyncError> {
        let entry = Entry {
            path: path.to_owned(),
            synced,
            remote,
            uploading: None,
        };
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.apply(&entry);
        self.file.append(&entry)?;
        if guard.1.elapsed() >= SAVE_EVERY {
            self.file.save(&guard.0)?;
            guard.1 = Instant::now();
        }
        Ok(())
    }

    /// Notes in the journal that an upload of `path` at `stamp` starts.
    fn intent(&self, path: &str, stamp: Stamp) -> Result<(), SyncError> {
        let entry = Entry {
            path: path.to_owned(),
            synced: None,
            remote: None,
            uploading: Some(stamp),
        };
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.apply(&entry);
        self.file.append(&entry)
    }

    /// Notes that the upload of `path` begun with [`Self::intent`] never reached the server
    /// (it was refused): the path keeps what it had, and the next run does not take a
    /// remote version that merely looks like the local file for that upload.
    fn abandon(&self, path: &str) -> Result<(), SyncError> {
        let (synced, remote) = {
            let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
            (
                guard.0.synced.get(path).copied(),
                guard.0.remote_files.get(path).cloned(),
            )
        };
        self.update(path, synced, remote)
    }

    /// Saves now.
    pub fn save(&self) -> Result<(), SyncError> {
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.file.save(&guard.0)
    }
}

/// Everything an action needs.
#[derive(Debug)]
pub struct Context {
    pub files: Arc<Files>,
    pub local_root: PathBuf,
    pub remote_root: RemotePath,
    pub store: Store,
    pub progress: Arc<dyn Progress>,
    /// `HOST YYYY-MM-DD HHMMSS` for conflict names.
    pub conflict_tag: String,
    /// `LOCAL/.vault-sync/trash/<run time>`.
    pub trash_dir: PathBuf,
}

impl Context {
    fn local(&self, rel: &str) -> PathBuf {
        self.local_root.join(rel)
    }

    fn remote(&self, rel: &str) -> RemotePath {
        let segments: Vec<String> = rel.split('/').map(str::to_owned).collect();
        self.remote_root.join_all(&segments)
    }

    fn tmp_for(&self, rel: &str) -> PathBuf {
        let mut h = ContentHasher::new();
        h.update(rel.as_bytes());
        let name = hex::encode(&h.finalize()[..16]);
        self.local_root
            .join(super::state::STATE_DIR)
            .join("tmp")
            .join(name)
    }
}

/// The BLAKE3 of a local file, hex.
pub fn hash_file(path: &Path) -> Result<String, SyncError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| SyncError::io("read", path, e))?;
    let mut h = ContentHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| SyncError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Runs one item.
pub async fn run(ctx: &Context, item: &Item) -> Result<Outcome, SyncError> {
    let rel = item.path.as_str();
    match item.action {
        Action::Nothing => Ok(Outcome::Recorded),
        Action::Record => {
            let (Some(local), Some(remote)) = (item.local, item.remote.as_ref()) else {
                return Ok(Outcome::Skipped("nothing to record".into()));
            };
            ctx.store
                .update(rel, Some(base(local, remote)), Some(remote.clone()))?;
            Ok(Outcome::Recorded)
        }
        Action::Forget => {
            ctx.store.update(rel, None, item.remote.clone())?;
            Ok(Outcome::Forgotten)
        }
        Action::Upload => upload(ctx, rel, seen_version(item)).await,
        Action::Download => download(ctx, item, rel).await,
        Action::DeleteLocal => {
            if stamp(&ctx.local(rel))? != item.local {
                return Ok(changed_during_sync());
            }
            to_local_trash(ctx, rel)?;
            ctx.store.update(rel, None, item.remote.clone())?;
            Ok(Outcome::DeletedLocal)
        }
        Action::DeleteRemote => {
            let path = ctx.remote(rel);
            let files = &ctx.files;
            let progress = Attempt::new(&*ctx.progress);
            let result = with_retry(files, &path.to_string(), &progress, || async {
                match files.remove(&path, false).await {
                    Ok(_) => Ok(()),
                    // Gone already (deleted elsewhere meanwhile): the goal is reached.
                    Err(e) if !e.is_connection() && files.stat(&path).await?.is_none() => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .await;
            result?;
            ctx.store.update(rel, None, None)?;
            Ok(Outcome::DeletedRemote)
        }
        Action::Conflict => conflict(ctx, item, rel).await,
    }
}

fn changed_during_sync() -> Outcome {
    Outcome::Skipped("changed during the sync; it goes across next time".into())
}

fn base(local: Stamp, remote: &RemoteFile) -> Base {
    Base {
        local,
        id: remote.id,
        version: remote.version,
    }
}

fn is_changed_while_uploading(e: &FilesError) -> bool {
    e.to_string()
        .contains("changed while it was being uploaded")
}

/// The remote version the plan saw for an upload (0: none): the upload commits only while
/// it is still current, so that a change made elsewhere meanwhile becomes a conflict in
/// the next run instead of being followed silently.
fn seen_version(item: &Item) -> u64 {
    item.remote.as_ref().map_or(0, |r| r.version)
}

/// Whether `e`, the failure of an upload of `remote` meant for version `seen`, is the
/// server's refusal because the file changed meanwhile (then it is still not `seen`).
async fn changed_on_server(ctx: &Context, e: &FilesError, remote: &RemotePath, seen: u64) -> bool {
    if e.api_code() != Some("conflict") {
        return false;
    }
    match ctx.files.stat(remote).await {
        Ok(entry) => {
            entry
                .and_then(|e| e.current.map(|(v, _)| v.version))
                .unwrap_or(0)
                != seen
        }
        Err(_) => false,
    }
}

fn changed_on_the_server() -> Outcome {
    Outcome::Skipped(
        "changed on the server during the sync; both versions are kept next time".into(),
    )
}

/// Uploads `rel`, to commit only while the remote file is still version `seen` (0: none).
async fn upload(ctx: &Context, rel: &str, seen: u64) -> Result<Outcome, SyncError> {
    let local = ctx.local(rel);
    let Some(before) = stamp(&local)? else {
        return Ok(Outcome::Skipped("deleted during the sync".into()));
    };
    let remote = ctx.remote(rel);
    let files = &ctx.files;
    ctx.store.intent(rel, before)?;
    let progress = Attempt::new(&*ctx.progress);
    let done = match with_retry(files, &local.display().to_string(), &progress, || {
        upload_if_current(files, &local, &remote, seen, &progress)
    })
    .await
    {
        Ok(done) => done,
        Err(e) if is_changed_while_uploading(&e) => return Ok(changed_during_sync()),
        Err(e) if changed_on_server(ctx, &e, &remote, seen).await => {
            ctx.store.abandon(rel)?;
            return Ok(changed_on_the_server());
        }
        Err(e) => return Err(e.into()),
    };
    uploaded(ctx, rel, before, &done)
}

/// Records a finished upload of `rel`, which was `before` when it started: synced only
/// if the local file is still that.
fn uploaded(
    ctx: &Context,
    rel: &str,
    before: Stamp,
    done: &Uploaded,
) -> Result<Outcome, SyncError> {
    let after = stamp(&ctx.local(rel))?;
    let file = RemoteFile {
        id: done.file_id,
        version: done.version,
        size: done.bytes,
        blake3: None,
        mtime_ns: Some(before.mtime_ns),
    };
    let synced = (after == Some(before)).then(|| base(before, &file));
    ctx.store.update(rel, synced, Some(file))?;
    Ok(Outcome::Uploaded {
        bytes: done.bytes,
        reused: done.reused,
    })
}

/// Whether an item is an upload that goes in a batch ([`upload_batch`]).
pub fn is_batched(item: &Item) -> bool {
    item.action == Action::Upload && item.local.is_some_and(|l| is_small(l.size))
}

/// The file an item of [`is_batched`] uploads, for cutting batches.
pub fn small_file(ctx: &Context, item: &Item) -> SmallFile {
    SmallFile {
        local: ctx.local(&item.path),
        remote: ctx.remote(&item.path),
        size: item.local.map_or(0, |l| l.size),
        current: None,
        if_current: Some(seen_version(item)),
    }
}

/// Runs a batch of small uploads ([`crate::files::small`]) with the safety rules of a
/// single upload: the journal notes the intent of each before anything is sent, each file
/// is read whole and checked unchanged across the read (else it is skipped as changed
/// during the sync), and each committed file is recorded as synced only if it is still
/// what was read. A file that grew too big for a batch since the plan goes alone.
pub async fn upload_batch(
    ctx: &Context,
    batch: Vec<(SmallFile, Item)>,
) -> Vec<(Item, Result<Outcome, SyncError>)> {
    let mut out = Vec::with_capacity(batch.len());
    let mut going = Vec::with_capacity(batch.len());
    let mut files = Vec::with_capacity(batch.len());
    for (mut file, item) in batch {
        let before = match stamp(&file.local) {
            Ok(Some(s)) => s,
            Ok(None) => {
                out.push((item, Ok(Outcome::Skipped("deleted during the sync".into()))));
                continue;
            }
            Err(e) => {
                out.push((item, Err(e)));
                continue;
            }
        };
        if !is_small(before.size) {
            let result = upload(ctx, &item.path, seen_version(&item)).await;
            out.push((item, result));
            continue;
        }
        if let Err(e) = ctx.store.intent(&item.path, before) {
            out.push((item, Err(e)));
            continue;
        }
        file.size = before.size;
        files.push(file);
        going.push((item, before));
    }
    if files.is_empty() {
        return out;
    }
    match upload_batch_with_retry(&ctx.files, &files, &*ctx.progress, None).await {
        Ok(results) => {
            for ((item, before), result) in going.into_iter().zip(results) {
                let outcome = match result {
                    Ok(done) => uploaded(ctx, &item.path, before, &done),
                    Err(e) if is_changed_while_uploading(&e) => Ok(changed_during_sync()),
                    Err(e)
                        if changed_on_server(
                            ctx,
                            &e,
                            &ctx.remote(&item.path),
                            seen_version(&item),
                        )
                        .await =>
                    {
                        ctx.store
                            .abandon(&item.path)
                            .map(|()| changed_on_the_server())
                    }
                    Err(e) => Err(e.into()),
                };
                out.push((item, outcome));
            }
        }
        Err(e) => {
            let text = e.to_string();
            let mut first = Some(SyncError::from(e));
            for (item, _) in going {
                let e = first
                    .take()
                    .unwrap_or_else(|| SyncError::Usage(text.clone()));
                out.push((item, Err(e)));
            }
        }
    }
    out
}

/// Downloads `rel` to a temporary file and renames it into place, taking the chunks the
/// local file it replaces already holds from that file.
async fn download(ctx: &Context, item: &Item, rel: &str) -> Result<Outcome, SyncError> {
    download_reusing_from(ctx, item, rel, &ctx.local(rel)).await
}

/// [`download`], taking chunks from `reuse` (for a conflict, the local copy just made).
async fn download_reusing_from(
    ctx: &Context,
    item: &Item,
    rel: &str,
    reuse: &Path,
) -> Result<Outcome, SyncError> {
    let target = ctx.local(rel);
    let tmp = ctx.tmp_for(rel);
    if let Some(dir) = tmp.parent() {
        create_private_dir(dir)?;
    }
    let remote = ctx.remote(rel);
    let files = &ctx.files;
    let progress = Attempt::new(&*ctx.progress);
    let done = with_retry(files, &remote.to_string(), &progress, || {
        download_reusing(files, &remote, &tmp, Some(reuse), &progress, None)
    })
    .await?;
    // The re-check: the local file must still be what the plan saw.
    if stamp(&target)? != item.local {
        let _ = std::fs::remove_file(&tmp);
        return Ok(changed_during_sync());
    }
    if item.keep_local && item.local.is_some() {
        to_local_trash(ctx, rel)?;
    }
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| SyncError::io("create", dir, e))?;
    }
    std::fs::rename(&tmp, &target).map_err(|e| SyncError::io("rename into place", &target, e))?;
    let now = stamp(&target)?;
    let downloaded = Outcome::Downloaded {
        bytes: done.bytes,
        reused: done.reused,
    };
    let file = match &item.remote {
        Some(r) if r.version == done.version => r.clone(),
        Some(r) => RemoteFile {
            version: done.version,
            blake3: None,
            mtime_ns: None,
            size: done.bytes,
            ..r.clone()
        },
        None => return Ok(downloaded),
    };
    let synced = now.map(|now| base(now, &file));
    ctx.store.update(rel, synced, Some(file))?;
    Ok(downloaded)
}

/// Both sides changed: the local file becomes `NAME (conflict HOST DATE TIME).EXT` (and
/// goes up as a new file), then the remote one is downloaded under the name.
async fn conflict(ctx: &Context, item: &Item, rel: &str) -> Result<Outcome, SyncError> {
    let (dir, name) = match rel.rsplit_once('/') {
        Some((d, n)) => (Some(d), n),
        None => (None, rel),
    };
    let mut copy_name = conflict_name(name, &ctx.conflict_tag, 1);
    let mut n = 1;
    loop {
        let rel_copy = match dir {
            Some(d) => format!("{d}/{copy_name}"),
            None => copy_name.clone(),
        };
        if stamp(&ctx.local(&rel_copy))?.is_none() && !ctx.local(&rel_copy).exists() {
            break;
        }
        n += 1;
        copy_name = conflict_name(name, &ctx.conflict_tag, n);
    }
    let rel_copy = match dir {
        Some(d) => format!("{d}/{copy_name}"),
        None => copy_name.clone(),
    };
    std::fs::rename(ctx.local(rel), ctx.local(&rel_copy))
        .map_err(|e| SyncError::io("rename", ctx.local(rel), e))?;
    // A new path: the copy goes up only while nothing else stands there.
    let up = upload(ctx, &rel_copy, 0).await?;
    let Outcome::Uploaded {
        bytes: up_bytes,
        reused: up_reused,
    } = up
    else {
        return Ok(up);
    };
    let moved = Item {
        local: None,
        ..item.clone()
    };
    // The copy is what stood at the path: the chunks the two versions share come from it.
    let down = download_reusing_from(ctx, &moved, rel, &ctx.local(&rel_copy)).await?;
    let (down_bytes, down_reused) = match down {
        Outcome::Downloaded { bytes, reused } => (bytes, reused),
        other => return Ok(other),
    };
    Ok(Outcome::Conflict {
        copy: rel_copy,
        bytes: up_bytes + down_bytes,
        reused: up_reused + down_reused,
    })
}

/// Moves a local file into this run's local trash (keeping its relative path), then
/// removes directories it leaves empty.
fn to_local_trash(ctx: &Context, rel: &str) -> Result<(), SyncError> {
    let from = ctx.local(rel);
    let to = ctx.trash_dir.join(rel);
    if let Some(dir) = to.parent() {
        create_private_dir(dir)?;
    }
    std::fs::rename(&from, &to).map_err(|e| SyncError::io("move to the trash", &from, e))?;
    let mut dir = from.parent();
    while let Some(d) = dir {
        if d == ctx.local_root || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}
