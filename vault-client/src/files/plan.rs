//! What `put` and `get` will do, decided before anything moves: the `cp` target rule (a
//! target that ends in `/` or names an existing directory receives the sources under
//! their own names; otherwise the single source is stored under the target name), except
//! that a directory an earlier run of the same command made is continued into
//! ([`super::rerun`]); `-r` for trees; the walk of local and remote trees, which leaves
//! out what sync leaves out ([`crate::sync::scan::left_out`]); and what the other side
//! already holds at each destination, so that files already the same are skipped
//! ([`super::unchanged`]) and directories already there are not made again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::leftovers::abort_leftovers;
use super::remote::Entry;
use super::rerun::{Command, MadeDir, TargetNotes};
use super::unchanged::CurrentVersion;
use super::upload::LocalFile;
use super::{Files, FilesError, RemotePath};
use crate::sync::scan::left_out;

/// At most this many entries in one transfer.
pub const MAX_PLAN_ENTRIES: usize = 1_000_000;
/// Up to this many sources put into an existing directory are looked up one by one;
/// more, and the directory is listed.
const STAT_EACH_MAX: usize = 8;

#[derive(Clone, Debug)]
pub struct PutItem {
    pub local: PathBuf,
    pub remote: RemotePath,
    pub size: u64,
    /// The current version of the remote file at `remote`, if there is one.
    pub current: Option<CurrentVersion>,
}

/// Directories to create (parents first) and files to upload.
#[derive(Clone, Debug, Default)]
pub struct PutPlan {
    /// The directories that are not there yet.
    pub dirs: Vec<RemotePath>,
    pub files: Vec<PutItem>,
    /// Local entries that are neither files nor directories (symlinks, sockets…).
    pub skipped: Vec<PathBuf>,
    /// The target this command makes (one of `dirs`), to be noted once it exists so that
    /// a re-run continues into it ([`super::rerun`]).
    pub made_target: Option<(Command, RemotePath)>,
}

impl PutPlan {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

#[derive(Clone, Debug)]
pub struct GetItem {
    pub remote: RemotePath,
    pub local: PathBuf,
    pub size: u64,
    /// The remote file's current version, as listed.
    pub current: Option<CurrentVersion>,
}

/// Local directories to create (parents first) and files to download.
#[derive(Clone, Debug, Default)]
pub struct GetPlan {
    pub dirs: Vec<PathBuf>,
    pub files: Vec<GetItem>,
    /// The target this command makes (one of `dirs`), to be noted once it exists so that
    /// a re-run continues into it ([`super::rerun`]).
    pub made_target: Option<(Command, PathBuf)>,
}

impl GetPlan {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The name a local source is stored under.
fn local_name(source: &Path) -> Result<String, FilesError> {
    let name = match source.file_name() {
        Some(n) => n.to_owned(),
        None => std::fs::canonicalize(source)
            .map_err(|e| FilesError::io("read", source, e))?
            .file_name()
            .map(ToOwned::to_owned)
            .ok_or_else(|| {
                FilesError::Usage(format!(
                    "{} has no name to store it under; name a remote target",
                    source.display()
                ))
            })?,
    };
    name.into_string().map_err(|n| {
        FilesError::Usage(format!(
            "{:?} is not valid UTF-8 and can't be stored as a remote name",
            n
        ))
    })
}

fn too_many() -> FilesError {
    FilesError::Usage(format!(
        "more than {MAX_PLAN_ENTRIES} entries in one transfer; transfer subdirectories one by one"
    ))
}

/// What the remote side holds where a put writes: directories, and files with their
/// current versions, by plaintext segments.
#[derive(Debug, Default)]
struct RemoteTree {
    dirs: HashSet<Vec<String>>,
    files: HashMap<Vec<String>, CurrentVersion>,
}

impl RemoteTree {
    fn add(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            if entry.is_dir() {
                self.dirs.insert(entry.path.segments);
            } else if let Some(current) = CurrentVersion::of(&entry) {
                self.files.insert(entry.path.segments, current);
            }
        }
    }

