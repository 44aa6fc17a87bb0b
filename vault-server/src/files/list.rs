//! `list` (a directory, or with `recursive` everything under it, in pages sorted by
//! encrypted path, between two optional bounds) and `stat` (one entry; the root is a
//! directory that always exists).

use vault_core::proto::{ApiError, EntryInfo, EntryKind, NsRef, Response};

use super::{info, paths};
use crate::db::files::entries;
use crate::db::files::listing::{self, Scope};
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

pub async fn list(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    dir: String,
    recursive: bool,
    (after, before): (Option<String>, Option<String>),
) -> Result<Response, ApiError> {
    paths::check(&dir)?;
    for bound in after.iter().chain(&before) {
        paths::check(bound)?;
    }
    let ns = super::namespace(state, session, ns).await?;
    super::read(state, move |c| {
        if !dir.is_empty() {
            let entry = entries::visible_at(c, ns.id, &dir)?
                .ok_or_else(|| ApiError::not_found("no such file or folder"))?;
            if !entry.is_dir() {
                // `ls FILE` lists the file itself, as `ls` does.
                let entries = if after.is_none() {
                    info::entry_infos(c, &[entry])?
                } else {
                    Vec::new()
                };
                return Ok(Response::Listing {
                    entries,
                    next: None,
                });
            }
        }
        let limit = info::PAGE_ENTRIES as i64 + 1;
        let scope = if recursive {
            Scope::Subtree(&dir)
        } else {
            Scope::Children(&dir)
        };
        let range = (after.as_deref(), before.as_deref());
        let mut rows = listing::page(c, ns.id, scope, range, limit)?;
        let take = info::page_len(rows.iter().map(|(e, _, _)| e.path.as_str()));
        let more = rows.len() > take;
        rows.truncate(take);
        let next = more
            .then(|| rows.last().map(|(e, _, _)| e.path.clone()))
            .flatten();
        Ok(Response::Listing {
            entries: rows.into_iter().map(info::listed_info).collect(),
            next,
        })
    })
    .await
}

pub async fn stat(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    path: String,
) -> Result<Response, ApiError> {
    paths::check(&path)?;
    let ns = super::namespace(state, session, ns).await?;
    super::read(state, move |c| {
        if path.is_empty() {
            return Ok(Response::Entry(EntryInfo {
                id: 0,
                path: String::new(),
                kind: EntryKind::Dir,
                current: None,
                version_count: 0,
                revision: ns.revision.max(0) as u64,
                updated_at: ns.created_at,
            }));
        }
        let entry = entries::visible_at(c, ns.id, &path)?
            .ok_or_else(|| ApiError::not_found("no such file or folder"))?;
        Ok(Response::Entry(info::entry_info(c, &entry)?))
    })
    .await
}
