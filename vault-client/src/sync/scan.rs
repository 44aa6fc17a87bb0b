//! The local side of a sync: one walk of LOCAL that stats every file (size + mtime), and
//! the ignore rules — `.vaultignore` files in gitignore syntax (each applies to its own
//! directory and below; a deeper file wins) and `--exclude PATTERN`s (gitignore lines
//! relative to LOCAL). The same rules decide for remote paths, so an ignored path is left
//! alone on both sides. Hidden files are synced; `.gitignore` means nothing here.
//! What no transfer ever takes ([`left_out`]: a synced folder's `.vault-sync/`, wherever it
//! sits, and what unfinished downloads leave beside their targets), symlinks and other
//! non-regular files are skipped; `vault put -r` leaves out the same.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use vault_core::format::names::validate_segment;

use super::SyncError;
use super::state::{STATE_DIR, Stamp};
use crate::files::download::PART_DIR;

/// The per-directory ignore file.
pub const IGNORE_FILE: &str = ".vaultignore";
/// At most this many local files in one sync.
pub const MAX_FILES: usize = 1_000_000;

/// The ignore rules of one LOCAL.
#[derive(Clone, Debug)]
pub struct Rules {
    root: PathBuf,
    excludes: Gitignore,
    /// (directory relative to root, its `.vaultignore`), deepest last.
    files: Vec<(String, Gitignore)>,
}

impl Rules {
    /// Rules from `--exclude` patterns only (the `.vaultignore` files are added by the walk).
    pub fn new(root: &Path, excludes: &[String]) -> Result<Self, SyncError> {
        let mut builder = GitignoreBuilder::new(root);
        for pattern in excludes {
            builder.add_line(None, pattern).map_err(|e| {
                SyncError::Usage(format!("--exclude {pattern:?} is not a valid pattern: {e}"))
            })?;
        }
        let excludes = builder
            .build()
            .map_err(|e| SyncError::Usage(format!("the --exclude patterns are invalid: {e}")))?;
        Ok(Rules {
            root: root.to_path_buf(),
            excludes,
            files: Vec::new(),
        })
    }

    fn add_file(&mut self, dir: &str) -> Result<(), SyncError> {
        let dir_path = self.root.join(dir);
        let mut builder = GitignoreBuilder::new(&dir_path);
        let file = dir_path.join(IGNORE_FILE);
        if let Some(e) = builder.add(&file) {
            return Err(SyncError::Usage(format!("{}: {e}", file.display())));
        }
        let gi = builder
            .build()
            .map_err(|e| SyncError::Usage(format!("{}: {e}", file.display())))?;
        self.files.push((dir.to_owned(), gi));
        Ok(())
    }

    /// Whether the relative path `rel` (or a directory above it) is ignored.
    pub fn ignored(&self, rel: &str, is_dir: bool) -> bool {
        if rel.split('/').any(left_out) {
            return true;
        }
        let full = self.root.join(rel);
        if self
            .excludes
            .matched_path_or_any_parents(&full, is_dir)
            .is_ignore()
        {
            return true;
        }
        for (dir, gi) in self.files.iter().rev() {
            let applies = dir.is_empty() || rel.starts_with(&format!("{dir}/"));
            if !applies {
                continue;
            }
            let m = gi.matched_path_or_any_parents(&full, is_dir);
            if m.is_ignore() {
                return true;
            }
            if m.is_whitelist() {
                return false;
            }
        }
        false
    }
}

/// What the walk found.
#[derive(Debug)]
pub struct Scan {
    pub rules: Rules,
    /// Regular files by relative path.
    pub files: BTreeMap<String, Stamp>,
    /// Entries left out, with why (symlinks, names the vault can't store).
    pub skipped: Vec<(String, String)>,
}

/// The stamp of a regular file, `None` when nothing (or not a regular file) is there.
pub fn stamp(path: &Path) -> Result<Option<Stamp>, SyncError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(stamp_of(&m))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SyncError::io("read", path, e)),
    }
}

fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    Stamp {
        size: m.len(),
        mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
    }
}

/// Whether an entry named `name` is left out of every transfer, wherever it sits: the
/// state of a synced folder (`.vault-sync/`: its state, journal, lock, downloads and local
/// trash), and what unfinished downloads leave beside their targets (the `.vault-part/`
/// folder, and the `.NAME.vault-part` files and their `.json` sidecars of earlier
/// versions).
pub fn left_out(name: &str) -> bool {
    name == STATE_DIR
        || name == PART_DIR
        || name.starts_with('.')
            && (name.ends_with(".vault-part") || name.ends_with(".vault-part.json"))
}