    fn has_dir(&self, path: &RemotePath) -> bool {
        self.dirs.contains(&path.segments)
    }

    fn current(&self, path: &RemotePath) -> Option<CurrentVersion> {
        self.files.get(&path.segments).copied()
    }
}

/// Plans `put SOURCES… TARGET`.
pub async fn plan_put(
    files: &Files,
    sources: &[PathBuf],
    target: &RemotePath,
    recursive: bool,
) -> Result<PutPlan, FilesError> {
    // Before the remote side is read: a batch a killed earlier run left in flight must not
    // commit after this plan took its files for missing.
    abort_leftovers(files).await?;
    let existing = files.stat(target).await?;
    let target_is_dir = existing.as_ref().map(Entry::is_dir);
    if target_is_dir == Some(false) && (sources.len() > 1 || target.dir_hint) {
        return Err(FilesError::Usage(format!(
            "{target} is a file, not a directory"
        )));
    }
    // One folder to a target without a trailing `/`: the folder becomes the target,
    // unless the target exists already and no earlier run of this command made it.
    let rerun = match sources {
        [one] if recursive && !target.dir_hint && one.is_dir() => {
            Some(Command::put(files, one, target)?)
        }
        _ => None,
    };
    let continued = match (&rerun, &existing) {
        (Some(command), Some(entry)) if entry.is_dir() => {
            TargetNotes::new(files.state()).made_by(command, MadeDir::Remote { id: entry.id })
        }
        _ => false,
    };
    let into_dir =
        !continued && (target.dir_hint || sources.len() > 1 || target_is_dir == Some(true));
    let mut plan = PutPlan::default();
    let mut known = RemoteTree::default();
    match existing {
        Some(entry) if entry.is_dir() => {
            known.dirs.insert(target.segments.clone());
            if !into_dir {
                // The folder itself: all of it.
                known.add(files.list(target, true).await?);
            } else if sources.len() > STAT_EACH_MAX {
                known.add(files.list(target, false).await?);
            } else {
                // A few sources into a directory that may hold many others.
                for source in sources {
                    let dest = target.join(&local_name(source)?)?;
                    known.add(files.stat(&dest).await?.into_iter().collect());
                }
            }
        }
        Some(entry) => known.add(vec![entry]),
        None if into_dir => plan.dirs.push(target.clone()),
        None => plan.made_target = rerun.map(|command| (command, target.clone())),
    }
    for source in sources {
        let meta = std::fs::metadata(source).map_err(|e| FilesError::io("read", source, e))?;
        let dest = if into_dir {
            target.join(&local_name(source)?)?
        } else {
            target.clone()
        };
        if meta.is_dir() {
            if !recursive {
                return Err(FilesError::Usage(format!(
                    "{} is a directory: use put -r to upload a tree",
                    source.display()
                )));
            }
            if !into_dir && target_is_dir == Some(false) {
                return Err(FilesError::Usage(format!(
                    "{target} is a file; cannot put the directory {} there",
                    source.display()
                )));
            }
            if !known.has_dir(&dest) {
                plan.dirs.push(dest.clone());
            } else if into_dir {
                known.add(files.list(&dest, true).await?);
            }
            walk_local(source, &dest, &known, &mut plan)?;
        } else if meta.is_file() {
            plan.files.push(PutItem {
                local: source.clone(),
                current: known.current(&dest),
                remote: dest,
                size: meta.len(),
            });
        } else {
            return Err(FilesError::Usage(format!(
                "{} is not a regular file or directory",
                source.display()
            )));
        }
    }
    Ok(plan)
}

fn walk_local(
    dir: &Path,
    remote: &RemotePath,
    known: &RemoteTree,
    plan: &mut PutPlan,
) -> Result<(), FilesError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| FilesError::io("read", dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| FilesError::io("read", dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if plan.dirs.len() + plan.files.len() + plan.skipped.len() > MAX_PLAN_ENTRIES {
            return Err(too_many());
        }
        if entry.file_name().to_str().is_some_and(left_out) {
            continue;
        }
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| FilesError::io("read", &path, e))?;
        if kind.is_dir() {
            let dest = remote.join(&local_name(&path)?)?;
            if !known.has_dir(&dest) {
                plan.dirs.push(dest.clone());
            }
            walk_local(&path, &dest, known, plan)?;
        } else if kind.is_file() {
            let size = LocalFile::stat(&path)?.size;
            let dest = remote.join(&local_name(&path)?)?;
            plan.files.push(PutItem {
                current: known.current(&dest),
                remote: dest,
                local: path,
                size,
            });
        } else {
            plan.skipped.push(path);
        }
    }
    Ok(())
}

