//! The shape of the tree: `mkdir` (with missing parents), `remove` (to the trash, one
//! trash row per deletion) and `move` (a rename of an entry and, for a directory, of every
//! entry under it, whose encrypted names the client recomputed).

use std::collections::{HashMap, HashSet};

use vault_proto::proto::{ApiError, NsRef, Rename, Response, parent_of};

use super::{Stamp, info, paths};
use crate::db::DbConn;
use crate::db::files::entries::{self, Entry};
use crate::db::files::{KIND_DIR, trash, uploads, versions};
use crate::error::Failure;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

/// At most this many renames in one `move` (a frame holds far fewer anyway).
const MAX_RENAMES: usize = 100_000;

/// Makes sure `dir` and all its ancestors exist as directories, creating the missing
/// ones. A file (or an unfinished upload) on the way is a conflict.
pub fn ensure_dir(conn: &mut DbConn, ns: i64, dir: &str, stamp: &mut Stamp) -> Result<(), Failure> {
    if dir.is_empty() {
        return Ok(());
    }
    for path in paths::ancestors(dir).chain(std::iter::once(dir)) {
        match entries::live_at(conn, ns, path)? {
            Some(e) if e.is_dir() => {}
            Some(e) if e.is_visible() => {
                return Err(ApiError::conflict(
                    "a file is in the way: a folder on this path is a file (a file cannot contain others)",
                )
                .into());
            }
            Some(_) => {
                return Err(ApiError::conflict(
                    "an upload to a file on this path is in progress; wait for it to finish",
                )
                .into());
            }
            None => {
                let revision = stamp.revision(conn)?;
                entries::insert(conn, ns, path, KIND_DIR, revision, stamp.now)?;
            }
        }
    }
    Ok(())
}

/// Removes the invisible rows of unfinished first uploads under `prefix` and those
/// uploads (they would otherwise commit into a tree that moved or went to the trash).
/// Returns the partial blob ids for the caller to drop after commit.
fn drop_pending(conn: &mut DbConn, rows: &mut Vec<Entry>) -> Result<Vec<String>, Failure> {
    let pending: Vec<i64> = rows
        .iter()
        .filter(|e| !e.is_visible())
        .map(|e| e.id)
        .collect();
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let partials = uploads::delete_for_entries(conn, &pending)?;
    entries::delete(conn, &pending)?;
    rows.retain(Entry::is_visible);
    Ok(partials)
}

/// Best effort: removes partial blobs of uploads that were dropped (gc would otherwise).
pub async fn remove_partials(state: &ServerState, partials: Vec<String>) {
    if partials.is_empty() {
        return;
    }
    let blobs = std::sync::Arc::clone(&state.blobs);
    let _ = tokio::task::spawn_blocking(move || {
        for id in partials
            .iter()
            .filter_map(|p| crate::blobs::BlobId::parse(p))
        {
            if let Err(e) = blobs.remove_partial(&id) {
                tracing::warn!(error = %e, blob = %id, "could not remove a dropped partial");
            }
        }
    })
    .await;
}

pub async fn mkdir(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    path: String,
) -> Result<Response, ApiError> {
    paths::check_not_root(&path, "create")?;
    let ns = super::namespace(state, session, ns).await?;
    super::write(state, ns.id, move |c, ns| {
        let mut stamp = Stamp::new(ns.id);
        ensure_dir(c, ns.id, &path, &mut stamp)?;
        let row = entries::live_at(c, ns.id, &path)?.ok_or_else(ApiError::internal)?;
        Ok(Response::Entry(info::entry_info(c, &row)?))
    })
    .await
}

pub async fn remove(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    path: String,
    recursive: bool,
) -> Result<Response, ApiError> {
    paths::check_not_root(&path, "remove")?;
    let ns = super::namespace(state, session, ns).await?;
    let (response, partials) = super::write(state, ns.id, move |c, ns| {
        let root = entries::visible_at(c, ns.id, &path)?
            .ok_or_else(|| ApiError::not_found("no such file or folder"))?;
        let mut rows = vec![root.clone()];
        let mut partials = Vec::new();
        if root.is_dir() {
            let mut under = entries::live_under(c, ns.id, &path)?;
            partials = drop_pending(c, &mut under)?;
            if !under.is_empty() && !recursive {
                return Err(ApiError::conflict(
                    "the folder is not empty; use -r to remove it with everything in it",
                )
                .into());
            }
            rows.extend(under);
        }
        let ids: Vec<i64> = rows.iter().map(|e| e.id).collect();
        let sealed_bytes: i64 = versions::blobs_of(c, &ids)?.iter().map(|b| b.1).sum();
        let mut stamp = Stamp::new(ns.id);
        let revision = stamp.revision(c)?;
        let trash_id = trash::insert(
            c,
            &trash::NewTrash {
                namespace_id: ns.id,
                root_entry_id: root.id,
                path: &root.path,
                kind: &root.kind,
                entries: rows.len() as i64,
                sealed_bytes,
                trashed_at: stamp.now,
            },
        )?;
        entries::set_trashed(c, &ids, trash_id, revision, stamp.now)?;
        Ok((
            Response::Trashed {
                trash_id,
                entries: rows.len() as u64,
            },
            partials,
        ))
    })
    .await?;
    remove_partials(state, partials).await;
    Ok(response)
}

