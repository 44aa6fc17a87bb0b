//! The remote side of a sync: the files under REMOTE as of the latest revision. The first
//! run (and any run after the server says `resync`) reads a full recursive listing; later
//! runs apply `changes since REV` to the view saved in the state, so they cost O(changes).
//! Changes are matched by entry id, so a rename or a delete moves or drops the old path.
//! Entries outside REMOTE are ignored (after dropping their old path if they moved out).

use std::collections::{BTreeMap, HashMap};

use vault_core::proto::{ChangeCursor, EntryKind, Request, Response};

use super::SyncError;
use super::state::{RemoteFile, SyncState};
use crate::files::remote::Entry;
use crate::files::{Files, FilesError, RemotePath, unexpected};

/// One page of the change feed.
struct Page {
    revision: u64,
    changes: Vec<vault_core::proto::Change>,
    next: Option<ChangeCursor>,
    resync: bool,
}

async fn changes_page(
    files: &Files,
    root: &RemotePath,
    since: u64,
    after: Option<ChangeCursor>,
) -> Result<Page, FilesError> {
    let request = Request::Changes {
        ns: root.ns.clone(),
        since,
        after,
    };
    match files.call(&request).await? {
        Response::Changes {
            revision,
            changes,
            next,
            resync,
        } => Ok(Page {
            revision,
            changes,
            next,
            resync,
        }),
        other => Err(unexpected("changes", &other)),
    }
}

/// The relative path of `segments` under `root`, if it lies strictly below it.
fn relative(root: &RemotePath, segments: &[String]) -> Option<String> {
    let depth = root.segments.len();
    if segments.len() <= depth || segments[..depth] != root.segments[..] {
        return None;
    }
    Some(segments[depth..].join("/"))
}

fn remote_file(entry: &Entry) -> Option<RemoteFile> {
    let (v, meta) = entry.current.as_ref()?;
    Some(RemoteFile {
        id: entry.id,
        version: v.version,
        size: meta.size,
        blake3: Some(hex::encode(meta.blake3)),
        mtime_ns: Some(meta_mtime_ns(meta)),
    })
}

fn meta_mtime_ns(meta: &vault_core::format::FileMeta) -> i64 {
    meta.mtime_s
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(meta.mtime_ns))
}

/// Reads everything under `root` and the revision it is complete up to.
async fn full_listing(
    files: &Files,
    root: &RemotePath,
) -> Result<(u64, BTreeMap<String, RemoteFile>), SyncError> {
    // The revision first: whatever changes during the listing comes again next time.
    let revision = changes_page(files, root, u64::MAX, None).await?.revision;
    let mut view = BTreeMap::new();
    let entries = match files.stat(root).await? {
        Some(e) if e.is_dir() => files.list(root, true).await?,
        Some(_) => {
            return Err(SyncError::Usage(format!(
                "{root} is a file; sync needs a remote folder"
            )));
        }
        None => Vec::new(),
    };
    for entry in entries {
        if let (Some(rel), Some(file)) = (relative(root, &entry.path.segments), remote_file(&entry))
        {
            view.insert(rel, file);
        }
    }
    Ok((revision, view))
}

/// Brings `state.remote_files` and `state.revision` up to date.
pub async fn refresh(
    files: &Files,
    root: &RemotePath,
    state: &mut SyncState,
) -> Result<(), SyncError> {
    if state.revision == 0 {
        let (revision, view) = full_listing(files, root).await?;
        state.revision = revision;
        state.remote_files = view;
        return Ok(());
    }
    let mut by_id: HashMap<i64, String> = state
        .remote_files
        .iter()
        .map(|(path, f)| (f.id, path.clone()))
        .collect();
    let mut view = state.remote_files.clone();
    let mut after = None;
    let revision = loop {
        let page = changes_page(files, root, state.revision, after).await?;
        if page.resync {
            let (revision, view) = full_listing(files, root).await?;
            state.revision = revision;
            state.remote_files = view;
            return Ok(());
        }
        // Versions under a generation the cached keys lack: the key was rotated.
        let named = page
            .changes
            .iter()
            .filter_map(|c| c.entry.current.as_ref().map(|v| v.generation));
        let keys = files.keys_with(&root.ns, named.collect::<Vec<_>>()).await?;
        for change in page.changes {
            let info = change.entry;
            if let Some(old) = by_id.remove(&info.id)
                && view.get(&old).is_some_and(|f| f.id == info.id)
            {
                view.remove(&old);
            }
            if change.deleted || info.kind != EntryKind::File {
                continue;
            }
            let segments = keys.decrypt_path(&info.path)?;
            let Some(rel) = relative(root, &segments) else {
                continue;
            };
            let Some(version) = info.current.as_ref() else {
                return Err(FilesError::Integrity(format!(
                    "the change feed lists file {} without a version",
                    info.id
                ))
                .into());
            };
            let (_, meta) = keys.open_version(info.id, version)?;
            by_id.insert(info.id, rel.clone());
            view.insert(
                rel,
                RemoteFile {
                    id: info.id,
                    version: version.version,
                    size: meta.size,
                    blake3: Some(hex::encode(meta.blake3)),
                    mtime_ns: Some(meta_mtime_ns(&meta)),
                },
            );
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break page.revision,
        }
    };
    state.revision = revision.max(state.revision);
    state.remote_files = view;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_lie_strictly_below_the_root() {
        let root = RemotePath::parse("/docs").expect("root");
        let s = |p: &str| p.split('/').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            relative(&root, &s("docs/a/b.txt")).as_deref(),
            Some("a/b.txt")
        );
        assert_eq!(relative(&root, &s("docs")), None);
        assert_eq!(relative(&root, &s("other/a")), None);
        assert_eq!(relative(&root, &s("docsx/a")), None);
        let top = RemotePath::root();
        assert_eq!(relative(&top, &s("a")).as_deref(), Some("a"));
    }
}
