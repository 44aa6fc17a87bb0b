//! Resume records of unfinished uploads, in `<state>/uploads/` (0700, files 0600). A record is
//! named by the BLAKE3 of server, user, encrypted remote path and local path, and holds the
//! upload's ids, what the local file looked like (size and mtime to the nanosecond) and the
//! version's file key — wrapped under the space's wrapping key (the account's, or the group's of
//! the recorded key generation) with the associated data of the file id and version reserved for
//! this upload (docs/FORMAT.md §7.3), i.e. exactly the wrapped key sent at commit. A record is only
//! used for the same unchanged file; anything else starts a fresh upload with a fresh key, so
//! different plaintext is never sealed under the same key and nonce.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::FilesError;
use crate::state::StateDir;

/// A record is at most this large; anything bigger is not ours.
const MAX_RECORD_LEN: u64 = 16 * 1024;

/// What is needed to continue an upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRecord {
    pub upload_id: i64,
    pub file_id: i64,
    pub version: u64,
    /// The key generation the file key is wrapped under (0 in a personal space).
    #[serde(default)]
    pub generation: u32,
    /// The encrypted remote path the upload was opened for.
    pub remote: String,
    pub sealed_size: u64,
    /// The local file when the upload started.
    pub local_size: u64,
    pub local_mtime_s: i64,
    pub local_mtime_ns: u32,
    /// The file key, wrapped for (file_id, version); hex.
    pub wrapped_key: String,
}

/// The records of one state directory.
#[derive(Debug, Clone)]
pub struct ResumeStore {
    dir: PathBuf,
}

impl ResumeStore {
    pub fn new(state: &StateDir) -> Self {
        ResumeStore {
            dir: state.path().join("uploads"),
        }
    }

    /// The record file for an upload of `local` to `remote` (encrypted) on `server` as `user`.
    pub fn path_for(&self, server: &str, user: &str, remote: &str, local: &Path) -> PathBuf {
        let mut id = Vec::new();
        for part in [server.as_bytes(), user.as_bytes(), remote.as_bytes()] {
            id.extend_from_slice(part);
            id.push(0);
        }
        id.extend_from_slice(local.as_os_str().as_encoded_bytes());
        self.dir
            .join(hex::encode(vault_core::format::content_hash(&id)))
    }

    /// The record at `path`, if there is a readable one (a damaged record is ignored).
    pub fn load(&self, path: &Path) -> Option<ResumeRecord> {
        let meta = std::fs::metadata(path).ok()?;
        if meta.len() > MAX_RECORD_LEN {
            return None;
        }
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Saves a record atomically (0600, fsynced).
    pub fn save(&self, path: &Path, record: &ResumeRecord) -> Result<(), FilesError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| FilesError::io("create", &self.dir, e))?;
        let text = serde_json::to_vec(record)
            .map_err(|e| FilesError::Usage(format!("cannot encode a resume record: {e}")))?;
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| FilesError::io("write", path, e))
    }

    /// Removes a record (a missing one is fine).
    pub fn remove(&self, path: &Path) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn records_round_trip_privately_and_are_keyed_by_all_parts() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = ResumeStore::new(&StateDir::at(tmp.path().join("state")));
        let p = store.path_for("h:1", "alice", "abc/def", Path::new("/x/y"));
        assert_ne!(
            p,
            store.path_for("h:2", "alice", "abc/def", Path::new("/x/y"))
        );
        assert_ne!(
            p,
            store.path_for("h:1", "bob", "abc/def", Path::new("/x/y"))
        );
        assert_ne!(
            p,
            store.path_for("h:1", "alice", "abc/deg", Path::new("/x/y"))
        );
        assert_ne!(
            p,
            store.path_for("h:1", "alice", "abc/def", Path::new("/x/z"))
        );
        assert!(store.load(&p).is_none());
        let record = ResumeRecord {
            upload_id: 1,
            file_id: 2,
            version: 3,
            generation: 2,
            remote: "abc/def".into(),
            sealed_size: 16,
            local_size: 0,
            local_mtime_s: -5,
            local_mtime_ns: 7,
            wrapped_key: "00".into(),
        };
        store.save(&p, &record).expect("save");
        assert_eq!(store.load(&p), Some(record));
        assert_eq!(std::fs::metadata(&p).expect("meta").mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(p.parent().expect("dir"))
                .expect("meta")
                .mode()
                & 0o777,
            0o700
        );
        std::fs::write(&p, b"garbage").expect("damage");
        assert!(store.load(&p).is_none());
        store.remove(&p);
        assert!(!p.exists());
    }
}
