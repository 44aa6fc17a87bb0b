//! The local state database in `LOCAL/.vault-sync/state.json`: which server, user and
//! remote folder the directory syncs with (in a group's space also the group's id, so a
//! renamed group is followed and another group of the old name is refused), the remote
//! revision reached, the remote files
//! as last seen, and per path what was last in sync on both sides. Written atomically
//! (temp file, fsync, rename, fsync of the directory), so a kill leaves the old or the new
//! state, never half of one. Each completed action is also appended at once to
//! `journal.jsonl` (replayed on load, emptied when the state is written), so a killed run
//! forgets nothing it finished.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SyncError;

/// The folder inside LOCAL that holds the state; never synced.
pub const STATE_DIR: &str = ".vault-sync";
const STATE_FILE: &str = "state.json";
/// Actions completed since `state.json` was written, one JSON [`Entry`] a line.
const JOURNAL_FILE: &str = "journal.jsonl";
/// Held locked while a run works on the directory.
const LOCK_FILE: &str = "lock";
const FORMAT: u32 = 1;
/// A state file larger than this is refused (about 1 000 000 paths).
const MAX_STATE_BYTES: u64 = 512 * 1024 * 1024;

/// A local file's size and modification time, the cheap "did it change" test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub size: u64,
    /// Nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// A remote file as the listing or the change feed showed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFile {
    pub id: i64,
    pub version: u64,
    pub size: u64,
    /// Hex BLAKE3 of the plaintext, from the opened metadata (unknown right after our own
    /// upload until the next refresh reads it back).
    pub blake3: Option<String>,
    /// The plaintext mtime from the metadata, in nanoseconds since the epoch.
    #[serde(default)]
    pub mtime_ns: Option<i64>,
}

/// What was in sync for one path: the local stamp and the remote version it matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    pub local: Stamp,
    pub id: i64,
    pub version: u64,
}

/// One completed action, appended to the journal at once: the path's state afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub synced: Option<Base>,
    pub remote: Option<RemoteFile>,
    /// An upload of the local file with this stamp is about to start (an intent only:
    /// `synced` and `remote` are not touched). A later run that finds a remote version
    /// with this size and mtime knows it for its own upload, even if the run was killed
    /// before it could record it.
    #[serde(default)]
    pub uploading: Option<Stamp>,
}

/// The whole state of one synced directory. Paths are relative, `/`-separated.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SyncState {
    pub format: u32,
    pub server: String,
    pub user: String,
    /// The remote folder as typed in canonical form (`/docs`, `@team/x`).
    pub remote: String,
    /// The id of the group whose space `remote` is in (stable across renames; a group
    /// deleted and made again under the same name has another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<i64>,
    /// The namespace revision the remote view is complete up to (0: never read).
    pub revision: u64,
    /// Remote files under the folder as of `revision`.
    pub remote_files: BTreeMap<String, RemoteFile>,
    /// Per path, what was last in sync.
    pub synced: BTreeMap<String, Base>,
    /// Uploads started but not recorded as finished, by local stamp.
    #[serde(default)]
    pub uploading: BTreeMap<String, Stamp>,
}

impl SyncState {
    /// A fresh state bound to `server`, `user` and `remote`.
    pub fn new(server: &str, user: &str, remote: &str) -> Self {
        SyncState {
            format: FORMAT,
            server: server.to_owned(),
            user: user.to_owned(),
            remote: remote.to_owned(),
            ..SyncState::default()
        }
    }

    /// Reads the bytes of a `state.json` (the journal is not applied, the format not checked).
    pub fn parse(bytes: &[u8]) -> Result<SyncState, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Applies every entry of a journal's bytes, one JSON [`Entry`] a line, in order. A line
    /// that is not an entry is skipped and the others still apply: a torn last line (power
    /// loss, even one cut inside a multi-byte character) is redone or recognised by the
    /// next run. Replaying a journal again changes nothing.
    pub fn replay(&mut self, journal: &[u8]) {
        for line in journal.split(|&b| b == b'\n') {
            if let Ok(entry) = serde_json::from_slice::<Entry>(line) {
                self.apply(&entry);
            }
        }
    }

    /// Applies one journal entry.
    pub fn apply(&mut self, entry: &Entry) {
        if let Some(stamp) = entry.uploading {
            self.uploading.insert(entry.path.clone(), stamp);
            return;
        }
        self.uploading.remove(&entry.path);
        match entry.synced {
            Some(b) => self.synced.insert(entry.path.clone(), b),
            None => self.synced.remove(&entry.path),
        };
        match &entry.remote {
            Some(r) => self.remote_files.insert(entry.path.clone(), r.clone()),
            None => self.remote_files.remove(&entry.path),
        };
    }

