//! The trash: `trash_list`, `trash_restore` (back to the old path, recreating missing
//! parents; refused if something lives there now) and `trash_empty` (hard delete: blob ids
//! to `deleted_blobs`, bytes off the quota, `purged_revision` set).

use vault_proto::proto::{ApiError, EntryKind, NsRef, Response, TrashItem, parent_of};

use super::{Stamp, info, tree};
use crate::db::files::{KIND_DIR, entries, trash};
use crate::maintenance::purge;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

/// At most this many deletions in a `trash_list` answer (the newest).
const MAX_TRASH_ITEMS: i64 = 1000;

pub async fn list(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
) -> Result<Response, ApiError> {
    let ns = super::namespace(state, session, ns).await?;
    super::read(state, move |c| {
        let rows = trash::list(c, ns.id, MAX_TRASH_ITEMS)?;
        let take = info::page_len(rows.iter().map(|r| r.path.as_str()));
        let items = rows[..take]
            .iter()
            .map(|r| TrashItem {
                trash_id: r.id,
                path: r.path.clone(),
                kind: if r.kind == KIND_DIR {
                    EntryKind::Dir
                } else {
                    EntryKind::File
                },
                entries: r.entries.max(0) as u64,
                sealed_bytes: r.sealed_bytes.max(0) as u64,
                trashed_at: r.trashed_at,
            })
            .collect();
        Ok(Response::Trash { items })
    })
    .await
}

pub async fn restore(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    trash_id: i64,
) -> Result<Response, ApiError> {
    let ns = super::namespace(state, session, ns).await?;
    super::write(state, ns.id, move |c, ns| {
        let item = trash::get(c, ns.id, trash_id)?
            .ok_or_else(|| ApiError::not_found("no such item in the trash"))?;
        if entries::any_live_at_or_under(c, ns.id, &item.path)? {
            return Err(ApiError::conflict(
                "something now lives at the deleted item's path; move it away first",
            )
            .into());
        }
        let mut stamp = Stamp::new(ns.id);
        tree::ensure_dir(c, ns.id, parent_of(&item.path), &mut stamp)?;
        let revision = stamp.revision(c)?;
        entries::untrash(c, item.id, revision, stamp.now)?;
        trash::delete(c, item.id)?;
        let row = entries::by_id(c, item.root_entry_id)?.ok_or_else(ApiError::internal)?;
        Ok(Response::Entry(info::entry_info(c, &row)?))
    })
    .await
}

pub async fn empty(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
) -> Result<Response, ApiError> {
    let ns = super::namespace(state, session, ns).await?;
    let purged = super::write(state, ns.id, move |c, ns| {
        let ids = trash::ids_before(c, ns.id, i64::MAX)?;
        Ok(purge::purge_trash(c, ns.id, &ids, crate::db::now())?)
    })
    .await?;
    let partials = purged.partials.iter().map(|id| id.as_str().to_owned());
    tree::remove_partials(state, partials.collect()).await;
    Ok(Response::TrashEmptied {
        items: purged.trash_items,
        sealed_bytes: purged.bytes.max(0) as u64,
    })
}