/// Plans `get SOURCES… TARGET`; `target_slash` says the target was typed with a trailing `/`.
pub async fn plan_get(
    files: &Files,
    sources: &[RemotePath],
    target: &Path,
    target_slash: bool,
    recursive: bool,
) -> Result<GetPlan, FilesError> {
    let target_is_dir = target.is_dir();
    if target.exists() && !target_is_dir && (sources.len() > 1 || target_slash) {
        return Err(FilesError::Usage(format!(
            "{} is a file, not a directory",
            target.display()
        )));
    }
    let mut entries = Vec::with_capacity(sources.len());
    for source in sources {
        entries.push(files.stat_existing(source).await?);
    }
    // One folder to a target without a trailing `/`: the folder becomes the target,
    // unless the target exists already and no earlier run of this command made it.
    let rerun = match (sources, entries.as_slice()) {
        ([source], [entry]) if recursive && !target_slash && entry.is_dir() => {
            Some(Command::get(files, source, target)?)
        }
        _ => None,
    };
    let continued = match (&rerun, MadeDir::local(target)) {
        (Some(command), Some(found)) => TargetNotes::new(files.state()).made_by(command, found),
        _ => false,
    };
    let into_dir = !continued && (target_slash || sources.len() > 1 || target_is_dir);
    let mut plan = GetPlan::default();
    if into_dir && !target_is_dir {
        plan.dirs.push(target.to_path_buf());
    }
    if !target.exists() {
        plan.made_target = rerun.map(|command| (command, target.to_path_buf()));
    }
    for (source, entry) in sources.iter().zip(entries) {
        let base = match (into_dir, source.name()) {
            (true, Some(name)) => target.join(name),
            (true, None) => target.to_path_buf(),
            (false, _) => target.to_path_buf(),
        };
        if entry.is_dir() {
            if !recursive {
                return Err(FilesError::Usage(format!(
                    "{source} is a directory: use get -r to download a tree"
                )));
            }
            if base.exists() && !base.is_dir() {
                return Err(FilesError::Usage(format!(
                    "{} is a file; cannot get the directory {source} there",
                    base.display()
                )));
            }
            plan.dirs.push(base.clone());
            let depth = source.segments.len();
            for below in files.list(source, true).await? {
                if plan.dirs.len() + plan.files.len() > MAX_PLAN_ENTRIES {
                    return Err(too_many());
                }
                let mut local = base.clone();
                for segment in &below.path.segments[depth..] {
                    local.push(segment);
                }
                if below.is_dir() {
                    plan.dirs.push(local);
                } else {
                    plan.files.push(GetItem {
                        size: below.size(),
                        current: CurrentVersion::of(&below),
                        remote: below.path,
                        local,
                    });
                }
            }
        } else {
            plan.files.push(GetItem {
                size: entry.size(),
                current: CurrentVersion::of(&entry),
                remote: entry.path,
                local: base,
            });
        }
    }
    Ok(plan)
}