/// Walks `root` with `excludes` and the `.vaultignore` files found on the way.
pub fn scan(root: &Path, excludes: &[String]) -> Result<Scan, SyncError> {
    let meta = std::fs::metadata(root).map_err(|e| SyncError::io("read", root, e))?;
    if !meta.is_dir() {
        return Err(SyncError::Usage(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let mut out = Scan {
        rules: Rules::new(root, excludes)?,
        files: BTreeMap::new(),
        skipped: Vec::new(),
    };
    walk(root, "", &mut out)?;
    Ok(out)
}

fn walk(root: &Path, dir: &str, out: &mut Scan) -> Result<(), SyncError> {
    let path = root.join(dir);
    if std::fs::symlink_metadata(path.join(IGNORE_FILE)).is_ok_and(|m| m.is_file())
        && !out.rules.ignored(&join(dir, IGNORE_FILE), false)
    {
        out.rules.add_file(dir)?;
    }
    let mut entries: Vec<_> = std::fs::read_dir(&path)
        .map_err(|e| SyncError::io("read", &path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| SyncError::io("read", &path, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Ok(name) = entry.file_name().into_string() else {
            let shown = entry.path().display().to_string();
            out.skipped.push((shown, "the name is not UTF-8".into()));
            continue;
        };
        let rel = join(dir, &name);
        let kind = entry
            .file_type()
            .map_err(|e| SyncError::io("read", entry.path(), e))?;
        if left_out(&name) || out.rules.ignored(&rel, kind.is_dir()) {
            continue;
        }
        if let Err(e) = validate_segment(&name) {
            out.skipped
                .push((rel, format!("the vault can't store this name: {e}")));
            continue;
        }
        if kind.is_dir() {
            walk(root, &rel, out)?;
        } else if kind.is_file() {
            let m = entry
                .metadata()
                .map_err(|e| SyncError::io("read", entry.path(), e))?;
            out.files.insert(rel, stamp_of(&m));
            if out.files.len() > MAX_FILES {
                return Err(SyncError::Usage(format!(
                    "more than {MAX_FILES} files under {}; sync subdirectories one by one",
                    root.display()
                )));
            }
        } else {
            out.skipped
                .push((rel, "not a regular file or directory".into()));
        }
    }
    Ok(())
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn walks_with_vaultignore_and_excludes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        write(root, "a.txt", "a");
        write(root, ".hidden", "h");
        write(root, ".gitignore", "a.txt\n");
        write(root, ".vaultignore", "*.log\nbuild/\n");
        write(root, "x.log", "l");
        write(root, "build/out.o", "o");
        write(root, "src/main.rs", "m");
        write(root, "src/.vaultignore", "!keep.log\nsecret*\n");
        write(root, "src/keep.log", "k");
        write(root, "src/secret.txt", "s");
        write(root, "tmp/scratch", "t");
        write(root, ".vault-sync/state.json", "{}");
        write(root, "sub/.f.vault-part", "p");
        write(root, "sub/.vault-part/0123abcd", "p");
        write(root, "sub/.vault-part/0123abcd.json", "{}");
        write(root, "nested/.vault-sync/lock", "");
        let scan = scan(root, &["tmp".to_owned()]).expect("scan");
        let names: Vec<&str> = scan.files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                ".gitignore",
                ".hidden",
                ".vaultignore",
                "a.txt",
                "src/.vaultignore",
                "src/keep.log",
                "src/main.rs"
            ]
        );
        // The same rules answer for remote paths.
        let rules = &scan.rules;
        assert!(rules.ignored("build/deep/x.o", false));
        assert!(rules.ignored("deep/y.log", false));
        assert!(!rules.ignored("src/keep.log", false));
        assert!(rules.ignored("src/secret.md", false));
        assert!(
            !rules.ignored("secret.md", false),
            "src's rules stay in src"
        );
        assert!(rules.ignored("tmp/new", false));
        assert!(rules.ignored(".vault-sync/state.json", false));
        assert!(rules.ignored("nested/.vault-sync/lock", false));
        assert!(rules.ignored("sub/.vault-part/0123abcd", false));
        assert!(!rules.ignored("docs/a.txt", false));
    }

    #[test]
    fn symlinks_are_skipped_and_reported() {
        let tmp = tempfile::tempdir().expect("tmp");
        write(tmp.path(), "real", "r");
        std::os::unix::fs::symlink(tmp.path().join("real"), tmp.path().join("link"))
            .expect("symlink");
        let scan = scan(tmp.path(), &[]).expect("scan");
        assert_eq!(scan.files.keys().collect::<Vec<_>>(), ["real"]);
        assert_eq!(scan.skipped.len(), 1);
        assert_eq!(scan.skipped[0].0, "link");
    }

    #[test]
    fn a_bad_exclude_pattern_is_a_usage_error() {
        let tmp = tempfile::tempdir().expect("tmp");
        let e = scan(tmp.path(), &["{a,b".to_owned()]).expect_err("bad glob");
        assert!(e.to_string().contains("--exclude"), "{e}");
    }
}
