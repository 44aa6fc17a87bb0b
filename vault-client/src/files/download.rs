//! One file's download (docs/FORMAT.md §7.2): the sealed chunks are opened one by one with
//! STREAM into a part file with a sidecar that pins the file id and version, both in a
//! `.vault-part/` folder beside the target under a short fixed-length name ([`PartPaths`]:
//! a 255-byte name leaves no room for a suffix). At the end the BLAKE3 of the plaintext is
//! checked against the metadata, the part file is synced, its mtime and mode are set from
//! the metadata, and it is renamed into place; the sidecar goes, and the folder too once
//! nothing else is in it. A later attempt continues from the whole chunks already in the
//! part file (the prefix is read again only to hash it). Chunks are opened, hashed and
//! written on a blocking thread a few chunks behind the network, and the part file is
//! written behind ([`WriteBehind`]), so the final sync is short. Nothing that failed to
//! open or to match is ever renamed into place. [`get_file`] first skips a target that
//! already holds the remote file's current version ([`super::unchanged`]). A version of
//! format 2 (its metadata says so) is its sealed chunk list: [`super::delta::get`] takes
//! over once the version is opened, in the same part folder.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use vault_core::format::meta::Contents;
use vault_core::format::stream::{SEALED_CHUNK_LEN, TAG_LEN};
use vault_core::format::{CHUNK_LEN, ContentHasher, FileMeta, StreamOpener, chunk_count};
use vault_core::proto::{Request, Response};
use vault_fsio::WriteBehind;
use zeroize::Zeroizing;

use super::delta;
use super::progress::{Progress, RateLimit, pace};
use super::unchanged::{CurrentVersion, file_matches};
use super::{Files, FilesError, RemotePath, unexpected};
use crate::transport::{Connection, RawDownload};

/// What a part file belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sidecar {
    /// The encrypted remote path (a chat attachment: `chat message ID`).
    pub(crate) remote: String,
    pub(crate) file_id: i64,
    pub(crate) version: u64,
    /// Plaintext size of the version.
    pub(crate) size: u64,
    /// The version is in format 2: the part file is not a prefix of whole STREAM chunks
    /// but chunks of its list, found again by scanning it.
    #[serde(default)]
    pub(crate) chunked: bool,
}

/// What a download did.
#[derive(Clone, Debug)]
pub struct Downloaded {
    pub local: PathBuf,
    pub bytes: u64,
    pub version: u64,
    /// Plaintext bytes that were already in the part file from an earlier attempt.
    pub resumed_at: u64,
    /// Plaintext bytes taken from chunks already on this machine (format 2: the file the
    /// download replaces, or an interrupted attempt), so they were not fetched.
    pub reused: u64,
    /// The target already held these contents: nothing was written.
    pub unchanged: bool,
}

/// The folder beside a target that holds its unfinished download.
pub const PART_DIR: &str = ".vault-part";

/// Where the unfinished download of a target lives: `DIR/.vault-part/ID` and
/// `DIR/.vault-part/ID.json`, ID the first 16 bytes of the BLAKE3 of the target's name in
/// hex. Short and fixed-length whatever the name, and the same on every run, so a later
/// run finds what an earlier one left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartPaths {
    /// The target's directory.
    pub dir: PathBuf,
    /// `dir/.vault-part`.
    pub folder: PathBuf,
    pub part: PathBuf,
    pub side: PathBuf,
}

impl PartPaths {
    /// The paths for `target`.
    pub fn of(target: &Path) -> Result<Self, FilesError> {
        let name = target.file_name().ok_or_else(|| {
            FilesError::Usage(format!("{} does not name a file", target.display()))
        })?;
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let hash = vault_core::format::content_hash(name.as_encoded_bytes());
        let id = hex::encode(&hash[..16]);
        let folder = dir.join(PART_DIR);
        Ok(PartPaths {
            part: folder.join(&id),
            side: folder.join(format!("{id}.json")),
            folder,
            dir,
        })
    }

