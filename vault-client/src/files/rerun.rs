//! Where a re-run of `put -r`/`get -r` continues. A folder given to a target that does not
//! exist becomes that target; a target that exists as a directory receives the folder
//! inside it (the `cp` rule of [`super::plan`]). By that rule alone, a command whose first
//! run created its target would nest on its second run (`TARGET/NAME/…`) instead of
//! continuing where it stopped.
//!
//! So a command that creates its target notes it in `<state>/targets/` (0700, files 0600,
//! written atomically): the command (server, user, `put` or `get`, source and target) and
//! the directory it made — the remote entry's id, or the local directory's device and
//! inode. A later run of the same command that finds that very directory at the target
//! continues into it, whether the earlier run finished or not, so running a command again
//! converges. A directory someone else made there (another id or inode) receives the
//! folder inside it, as before. Other commands never read a note; a note whose directory
//! is gone is dropped when its command runs again, and only the newest [`MAX_NOTES`] are
//! kept.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Files, FilesError, RemotePath};
use crate::state::StateDir;

/// The subdirectory of the state directory that holds the notes.
const NOTES: &str = "targets";
/// At most this many notes are kept (the oldest go first).
pub const MAX_NOTES: usize = 512;
/// A note is at most this large; anything bigger is not ours.
const MAX_NOTE_LEN: u64 = 16 * 1024;

/// One command, as far as its target goes: two runs are the same command when all of
/// this is equal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// `put` or `get`.
    kind: String,
    server: String,
    user: String,
    /// The local source as an absolute path (`put`), or the remote source (`get`).
    source: String,
    /// The remote target (`put`), or the local target as an absolute path (`get`).
    target: String,
}

/// The directory a command made at its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MadeDir {
    /// A remote directory: its entry id (which a directory removed and made again does
    /// not keep).
    Remote { id: i64 },
    /// A local directory: its device and inode.
    Local { dev: u64, ino: u64 },
}