    /// Turns unfinished uploads whose version reached the server into sync records, and
    /// forgets the rest.
    pub fn settle_uploads(&mut self) {
        for (path, stamp) in std::mem::take(&mut self.uploading) {
            let Some(remote) = self.remote_files.get(&path) else {
                continue;
            };
            if remote.size == stamp.size && remote.mtime_ns == Some(stamp.mtime_ns) {
                let base = Base {
                    local: stamp,
                    id: remote.id,
                    version: remote.version,
                };
                self.synced.insert(path, base);
            }
        }
    }

    /// After the group of the remote folder was renamed (same group id, same folder in
    /// it), binds the state to the folder's new name `remote`.
    pub fn follow_rename(&mut self, remote: &str, group_id: Option<i64>) {
        fn folder(text: &str) -> &str {
            text.split_once('/').map_or("", |(_, rest)| rest)
        }
        if self.group_id.is_some()
            && self.group_id == group_id
            && self.remote.starts_with('@')
            && remote.starts_with('@')
            && folder(&self.remote) == folder(remote)
        {
            self.remote = remote.to_owned();
        }
    }

    /// Refuses a state made for another group of the same name; binds a state that names
    /// no group yet to `group_id`.
    pub fn check_group(&mut self, group_id: Option<i64>) -> Result<(), SyncError> {
        match self.group_id {
            None => {
                self.group_id = group_id;
                Ok(())
            }
            Some(bound) if group_id == Some(bound) => Ok(()),
            Some(_) => Err(SyncError::Usage(format!(
                "this directory synced with {} of another group of that name (the group it \
                 synced with was deleted or renamed); use another local directory (or remove \
                 its {STATE_DIR}/ to start over)",
                self.remote
            ))),
        }
    }

    /// Refuses a state made for another server, user or remote folder.
    pub fn check_binding(&self, server: &str, user: &str, remote: &str) -> Result<(), SyncError> {
        if self.server == server && self.user == user && self.remote == remote {
            return Ok(());
        }
        Err(SyncError::Usage(format!(
            "this directory syncs with {} as {} on {}, not {remote} as {user} on {server}; \
             sync it with that folder, or use another local directory (or remove its {STATE_DIR}/ \
             to start over)",
            self.remote, self.user, self.server
        )))
    }
}

/// Where one directory's state lives.
#[derive(Clone, Debug)]
pub struct StateFile {
    dir: PathBuf,
}

impl StateFile {
    pub fn new(local_root: &Path) -> Self {
        StateFile {
            dir: local_root.join(STATE_DIR),
        }
    }

    /// `LOCAL/.vault-sync`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the directory's run lock (`LOCAL/.vault-sync/lock`), held until the returned
    /// file is dropped (or the process dies), so two runs never work on one directory at
    /// once.
    pub fn lock(&self) -> Result<std::fs::File, SyncError> {
        create_private_dir(&self.dir)?;
        let path = self.dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| SyncError::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(SyncError::Usage(format!(
                "another sync, push or pull is running on {}; wait for it to finish",
                self.dir.parent().unwrap_or(&self.dir).display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(SyncError::io("lock", &path, e)),
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The saved state, or `None` before the first sync.
    pub fn load(&self) -> Result<Option<SyncState>, SyncError> {
        let path = self.file();
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SyncError::io("read", &path, e)),
        };
        if meta.len() > MAX_STATE_BYTES {
            return Err(SyncError::Usage(format!(
                "{} is larger than {MAX_STATE_BYTES} bytes; remove it to start over",
                path.display()
            )));
        }
        // Parsed as it is read: with 100,000 files the file is 25 MB, which a read into
        // memory first would add to every round's peak.
        let file = std::fs::File::open(&path).map_err(|e| SyncError::io("read", &path, e))?;
        let read: Result<SyncState, _> =
            serde_json::from_reader(std::io::BufReader::with_capacity(1 << 16, file));
        let mut state = read.map_err(|e| {
            if let Some(kind) = e.io_error_kind() {
                return SyncError::io("read", &path, std::io::Error::from(kind));
            }
            SyncError::Usage(format!(
                "{} is damaged ({e}); remove it and sync again (files on both sides are kept, \
                 differing ones as conflict copies)",
                path.display()
            ))
        })?;
        if let Ok(journal) = std::fs::read(self.dir.join(JOURNAL_FILE)) {
            state.replay(&journal);
        }
        if state.format != FORMAT {
            return Err(SyncError::Usage(format!(
                "{} has format {}, this vault understands {FORMAT}; use a matching vault",
                path.display(),
                state.format
            )));
        }
        Ok(Some(state))
    }

    /// Writes `state` atomically.
    pub fn save(&self, state: &SyncState) -> Result<(), SyncError> {
        create_private_dir(&self.dir)?;
        let path = self.file();
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(|e| SyncError::io("write", &self.dir, e))?;
        // Encoded as it is written, not into memory first (see `load`).
        let mut out = std::io::BufWriter::with_capacity(1 << 16, tmp.as_file_mut());
        serde_json::to_writer(&mut out, state).map_err(|e| match e.io_error_kind() {
            Some(kind) => SyncError::io("write", &path, std::io::Error::from(kind)),
            None => SyncError::Usage(format!("cannot encode the sync state: {e}")),
        })?;
        out.flush().map_err(|e| SyncError::io("write", &path, e))?;
        drop(out);
        tmp.as_file()
            .sync_all()
            .map_err(|e| SyncError::io("write", tmp.path(), e))?;
        tmp.persist(&path)
            .map_err(|e| SyncError::io("write", &path, e.error))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        // Everything in the journal is in the state now (replaying it again is harmless).
        let journal = self.dir.join(JOURNAL_FILE);
        match std::fs::remove_file(&journal) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SyncError::io("remove", &journal, e)),
        }
    }

