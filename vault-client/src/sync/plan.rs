//! The decision for one path, as a pure function of what was last in sync (`base`), the
//! local file now and the remote file now — the rule table of README.md, Sync:
//!
//! - changed on one side only → it goes across;
//! - changed on both sides → both kept, the local one renamed to a conflict copy
//!   (unless both now hold the same bytes);
//! - deleted on one side and unchanged on the other → deleted on the other;
//! - edited on one side and deleted on the other → the edit wins.
//!
//! `push` and `pull` are one-way mirrors: the target is made equal to the source, and
//! extras on the target are removed only with `--delete`.

use super::state::{Base, RemoteFile, Stamp};

/// Which way a run goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Two-way.
    Sync,
    /// Local → remote; `delete` removes remote files that are not local.
    Push { delete: bool },
    /// Remote → local; `delete` removes local files that are not remote.
    Pull { delete: bool },
}

/// What to do with one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Upload,
    Download,
    /// Remove the local file (into `LOCAL/.vault-sync/trash/`).
    DeleteLocal,
    /// Move the remote file to the trash.
    DeleteRemote,
    /// Rename the local file to a conflict copy, upload that, download the remote one.
    Conflict,
    /// Both sides hold the same bytes: remember them as in sync.
    Record,
    /// Neither side has the file any more (or it is not to be mirrored): drop the record.
    Forget,
}

/// Everything known about one path.
#[derive(Clone, Copy, Debug)]
pub struct Sides<'a> {
    pub base: Option<&'a Base>,
    pub local: Option<&'a Stamp>,
    pub remote: Option<&'a RemoteFile>,
    /// Whether the local and remote contents are equal, when it was worth hashing
    /// (see [`needs_hash`]); `None` = unknown, taken as different.
    pub same: Option<bool>,
}

impl Sides<'_> {
    fn local_changed(&self) -> bool {
        match (self.base, self.local) {
            (Some(b), Some(l)) => b.local != *l,
            _ => true,
        }
    }

    fn remote_changed(&self) -> bool {
        match (self.base, self.remote) {
            (Some(b), Some(r)) => b.id != r.id || b.version != r.version,
            _ => true,
        }
    }

    fn same(&self) -> bool {
        self.same == Some(true)
    }
}

/// Whether the local file should be hashed before deciding: both sides have a file of the
/// same size and at least one of them changed since the last sync.
pub fn needs_hash(s: &Sides<'_>) -> bool {
    match (s.local, s.remote) {
        (Some(l), Some(r)) => {
            l.size == r.size && r.blake3.is_some() && (s.local_changed() || s.remote_changed())
        }
        _ => false,
    }
}