/// A checked move: the moved entry, each descendant with its new path, and the partial
/// blobs of unfinished first uploads that the move dropped.
type CheckedMove = (Entry, Vec<(Entry, String)>, Vec<String>);

/// Checks a `move` request against the tree: the first rename is a visible entry, the
/// rest are exactly its live descendants, each under the new path of its parent.
fn check_renames(conn: &mut DbConn, ns: i64, renames: &[Rename]) -> Result<CheckedMove, Failure> {
    let first = &renames[0];
    let moved = entries::visible_at(conn, ns, &first.from)?
        .ok_or_else(|| ApiError::not_found("no such file or folder to move"))?;
    if entries::live_at(conn, ns, &first.to)?.is_some() {
        return Err(ApiError::conflict(
            "the destination already exists; remove it or pick another name",
        )
        .into());
    }
    let dest_parent = parent_of(&first.to);
    if !dest_parent.is_empty() {
        match entries::visible_at(conn, ns, dest_parent)? {
            Some(e) if e.is_dir() => {}
            Some(_) => {
                return Err(ApiError::conflict("the destination's parent is a file").into());
            }
            None => {
                return Err(ApiError::not_found("the destination folder does not exist").into());
            }
        }
    }
    let mut under = if moved.is_dir() {
        entries::live_under(conn, ns, &first.from)?
    } else {
        Vec::new()
    };
    let partials = drop_pending(conn, &mut under)?;
    let rest = &renames[1..];
    if rest.len() != under.len() {
        return Err(ApiError::bad_request(format!(
            "the move must rename the entry and each of its {} descendants exactly once; \
             {} renames were sent",
            under.len(),
            rest.len()
        ))
        .into());
    }
    let mut new_path: HashMap<&str, &str> = HashMap::new();
    new_path.insert(&first.from, &first.to);
    let mut by_path: HashMap<&str, &Entry> = under.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut targets: HashSet<&str> = HashSet::new();
    let mut plan = Vec::with_capacity(rest.len());
    // Parents come before children: sort the renames by depth of `from`.
    let mut ordered: Vec<&Rename> = rest.iter().collect();
    ordered.sort_by_key(|r| r.from.matches('/').count());
    for r in ordered {
        paths::check(&r.to)?;
        let entry = by_path.remove(r.from.as_str()).ok_or_else(|| {
            ApiError::bad_request(
                "a rename names an entry that is not under the moved folder (or names one twice)",
            )
        })?;
        let expected_parent = new_path.get(parent_of(&r.from)).copied();
        if expected_parent != Some(parent_of(&r.to)) || r.to.is_empty() {
            return Err(ApiError::bad_request(
                "a rename does not put an entry under the new path of its parent",
            )
            .into());
        }
        if !targets.insert(r.to.as_str()) {
            return Err(ApiError::bad_request("two renames have the same destination").into());
        }
        new_path.insert(&r.from, &r.to);
        plan.push((entry.clone(), r.to.clone()));
    }
    Ok((moved, plan, partials))
}

pub async fn rename(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    renames: Vec<Rename>,
) -> Result<Response, ApiError> {
    let Some(first) = renames.first() else {
        return Err(ApiError::bad_request("a move needs at least one rename"));
    };
    if renames.len() > MAX_RENAMES {
        return Err(ApiError::bad_request(format!(
            "a move renames at most {MAX_RENAMES} entries"
        )));
    }
    paths::check_not_root(&first.from, "move")?;
    paths::check_not_root(&first.to, "replace")?;
    if first.from == first.to {
        return Err(ApiError::bad_request(
            "the source and the destination are the same",
        ));
    }
    if paths::is_under(&first.to, &first.from) {
        return Err(ApiError::bad_request("cannot move a folder into itself"));
    }
    for r in &renames {
        paths::check(&r.from)?;
        paths::check(&r.to)?;
    }
    let ns = super::namespace(state, session, ns).await?;
    let (response, partials) = super::write(state, ns.id, move |c, ns| {
        let (moved, plan, partials) = check_renames(c, ns.id, &renames)?;
        let mut stamp = Stamp::new(ns.id);
        let revision = stamp.revision(c)?;
        // New paths are at or under a destination that was checked to be free, so none
        // of them can equal a path being renamed away.
        entries::rename(c, moved.id, &renames[0].to, revision, stamp.now)?;
        for (entry, to) in &plan {
            entries::rename(c, entry.id, to, revision, stamp.now)?;
        }
        let row = entries::by_id(c, moved.id)?.ok_or_else(ApiError::internal)?;
        Ok((Response::Entry(info::entry_info(c, &row)?), partials))
    })
    .await?;
    remove_partials(state, partials).await;
    Ok(response)
}