    /// Makes the folder (0700) in the target's directory, which must exist.
    pub fn prepare(&self) -> Result<(), FilesError> {
        match std::fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(FilesError::Usage(format!(
                    "{} is not a directory",
                    self.dir.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FilesError::Usage(format!(
                    "{}: no such directory; create it first",
                    self.dir.display()
                )));
            }
            Err(e) => return Err(FilesError::io("read", &self.dir, e)),
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&self.folder) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && self.folder.is_dir() => {
                Ok(())
            }
            Err(e) => Err(FilesError::io("create", &self.folder, e)),
        }
    }

    /// Removes the part file and the sidecar, then the folder if nothing else is in it.
    pub fn discard(&self) {
        let _ = std::fs::remove_file(&self.part);
        self.tidy();
    }

    /// Removes the sidecar, then the folder if nothing else is in it (another download's
    /// files keep it).
    pub fn tidy(&self) {
        let _ = std::fs::remove_file(&self.side);
        let _ = std::fs::remove_dir(&self.folder);
    }
}

pub(crate) fn read_sidecar(path: &Path) -> Option<Sidecar> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > 16 * 1024 {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write_sidecar(path: &Path, sidecar: &Sidecar) -> Result<(), FilesError> {
    let text = serde_json::to_vec(sidecar)
        .map_err(|e| FilesError::Usage(format!("cannot encode {}: {e}", path.display())))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| FilesError::io("write", path, e))?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(|e| FilesError::io("write", path, e))
}

