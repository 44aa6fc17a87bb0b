//! `list` (a directory, or with `recursive` everything under it, in pages sorted by
//! encrypted path, between two optional bounds) and `stat` (one entry; the root is a
//! directory that always exists).
//!
//! A page is at most 1000 entries and 768 KiB (`info`). Each page is one query that walks
//! the covering index of live children (`entries_by_parent`) in path order, joined with the
//! current version and the version count and reading only the columns shown; a listing of
//! names only (`ls` without `-l`) reads the index alone (`db/files/listing.rs`).

use vault_proto::proto::{ApiError, EntryInfo, EntryKind, NsRef, Response};

use super::{info, paths};
use crate::db::files::entries;
use crate::db::files::listing::{self, PageQuery, Scope};
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

/// What a `list` request asks for.
pub struct ListRequest {
    /// The encrypted path of the directory (`""`: the root).
    pub dir: String,
    /// Everything under `dir`, not only its children.
    pub recursive: bool,
    /// Only paths that sort after this one (the previous page's `next`).
    pub after: Option<String>,
    /// Only paths that sort before this one.
    pub before: Option<String>,
    /// The entries without their versions (files without `current`).
    pub names_only: bool,
}

pub async fn list(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    request: ListRequest,
) -> Result<Response, ApiError> {
    let ListRequest {
        dir,
        recursive,
        after,
        before,
        names_only,
    } = request;
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
        let page = PageQuery {
            ns: ns.id,
            scope: if recursive {
                Scope::Subtree(&dir)
            } else {
                Scope::Children(&dir)
            },
            after: after.as_deref(),
            before: before.as_deref(),
            limit: info::PAGE_ENTRIES as i64 + 1,
        };
        let (entries, next) = if names_only {
            let rows = listing::names_page(c, &page)?;
            let (rows, next) = one_page(rows, |e| &e.path);
            (rows.into_iter().map(info::named_info).collect(), next)
        } else {
            let rows = listing::page(c, &page)?;
            let (rows, next) = one_page(rows, |(e, _, _)| &e.path);
            (rows.into_iter().map(info::listed_info).collect(), next)
        };
        Ok(Response::Listing { entries, next })
    })
    .await
}

/// The rows of `rows` that fit in one page, and the cursor of the next page if some are
/// left over (`rows` holds one more than a page can, when there are more).
fn one_page<T>(mut rows: Vec<T>, path: impl Fn(&T) -> &String) -> (Vec<T>, Option<String>) {
    let take = info::page_len(rows.iter().map(|r| path(r).as_str()));
    let more = rows.len() > take;
    rows.truncate(take);
    let next = more.then(|| rows.last().map(|r| path(r).clone())).flatten();
    (rows, next)
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