    /// Appends `entry` to the journal (written through to the OS before returning).
    pub fn append(&self, entry: &Entry) -> Result<(), SyncError> {
        let journal = self.dir.join(JOURNAL_FILE);
        let mut line = serde_json::to_vec(entry)
            .map_err(|e| SyncError::Usage(format!("cannot encode the sync journal: {e}")))?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal)
            .map_err(|e| SyncError::io("write", &journal, e))?;
        f.write_all(&line)
            .map_err(|e| SyncError::io("write", &journal, e))
    }
}

/// Creates `dir` (mode 0700) if it is missing.
pub fn create_private_dir(dir: &Path) -> Result<(), SyncError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(SyncError::io("create", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_on_one_directory_is_refused() {
        let root = tempfile::tempdir().expect("tmp");
        let file = StateFile::new(root.path());
        let held = file.lock().expect("first lock");
        let second = file.lock().expect_err("second lock");
        assert!(second.to_string().contains("another sync"), "{second}");
        drop(held);
        file.lock().expect("free again");
    }

    #[test]
    fn saves_and_loads_atomically() {
        let root = tempfile::tempdir().expect("tmp");
        let file = StateFile::new(root.path());
        assert!(file.load().expect("load").is_none());
        let mut state = SyncState::new("127.0.0.1:1", "alice", "/docs");
        state.revision = 7;
        state.synced.insert(
            "a/b.txt".into(),
            Base {
                local: Stamp {
                    size: 3,
                    mtime_ns: 42,
                },
                id: 9,
                version: 2,
            },
        );
        file.save(&state).expect("save");
        let back = file.load().expect("load").expect("some");
        assert_eq!(back.revision, 7);
        assert_eq!(back.synced, state.synced);
        let leftovers = std::fs::read_dir(file.dir()).expect("dir").count();
        assert_eq!(leftovers, 1, "no temp file is left behind");
    }

    #[test]
    fn the_journal_is_replayed_until_the_next_save() {
        let root = tempfile::tempdir().expect("tmp");
        let file = StateFile::new(root.path());
        let state = SyncState::new("h:1", "alice", "/docs");
        file.save(&state).expect("save");
        let remote = RemoteFile {
            id: 4,
            version: 1,
            size: 2,
            blake3: None,
            mtime_ns: None,
        };
        let entry = Entry {
            path: "x".into(),
            synced: Some(Base {
                local: Stamp {
                    size: 2,
                    mtime_ns: 5,
                },
                id: 4,
                version: 1,
            }),
            remote: Some(remote.clone()),
            uploading: None,
        };
        file.append(&entry).expect("append");
        // A torn line after it is ignored.
        let journal = file.dir().join(JOURNAL_FILE);
        let mut text = std::fs::read_to_string(&journal).expect("journal");
        text.push_str("{\"path\":\"y\",\"syn");
        std::fs::write(&journal, text).expect("write");
        let back = file.load().expect("load").expect("some");
        assert_eq!(back.remote_files.get("x"), Some(&remote));
        assert_eq!(back.synced.get("x"), entry.synced.as_ref());
        file.save(&back).expect("save");
        assert!(!journal.exists(), "saving empties the journal");
        let gone = Entry {
            path: "x".into(),
            synced: None,
            remote: None,
            uploading: None,
        };
        file.append(&gone).expect("append");
        let back = file.load().expect("load").expect("some");
        assert!(back.synced.is_empty() && back.remote_files.is_empty());
    }

    #[test]
    fn a_journal_torn_inside_a_multibyte_character_keeps_the_entries_before_it() {
        let root = tempfile::tempdir().expect("tmp");
        let file = StateFile::new(root.path());
        file.save(&SyncState::new("h:1", "alice", "/docs"))
            .expect("save");
        let done = Entry {
            path: "notes.txt".into(),
            synced: Some(Base {
                local: Stamp {
                    size: 2,
                    mtime_ns: 5,
                },
                id: 4,
                version: 1,
            }),
            remote: None,
            uploading: None,
        };
        file.append(&done).expect("append");
        // The next entry names a file "é.txt"; power is lost after the first byte of "é".
        let journal = file.dir().join(JOURNAL_FILE);
        let mut bytes = std::fs::read(&journal).expect("journal");
        bytes.extend_from_slice(b"{\"path\":\"\xc3");
        std::fs::write(&journal, bytes).expect("write");
        let back = file.load().expect("load").expect("some");
        assert_eq!(back.synced.get("notes.txt"), done.synced.as_ref());
    }

    #[test]
    fn replaying_a_journal_twice_changes_nothing() {
        let mut once = SyncState::new("h:1", "alice", "/docs");
        let stamp = Stamp {
            size: 1,
            mtime_ns: 1,
        };
        let lines = [
            Entry {
                path: "a".into(),
                synced: None,
                remote: None,
                uploading: Some(stamp),
            },
            Entry {
                path: "a".into(),
                synced: Some(Base {
                    local: stamp,
                    id: 1,
                    version: 1,
                }),
                remote: None,
                uploading: None,
            },
            Entry {
                path: "b".into(),
                synced: None,
                remote: None,
                uploading: Some(stamp),
            },
        ];
        let mut journal = Vec::new();
        for entry in &lines {
            journal.extend(serde_json::to_vec(entry).expect("json"));
            journal.push(b'\n');
        }
        once.replay(&journal);
        let mut twice = once.clone();
        twice.replay(&journal);
        assert_eq!(
            serde_json::to_string(&twice).expect("json"),
            serde_json::to_string(&once).expect("json")
        );
        assert!(once.synced.contains_key("a") && !once.uploading.contains_key("a"));
        assert_eq!(once.uploading.get("b"), Some(&stamp));
    }

    #[test]
    fn another_binding_is_refused() {
        let state = SyncState::new("h:1", "alice", "/docs");
        assert!(state.check_binding("h:1", "alice", "/docs").is_ok());
        let e = state
            .check_binding("h:1", "alice", "/other")
            .expect_err("other folder");
        assert!(e.to_string().contains("/docs"), "{e}");
        assert!(state.check_binding("h:2", "alice", "/docs").is_err());
        assert!(state.check_binding("h:1", "bob", "/docs").is_err());
    }

    #[test]
    fn a_group_folder_is_bound_to_the_group_id_and_follows_renames() {
        let mut state = SyncState::new("h:1", "alice", "@team/docs");
        state.check_group(Some(7)).expect("binds");
        assert_eq!(state.group_id, Some(7));
        // Renamed: same id, same folder.
        state.follow_rename("@crew/docs", Some(7));
        assert!(state.check_binding("h:1", "alice", "@crew/docs").is_ok());
        // Another folder, or another group under the old name, is not a rename.
        state.follow_rename("@crew/other", Some(7));
        assert_eq!(state.remote, "@crew/docs");
        state.follow_rename("@team/docs", Some(8));
        assert_eq!(state.remote, "@crew/docs");
        let err = state.check_group(Some(8)).expect_err("another group");
        assert!(err.to_string().contains("another group"), "{err}");
        // A personal folder names no group.
        let mut mine = SyncState::new("h:1", "alice", "/docs");
        mine.check_group(None).expect("personal");
        mine.follow_rename("/other", None);
        assert_eq!(mine.remote, "/docs");
    }

    #[test]
    fn a_damaged_state_says_what_to_do() {
        let root = tempfile::tempdir().expect("tmp");
        let file = StateFile::new(root.path());
        create_private_dir(file.dir()).expect("dir");
        std::fs::write(file.dir().join(STATE_FILE), b"{not json").expect("write");
        let e = file.load().expect_err("damaged");
        assert!(e.to_string().contains("remove it"), "{e}");
    }
}