/// Writes the sidecar, making the folder again if a download of another file in the same
/// directory removed it in the meantime (it does when it leaves it empty).
pub(crate) fn write_sidecar_in(paths: &PartPaths, sidecar: &Sidecar) -> Result<(), FilesError> {
    let mut attempts = 0;
    loop {
        paths.prepare()?;
        match write_sidecar(&paths.side, sidecar) {
            Err(FilesError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && attempts < 3 =>
            {
                attempts += 1;
            }
            other => return other,
        }
    }
}

/// [`download_file`], unless the file at `target` already holds what `current` (the
/// remote file's current version, when known) holds: then nothing is fetched or written,
/// what an earlier attempt left for `target` is removed, and the file is reported
/// unchanged.
pub async fn get_file(
    files: &Files,
    remote: &RemotePath,
    target: &Path,
    current: Option<&CurrentVersion>,
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<Downloaded, FilesError> {
    let Some(current) = current else {
        return download_file(files, remote, target, progress, limit).await;
    };
    if !file_matches(target, current).await? {
        return download_file(files, remote, target, progress, limit).await;
    }
    PartPaths::of(target)?.discard();
    progress.advance(current.size);
    Ok(Downloaded {
        local: target.to_path_buf(),
        bytes: current.size,
        version: current.version,
        resumed_at: 0,
        reused: 0,
        unchanged: true,
    })
}

/// Downloads the current version of `remote` (or the version a part file pins) to
/// `target`.
pub async fn download_file(
    files: &Files,
    remote: &RemotePath,
    target: &Path,
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<Downloaded, FilesError> {
    download_reusing(files, remote, target, None, progress, limit).await
}

/// [`download_file`], taking the chunks of a version of format 2 that `reuse` (a local
/// file the download replaces, such as the one sync is about to overwrite from its
/// temporary file) already holds from it instead of fetching them. `target` itself is
/// always such a source.
pub async fn download_reusing(
    files: &Files,
    remote: &RemotePath,
    target: &Path,
    reuse: Option<&Path>,
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<Downloaded, FilesError> {
    let paths = PartPaths::of(target)?;
    paths.prepare()?;
    let ends = (target, reuse);
    let result = download_into(files, remote, ends, &paths, progress, limit).await;
    if result.is_err() {
        // Gone unless it holds something to resume from.
        let _ = std::fs::remove_dir(&paths.folder);
    }
    result
}

/// [`download_reusing`] with the part folder made.
async fn download_into(
    files: &Files,
    remote: &RemotePath,
    (target, reuse): (&Path, Option<&Path>),
    paths: &PartPaths,
    progress: &dyn Progress,
    limit: Option<&RateLimit>,
) -> Result<Downloaded, FilesError> {
    let (part, side) = (&paths.part, &paths.side);
    let keys = files.keys_for(&remote.ns).await?;
    let encrypted = keys.encrypt_path(&remote.segments)?;

    // What an earlier attempt left, if it is for this file.
    let pinned = read_sidecar(side).filter(|s| s.remote == encrypted && part.exists());
    let mut start = 0u64;
    if let Some(s) = &pinned {
        let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        start = (have / CHUNK_LEN as u64).min(chunk_count(s.size) - 1);
        if s.chunked {
            // The chunk list is fetched whole; the part file is scanned for what it holds.
            start = 0;
        }
    }
    let request = |version: Option<u64>, from_chunk: u64| Request::Download {
        ns: remote.ns.clone(),
        path: encrypted.clone(),
        version,
        from_chunk,
    };
    let conn = files.conn();
    let answer = match &pinned {
        Some(s) => match conn
            .call_with_download(&request(Some(s.version), start))
            .await
        {
            // Another file stands at this path now with that version number (the one the
            // part is of was deleted and the path used again): the part is of no use.
            Ok((Response::Download { file_id, .. }, _)) if file_id != s.file_id => None,
            Ok(a) => Some(a),
            Err(e) if e.api_code() == Some("not_found") => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let (pinned, start, (response, mut stream)) = match answer {
        Some(a) => (pinned, start, a),
        None => {
            // Nothing to resume, or the pinned version is gone: start over.
            let _ = std::fs::remove_file(part);
            let _ = std::fs::remove_file(side);
            let answer = conn.call_with_download(&request(None, 0)).await;
            (None, 0, answer.map_err(|e| no_such_file(remote, e))?)
        }
    };
    let (file_id, version, offset) = download_started(response)?;
    if let Some(s) = &pinned
        && (s.file_id != file_id || s.version != version.version)
    {
        return Err(FilesError::Integrity(format!(
            "{remote}: asked for version {} of file {}, got version {} of file {file_id}",
            s.version, s.file_id, version.version
        )));
    }
    let keys = files.keys_with(&remote.ns, [version.generation]).await?;
    let (key, meta) = keys.open_version(file_id, &version)?;
    if Some(offset) != start.checked_mul(SEALED_CHUNK_LEN as u64) {
        return Err(FilesError::Integrity(format!(
            "{remote}: asked for chunk {start}, the server started at byte {offset}"
        )));
    }
    let chunked = meta.contents == Contents::Chunks;
    let sidecar = Sidecar {
        remote: encrypted.clone(),
        file_id,
        version: version.version,
        size: meta.size,
        chunked,
    };
    if pinned.is_none() {
        write_sidecar_in(paths, &sidecar)?;
    }
    if chunked {
        let wanted = delta::get::Wanted {
            keys,
            version: &version,
            key: &key,
            meta: &meta,
        };
        return delta::get::fetch(
            files,
            remote,
            (target, reuse),
            paths,
            wanted,
            stream,
            (progress, limit),
        )
        .await;
    }

    // The part file, cut to the whole chunks kept, and the hash of that prefix.
    let keep = start * CHUNK_LEN as u64;
    let mut out = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(part)
        .map_err(|e| FilesError::io("write", part, e))?;
    out.set_len(keep)
        .map_err(|e| FilesError::io("write", part, e))?;
    let mut hasher = ContentHasher::new();
    hash_prefix(&mut out, keep, &mut hasher).map_err(|e| FilesError::io("read", part, e))?;
    progress.advance(keep);
    let out = WriteBehind::new(out, keep);

    let opened = Opened {
        opener: StreamOpener::new(&key),
        hasher,
        out,
    };
    let labels = Labels {
        what: format!("{remote}: "),
        nothing: format!("; nothing was written to {}", target.display()),
        written_to: part.clone(),
    };
    let sizes = (version.sealed_size, chunk_count(meta.size));
    let (written, cut_short) = receive_chunks(
        &conn,
        &mut stream,
        sizes,
        start,
        opened,
        labels,
        (progress, limit),
    )
    .await?;
    if let Some(e) = cut_short {
        // Keep the whole chunks written so far for the next attempt.
        if let Ok(opened) = &written {
            opened.out.get_ref().sync_all().ok();
        }
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
        paths.discard();
        return Err(FilesError::Integrity(format!(
            "{remote}: the contents do not match their BLAKE3 hash; nothing was written to {}",
            target.display()
        )));
    }
    finish(out.into_inner(), part, target, &meta)?;
    paths.tidy();
    Ok(Downloaded {
        local: target.to_path_buf(),
        bytes: meta.size,
        version: version.version,
        resumed_at: keep,
        reused: 0,
        unchanged: false,
    })
}

/// A download's refusal as the user should read it: `not_found` is "no such file".
pub(crate) fn no_such_file(remote: &RemotePath, e: crate::ClientError) -> FilesError {
    if e.api_code() == Some("not_found") {
        FilesError::Usage(format!("{remote}: no such file"))
    } else {
        e.into()
    }
}

/// The answer to a `download`: the file id, the version and the byte the stream starts at.
pub(crate) fn download_started(
    response: Response,
) -> Result<(i64, vault_core::proto::VersionInfo, u64), FilesError> {
    match response {
        Response::Download {
            file_id,
            version,
            offset,
        } => Ok((file_id, version, offset)),
        other => Err(unexpected("download", &other)),
    }
}

/// Sealed chunks queued between the network and the writing thread (each 1 MiB).
const OPEN_QUEUE: usize = 4;

/// A received sealed chunk: its index, and a buffer whose first `len` bytes hold it.
type SealedChunk = (u64, Zeroizing<Vec<u8>>, usize);

/// The writing side of a download: opens chunks in place, hashes the plaintext and writes
/// it to `out` (the part file, or standard output), on a blocking thread
/// ([`Opened::write_all`]).
pub(crate) struct Opened<W> {
    pub(crate) opener: StreamOpener,
    pub(crate) hasher: ContentHasher,
    pub(crate) out: W,
}

/// How the errors of a download name what they are about: `what` begins them (the remote
/// path), `nothing` ends those that stop it (what became of the output), and
/// `written_to` is the path a write error names.
pub(crate) struct Labels {
    pub(crate) what: String,
    pub(crate) nothing: String,
    pub(crate) written_to: PathBuf,
}

/// Receives the sealed chunks `start..chunks` of a version of format 1 (`sealed_size`
/// bytes in all) from `stream`, while a blocking thread opens, hashes and writes each
/// through `opened`, in order. Returns what the thread ended with (the writer, or why
/// it stopped: a chunk that does not open, a failed write), and the error that cut the
/// stream short, if one did: the writer then holds the whole chunks before it.
pub(crate) async fn receive_chunks<W: Write + Send + 'static>(
    conn: &Connection,
    stream: &mut RawDownload,
    (sealed_size, chunks): (u64, u64),
    start: u64,
    opened: Opened<W>,
    labels: Labels,
    (progress, limit): (&dyn Progress, Option<&RateLimit>),
) -> Result<(Result<Opened<W>, FilesError>, Option<FilesError>), FilesError> {
    let (full_tx, full_rx) = tokio::sync::mpsc::channel::<SealedChunk>(OPEN_QUEUE);
    let (spare_tx, mut spare_rx) = tokio::sync::mpsc::unbounded_channel();
    let (what, written_to) = (labels.what.clone(), labels.written_to.clone());
    let writing =
        tokio::task::spawn_blocking(move || opened.write_all(full_rx, &spare_tx, chunks, &labels));
    let mut cut_short = None;
    for index in start..chunks {
        let last = index + 1 == chunks;
        let len = if last {
            (sealed_size - index * SEALED_CHUNK_LEN as u64) as usize
        } else {
            SEALED_CHUNK_LEN
        };
        let mut buf = spare_rx
            .try_recv()
            .unwrap_or_else(|_| Zeroizing::new(vec![0u8; SEALED_CHUNK_LEN]));
        let got = match stream.read_full(&mut buf[..len]).await {
            Ok(got) => got,
            Err(e) => {
                cut_short = Some(e.into());
                break;
            }
        };
        if got < len {
            cut_short = Some(if conn.is_closed() {
                crate::ClientError::Closed("the download was cut off".into()).into()
            } else {
                FilesError::Integrity(format!(
                    "{what}the server sent only part of chunk {index}; run the command again"
                ))
            });
            break;
        }
        if full_tx.send((index, buf, len)).await.is_err() {
            break; // the writing thread failed: its error is read below
        }
        let plain_len = (len - TAG_LEN) as u64;
        pace(limit, plain_len).await;
        progress.advance(plain_len);
    }
    drop(full_tx);
    let written = writing
        .await
        .map_err(|e| FilesError::Usage(format!("writing {} failed: {e}", written_to.display())))?;
    Ok((written, cut_short))
}

impl<W: Write> Opened<W> {
    /// Takes the chunks `queue` brings until it closes, handing each emptied buffer back
    /// on `spare`. A chunk that fails to open stops it: the output keeps only the whole
    /// chunks before it, and the error says so ([`Labels`]).
    fn write_all(
        mut self,
        mut queue: tokio::sync::mpsc::Receiver<SealedChunk>,
        spare: &tokio::sync::mpsc::UnboundedSender<Zeroizing<Vec<u8>>>,
        chunks: u64,
        labels: &Labels,
    ) -> Result<Opened<W>, FilesError> {
        while let Some((index, mut buf, len)) = queue.blocking_recv() {
            let last = index + 1 == chunks;
            let n = self
                .opener
                .open_chunk_in_place(index, &mut buf[..len], last)
                .map_err(|e| {
                    FilesError::Integrity(format!("{}{e}{}", labels.what, labels.nothing))
                })?;
            self.hasher.update(&buf[..n]);
            self.out
                .write_all(&buf[..n])
                .map_err(|e| FilesError::io("write", &labels.written_to, e))?;
            let _ = spare.send(buf);
        }
        Ok(self)
    }
}

pub(crate) fn hash_prefix(
    file: &mut std::fs::File,
    len: u64,
    hasher: &mut ContentHasher,
) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut left = len;
    let mut buf = Zeroizing::new(vec![0u8; CHUNK_LEN]);
    while left > 0 {
        let n = left.min(CHUNK_LEN as u64) as usize;
        file.read_exact(&mut buf[..n])?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    file.seek(SeekFrom::Start(len)).map(|_| ())
}

/// Syncs the part file, sets mtime and mode, and renames it into place.
pub(crate) fn finish(
    out: std::fs::File,
    part: &Path,
    target: &Path,
    meta: &FileMeta,
) -> Result<(), FilesError> {
    let fail = |e| FilesError::io("write", part, e);
    let mtime = if meta.mtime_s >= 0 {
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::new(meta.mtime_s.unsigned_abs(), meta.mtime_ns))
    } else {
        SystemTime::UNIX_EPOCH
            .checked_sub(Duration::from_secs(meta.mtime_s.unsigned_abs()))
            .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(meta.mtime_ns))))
    };
    if let Some(mtime) = mtime {
        out.set_modified(mtime).map_err(fail)?;
    }
    let mode = meta.mode & 0o7777;
    if mode != 0 {
        out.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(fail)?;
    }
    out.sync_all().map_err(fail)?;
    drop(out);
    if target.is_dir() {
        return Err(FilesError::Usage(format!(
            "{} is a directory; the download is kept in {}",
            target.display(),
            part.display()
        )));
    }
    std::fs::rename(part, target).map_err(|e| FilesError::io("rename into place", target, e))?;
    if let Some(dir) = target.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_files_sit_beside_the_target_in_a_hidden_folder_under_short_names() {
        let paths = PartPaths::of(Path::new("/x/y/report.pdf")).expect("paths");
        assert_eq!(paths.dir, Path::new("/x/y"));
        assert_eq!(paths.folder, Path::new("/x/y/.vault-part"));
        assert_eq!(paths.part.parent(), Some(paths.folder.as_path()));
        let id = paths.part.file_name().and_then(|n| n.to_str()).expect("id");
        assert_eq!(id.len(), 32, "{id}");
        assert_eq!(paths.side, paths.folder.join(format!("{id}.json")));
        // The same name gives the same paths; another name others; the longest name fits.
        assert_eq!(
            PartPaths::of(Path::new("/x/y/report.pdf")).expect("again"),
            paths
        );
        let other = PartPaths::of(Path::new("/x/y/report.pdf2")).expect("other");
        assert_ne!(other.part, paths.part);
        let long = PartPaths::of(&Path::new("/x").join("n".repeat(255))).expect("long");
        assert_eq!(long.part.file_name().map(|n| n.len()), Some(32));
        let relative = PartPaths::of(Path::new("a.txt")).expect("relative");
        assert_eq!(relative.folder, Path::new("./.vault-part"));
        assert!(PartPaths::of(Path::new("/")).is_err());
    }

    #[test]
    fn the_folder_needs_the_target_directory_and_goes_when_empty() {
        let tmp = tempfile::tempdir().expect("tmp");
        let missing = PartPaths::of(&tmp.path().join("no/such/dir/f")).expect("paths");
        let e = missing.prepare().expect_err("no directory").to_string();
        assert!(e.contains("no/such/dir: no such directory"), "{e}");
        assert!(!e.contains(".vault-part"), "{e}");

        let a = PartPaths::of(&tmp.path().join("a")).expect("a");
        let b = PartPaths::of(&tmp.path().join("b")).expect("b");
        a.prepare().expect("prepare");
        b.prepare().expect("prepare again");
        std::fs::write(&a.part, b"x").expect("part a");
        std::fs::write(&b.side, b"{}").expect("side b");
        a.discard();
        assert!(a.folder.is_dir(), "b's sidecar keeps the folder");
        b.tidy();
        assert!(!a.folder.exists());
    }
}