impl MadeDir {
    /// The local directory at `path`, if there is one.
    pub fn local(path: &Path) -> Option<MadeDir> {
        let meta = std::fs::metadata(path).ok().filter(|m| m.is_dir())?;
        Some(MadeDir::Local {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Note {
    command: Command,
    made: MadeDir,
}

fn absolute(path: &Path) -> Result<String, FilesError> {
    let abs = std::path::absolute(path).map_err(|e| FilesError::io("read", path, e))?;
    abs.into_os_string()
        .into_string()
        .map_err(|p| FilesError::Usage(format!("{p:?} is not valid UTF-8; name it another way")))
}

impl Command {
    /// `put -r SOURCE TARGET`.
    pub fn put(files: &Files, source: &Path, target: &RemotePath) -> Result<Self, FilesError> {
        Ok(Command {
            kind: "put".into(),
            server: files.server().to_owned(),
            user: files.user().to_owned(),
            source: absolute(source)?,
            target: target.to_string(),
        })
    }

    /// `get -r SOURCE TARGET`.
    pub fn get(files: &Files, source: &RemotePath, target: &Path) -> Result<Self, FilesError> {
        Ok(Command {
            kind: "get".into(),
            server: files.server().to_owned(),
            user: files.user().to_owned(),
            source: source.to_string(),
            target: absolute(target)?,
        })
    }

    /// The note's file name: the BLAKE3 of every part, in hex.
    fn file_name(&self) -> String {
        let mut id = Vec::new();
        for part in [
            &self.kind,
            &self.server,
            &self.user,
            &self.source,
            &self.target,
        ] {
            id.extend_from_slice(part.as_bytes());
            id.push(0);
        }
        hex::encode(vault_core::format::content_hash(&id))
    }
}

/// The notes of one state directory.
#[derive(Clone, Debug)]
pub struct TargetNotes {
    state: StateDir,
}

impl TargetNotes {
    pub fn new(state: &StateDir) -> Self {
        TargetNotes {
            state: state.clone(),
        }
    }

    fn dir(&self) -> PathBuf {
        self.state.path().join(NOTES)
    }

    fn load(&self, command: &Command) -> Option<Note> {
        let path = self.dir().join(command.file_name());
        let meta = std::fs::metadata(&path).ok()?;
        if !meta.is_file() || meta.len() > MAX_NOTE_LEN {
            return None;
        }
        let note: Note = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        (note.command == *command).then_some(note)
    }

    /// Whether `found`, the directory now at the target, is the one an earlier run of
    /// `command` made. A note about another directory is stale and is dropped.
    pub fn made_by(&self, command: &Command, found: MadeDir) -> bool {
        match self.load(command) {
            Some(note) if note.made == found => true,
            Some(_) => {
                self.forget(command);
                false
            }
            None => false,
        }
    }

    /// Notes that `command` made `made` at its target.
    pub fn note(&self, command: &Command, made: MadeDir) -> Result<(), FilesError> {
        let note = Note {
            command: command.clone(),
            made,
        };
        let text = serde_json::to_vec(&note)
            .map_err(|e| FilesError::Usage(format!("cannot encode a target note: {e}")))?;
        self.state
            .write_in(NOTES, &command.file_name(), &text)
            .map_err(FilesError::from)?;
        self.prune(MAX_NOTES);
        Ok(())
    }

    /// Drops the note of `command` (a missing one is fine).
    pub fn forget(&self, command: &Command) {
        let _ = std::fs::remove_file(self.dir().join(command.file_name()));
    }

    /// Removes the oldest notes beyond `keep`.
    fn prune(&self, keep: usize) {
        let Ok(read) = std::fs::read_dir(self.dir()) else {
            return;
        };
        let mut notes: Vec<(std::time::SystemTime, PathBuf)> = read
            .flatten()
            .filter_map(|e| {
                let modified = e.metadata().ok()?.modified().ok()?;
                Some((modified, e.path()))
            })
            .collect();
        if notes.len() <= keep {
            return;
        }
        notes.sort();
        for (_, path) in &notes[..notes.len() - keep] {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn command(source: &str, target: &str) -> Command {
        Command {
            kind: "put".into(),
            server: "h:1".into(),
            user: "alice".into(),
            source: source.into(),
            target: target.into(),
        }
    }

    #[test]
    fn a_note_answers_only_its_own_command_and_directory() {
        let tmp = tempfile::tempdir().expect("tmp");
        let notes = TargetNotes::new(&StateDir::at(tmp.path().join("state")));
        let cmd = command("/home/a/photos", "/backup");
        assert!(!notes.made_by(&cmd, MadeDir::Remote { id: 7 }));
        notes.note(&cmd, MadeDir::Remote { id: 7 }).expect("note");
        let file = notes.dir().join(cmd.file_name());
        assert_eq!(
            std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        assert!(notes.made_by(&cmd, MadeDir::Remote { id: 7 }));
        // Another command with the same target, or the same command on another server.
        assert!(!notes.made_by(
            &command("/home/a/other", "/backup"),
            MadeDir::Remote { id: 7 }
        ));
        let elsewhere = Command {
            server: "h:2".into(),
            ..cmd.clone()
        };
        assert!(!notes.made_by(&elsewhere, MadeDir::Remote { id: 7 }));
        assert!(file.exists(), "other commands leave the note alone");
        // The directory was removed and made again: the note is stale and goes.
        assert!(!notes.made_by(&cmd, MadeDir::Remote { id: 8 }));
        assert!(!file.exists());
        assert!(!notes.made_by(&cmd, MadeDir::Remote { id: 7 }));
    }

    #[test]
    fn a_damaged_note_is_ignored() {
        let tmp = tempfile::tempdir().expect("tmp");
        let notes = TargetNotes::new(&StateDir::at(tmp.path().join("state")));
        let cmd = command("/a", "/b");
        notes
            .note(&cmd, MadeDir::Local { dev: 1, ino: 2 })
            .expect("note");
        std::fs::write(notes.dir().join(cmd.file_name()), b"garbage").expect("damage");
        assert!(!notes.made_by(&cmd, MadeDir::Local { dev: 1, ino: 2 }));
    }

    #[test]
    fn the_oldest_notes_go_beyond_the_limit() {
        let tmp = tempfile::tempdir().expect("tmp");
        let notes = TargetNotes::new(&StateDir::at(tmp.path().join("state")));
        let commands: Vec<Command> = (0..5).map(|i| command(&format!("/s{i}"), "/t")).collect();
        for (i, cmd) in commands.iter().enumerate() {
            notes.note(cmd, MadeDir::Remote { id: 1 }).expect("note");
            let written = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64);
            std::fs::File::options()
                .write(true)
                .open(notes.dir().join(cmd.file_name()))
                .and_then(|f| f.set_modified(written))
                .expect("set mtime");
        }
        notes.prune(3);
        let kept: Vec<bool> = commands
            .iter()
            .map(|c| notes.made_by(c, MadeDir::Remote { id: 1 }))
            .collect();
        assert_eq!(kept, [false, false, true, true, true]);
    }

    #[test]
    fn local_directories_are_known_by_device_and_inode() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("d");
        assert_eq!(MadeDir::local(&dir), None);
        std::fs::create_dir(&dir).expect("mkdir");
        let meta = std::fs::metadata(&dir).expect("meta");
        assert_eq!(
            MadeDir::local(&dir),
            Some(MadeDir::Local {
                dev: meta.dev(),
                ino: meta.ino()
            })
        );
        std::fs::write(tmp.path().join("f"), b"").expect("write");
        assert_eq!(MadeDir::local(&tmp.path().join("f")), None, "a file");
    }
}