/// The rule table.
pub fn decide(mode: Mode, s: &Sides<'_>) -> Action {
    let forget_or_nothing = if s.base.is_some() {
        Action::Forget
    } else {
        Action::Nothing
    };
    match (s.local, s.remote) {
        (None, None) => forget_or_nothing,
        (Some(_), Some(_)) => {
            let (lc, rc) = (s.local_changed(), s.remote_changed());
            if !lc && !rc {
                return Action::Nothing;
            }
            if s.same() {
                return Action::Record;
            }
            match mode {
                Mode::Push { .. } => Action::Upload,
                Mode::Pull { .. } => Action::Download,
                Mode::Sync => match (s.base, lc, rc) {
                    (None, _, _) | (Some(_), true, true) => Action::Conflict,
                    (Some(_), true, false) => Action::Upload,
                    _ => Action::Download,
                },
            }
        }
        (Some(_), None) => match mode {
            Mode::Push { .. } => Action::Upload,
            Mode::Pull { delete: true } => Action::DeleteLocal,
            Mode::Pull { delete: false } => forget_or_nothing,
            Mode::Sync => match s.base {
                // Deleted remotely: follow unless the local file was edited since.
                Some(_) if !s.local_changed() => Action::DeleteLocal,
                _ => Action::Upload,
            },
        },
        (None, Some(_)) => match mode {
            Mode::Pull { .. } => Action::Download,
            Mode::Push { delete: true } => Action::DeleteRemote,
            Mode::Push { delete: false } => forget_or_nothing,
            Mode::Sync => match s.base {
                Some(_) if !s.remote_changed() => Action::DeleteRemote,
                _ => Action::Download,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        size: 5,
        mtime_ns: 100,
    };
    const EDITED: Stamp = Stamp {
        size: 5,
        mtime_ns: 200,
    };
    const BASE: Base = Base {
        local: STAMP,
        id: 1,
        version: 3,
    };

    fn remote(version: u64) -> RemoteFile {
        RemoteFile {
            id: 1,
            version,
            size: 5,
            blake3: Some("ab".into()),
            mtime_ns: None,
        }
    }

    /// Every combination of: base present; local absent / unchanged / edited; remote
    /// absent / unchanged / edited; contents same or not — for the three modes.
    #[test]
    fn the_rule_table() {
        use Action::*;
        let (r_same, r_new) = (remote(3), remote(4));
        // (base, local, remote, same) → (sync, push, push --delete, pull, pull --delete)
        type Row<'a> = (
            Option<&'a Base>,
            Option<&'a Stamp>,
            Option<&'a RemoteFile>,
            bool,
            [Action; 5],
        );
        let rows: Vec<Row<'_>> = vec![
            // Never synced.
            (None, None, None, false, [Nothing; 5]),
            (
                None,
                Some(&STAMP),
                None,
                false,
                [Upload, Upload, Upload, Nothing, DeleteLocal],
            ),
            (
                None,
                None,
                Some(&r_same),
                false,
                [Download, Nothing, DeleteRemote, Download, Download],
            ),
            (
                None,
                Some(&STAMP),
                Some(&r_same),
                false,
                [Conflict, Upload, Upload, Download, Download],
            ),
            (None, Some(&STAMP), Some(&r_same), true, [Record; 5]),
            // In sync before.
            (Some(&BASE), None, None, false, [Forget; 5]),
            (
                Some(&BASE),
                Some(&STAMP),
                Some(&r_same),
                false,
                [Nothing; 5],
            ),
            (
                Some(&BASE),
                Some(&EDITED),
                Some(&r_same),
                false,
                [Upload, Upload, Upload, Download, Download],
            ),
            (Some(&BASE), Some(&EDITED), Some(&r_same), true, [Record; 5]),
            (
                Some(&BASE),
                Some(&STAMP),
                Some(&r_new),
                false,
                [Download, Upload, Upload, Download, Download],
            ),
            (
                Some(&BASE),
                Some(&EDITED),
                Some(&r_new),
                false,
                [Conflict, Upload, Upload, Download, Download],
            ),
            (Some(&BASE), Some(&EDITED), Some(&r_new), true, [Record; 5]),
            // Deleted locally.
            (
                Some(&BASE),
                None,
                Some(&r_same),
                false,
                [DeleteRemote, Forget, DeleteRemote, Download, Download],
            ),
            (
                Some(&BASE),
                None,
                Some(&r_new),
                false,
                [Download, Forget, DeleteRemote, Download, Download],
            ),
            // Deleted remotely.
            (
                Some(&BASE),
                Some(&STAMP),
                None,
                false,
                [DeleteLocal, Upload, Upload, Forget, DeleteLocal],
            ),
            (
                Some(&BASE),
                Some(&EDITED),
                None,
                false,
                [Upload, Upload, Upload, Forget, DeleteLocal],
            ),
        ];
        let modes = [
            Mode::Sync,
            Mode::Push { delete: false },
            Mode::Push { delete: true },
            Mode::Pull { delete: false },
            Mode::Pull { delete: true },
        ];
        for (i, (base, local, remote, same, want)) in rows.iter().enumerate() {
            let sides = Sides {
                base: *base,
                local: *local,
                remote: *remote,
                same: Some(*same),
            };
            for (mode, want) in modes.iter().zip(want) {
                assert_eq!(decide(*mode, &sides), *want, "row {i}, {mode:?}");
            }
        }
    }

    #[test]
    fn a_different_file_id_is_a_remote_change() {
        let other = RemoteFile { id: 2, ..remote(3) };
        let sides = Sides {
            base: Some(&BASE),
            local: Some(&STAMP),
            remote: Some(&other),
            same: Some(false),
        };
        assert_eq!(decide(Mode::Sync, &sides), Action::Download);
    }

    #[test]
    fn hashing_only_when_it_can_decide_something() {
        let r = remote(3);
        let mut sides = Sides {
            base: Some(&BASE),
            local: Some(&STAMP),
            remote: Some(&r),
            same: None,
        };
        assert!(!needs_hash(&sides), "nothing changed");
        sides.local = Some(&EDITED);
        assert!(needs_hash(&sides), "edited, same size");
        let bigger = Stamp {
            size: 6,
            mtime_ns: 1,
        };
        sides.local = Some(&bigger);
        assert!(!needs_hash(&sides), "sizes differ");
        let unknown = RemoteFile {
            blake3: None,
            ..remote(4)
        };
        sides.local = Some(&EDITED);
        sides.remote = Some(&unknown);
        assert!(!needs_hash(&sides), "no remote hash to compare with");
        sides.remote = None;
        assert!(!needs_hash(&sides));
    }

    #[test]
    fn an_unknown_comparison_counts_as_different() {
        let r = remote(3);
        let sides = Sides {
            base: None,
            local: Some(&STAMP),
            remote: Some(&r),
            same: None,
        };
        assert_eq!(decide(Mode::Sync, &sides), Action::Conflict);
    }
}
