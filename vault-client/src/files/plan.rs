//! What `put` and `get` will do, decided before anything moves: the `cp` target rule of
//! SPEC §3 (a target that ends in `/` or names an existing directory receives the sources
//! under their own names; otherwise the single source is stored under the target name),
//! `-r` for trees, and the walk of local and remote trees.

use std::path::{Path, PathBuf};

use super::remote::Entry;
use super::upload::LocalFile;
use super::{Files, FilesError, RemotePath};

/// At most this many entries in one transfer.
pub const MAX_PLAN_ENTRIES: usize = 1_000_000;

#[derive(Clone, Debug)]
pub struct PutItem {
    pub local: PathBuf,
    pub remote: RemotePath,
    pub size: u64,
}

/// Directories to create (parents first) and files to upload.
#[derive(Clone, Debug, Default)]
pub struct PutPlan {
    pub dirs: Vec<RemotePath>,
    pub files: Vec<PutItem>,
    /// Local entries that are neither files nor directories (symlinks, sockets…).
    pub skipped: Vec<PathBuf>,
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
}

/// Local directories to create (parents first) and files to download.
#[derive(Clone, Debug, Default)]
pub struct GetPlan {
    pub dirs: Vec<PathBuf>,
    pub files: Vec<GetItem>,
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

/// Plans `put SOURCES… TARGET`.
pub async fn plan_put(
    files: &Files,
    sources: &[PathBuf],
    target: &RemotePath,
    recursive: bool,
) -> Result<PutPlan, FilesError> {
    let existing = files.stat(target).await?;
    let target_is_dir = existing.as_ref().map(Entry::is_dir);
    if target_is_dir == Some(false) && (sources.len() > 1 || target.dir_hint) {
        return Err(FilesError::Usage(format!(
            "{target} is a file, not a directory"
        )));
    }
    let into_dir = target.dir_hint || sources.len() > 1 || target_is_dir == Some(true);
    let mut plan = PutPlan::default();
    if into_dir && existing.is_none() {
        plan.dirs.push(target.clone());
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
            plan.dirs.push(dest.clone());
            walk_local(source, &dest, &mut plan)?;
        } else if meta.is_file() {
            plan.files.push(PutItem {
                local: source.clone(),
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

fn walk_local(dir: &Path, remote: &RemotePath, plan: &mut PutPlan) -> Result<(), FilesError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| FilesError::io("read", dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| FilesError::io("read", dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if plan.dirs.len() + plan.files.len() + plan.skipped.len() > MAX_PLAN_ENTRIES {
            return Err(too_many());
        }
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| FilesError::io("read", &path, e))?;
        if kind.is_dir() {
            let dest = remote.join(&local_name(&path)?)?;
            plan.dirs.push(dest.clone());
            walk_local(&path, &dest, plan)?;
        } else if kind.is_file() {
            let size = LocalFile::stat(&path)?.size;
            plan.files.push(PutItem {
                remote: remote.join(&local_name(&path)?)?,
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
    let into_dir = target_slash || sources.len() > 1 || target_is_dir;
    let mut plan = GetPlan::default();
    if into_dir && !target_is_dir {
        plan.dirs.push(target.to_path_buf());
    }
    for source in sources {
        let entry = files.stat_existing(source).await?;
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
                        remote: below.path,
                        local,
                    });
                }
            }
        } else {
            plan.files.push(GetItem {
                size: entry.size(),
                remote: entry.path,
                local: base,
            });
        }
    }
    Ok(plan)
}
