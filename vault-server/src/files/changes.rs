//! The change feed (`changes since REV`): entries whose revision is above `since`, in
//! (revision, id) order and in pages, each as its current state (deleted = in the trash).
//! Rows that were hard-deleted after `since` cannot be listed: then `resync` is set.

use vault_proto::proto::{ApiError, Change, ChangeCursor, NsRef, Response};

use super::info;
use crate::db::files::entries;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

pub async fn changes(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    since: u64,
    after: Option<ChangeCursor>,
) -> Result<Response, ApiError> {
    let ns = super::namespace(state, session, ns).await?;
    let since = i64::try_from(since).unwrap_or(i64::MAX);
    // A cursor continues a page; one from before `since` cannot, so it starts over.
    let cursor = after.map(|c| (i64::try_from(c.revision).unwrap_or(i64::MAX), c.id));
    let (after_rev, after_id) = match cursor {
        Some((revision, id)) if revision >= since => (revision, id),
        _ => (since, i64::MAX),
    };
    super::read(state, move |c| {
        let limit = info::PAGE_ENTRIES as i64 + 1;
        let rows = entries::changes_page(c, ns.id, after_rev, after_id, limit)?;
        let take = info::page_len(rows.iter().map(|e| e.path.as_str()));
        let more = rows.len() > take;
        let page = &rows[..take];
        let next = if more {
            page.last().map(|e| ChangeCursor {
                revision: e.revision.max(0) as u64,
                id: e.id,
            })
        } else {
            None
        };
        let changes = info::entry_infos(c, page)?
            .into_iter()
            .zip(page)
            .map(|(entry, row)| Change {
                entry,
                deleted: row.trash_id.is_some(),
            })
            .collect();
        Ok(Response::Changes {
            revision: ns.revision.max(0) as u64,
            changes,
            next,
            resync: ns.purged_revision > since,
        })
    })
    .await
}
