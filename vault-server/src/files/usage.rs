//! `usage`: bytes used (ciphertext stored, each chunk once, trash included) against the
//! quota, what the versions would take stored whole, with counts of files, folders, versions and deletions, and the current revision.

use vault_proto::proto::{ApiError, NsRef, Response, Usage};

use crate::db::files::{entries, trash, versions};
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

pub async fn usage(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
) -> Result<Response, ApiError> {
    let ns = super::namespace(state, session, ns).await?;
    super::read(state, move |c| {
        let quota = super::quota_of(c, &ns)?;
        let (files, dirs) = entries::live_counts(c, ns.id)?;
        Ok(Response::Usage(Usage {
            used_bytes: ns.used_bytes.max(0) as u64,
            logical_bytes: versions::logical_bytes(c, ns.id)?,
            quota_bytes: quota.max(0) as u64,
            files,
            dirs,
            versions: versions::count_in_namespace(c, ns.id)?,
            trash_items: trash::count(c, ns.id)?,
            revision: ns.revision.max(0) as u64,
        }))
    })
    .await
}
