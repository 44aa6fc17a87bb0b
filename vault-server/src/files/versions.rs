//! `versions` (the kept versions of a file, newest first) and `restore` (make a kept
//! version current again: no new version row, one new revision).

use vault_proto::proto::{ApiError, NsRef, Response};

use super::{Stamp, info, paths};
use crate::db::DbConn;
use crate::db::files::entries::{self, Entry};
use crate::db::files::versions;
use crate::error::Failure;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

fn visible_file(conn: &mut DbConn, ns: i64, path: &str) -> Result<Entry, Failure> {
    let entry =
        entries::visible_at(conn, ns, path)?.ok_or_else(|| ApiError::not_found("no such file"))?;
    if entry.is_dir() {
        return Err(ApiError::bad_request("this is a folder; only files have versions").into());
    }
    Ok(entry)
}

pub async fn versions(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    path: String,
) -> Result<Response, ApiError> {
    paths::check_not_root(&path, "list versions of")?;
    let ns = super::namespace(state, session, ns).await?;
    super::read(state, move |c| {
        let entry = visible_file(c, ns.id, &path)?;
        let kept = versions::for_entry(c, entry.id)?;
        Ok(Response::Versions {
            file_id: entry.id,
            current: entry.current_version.unwrap_or(0).max(0) as u64,
            versions: kept.iter().map(info::version_info).collect(),
        })
    })
    .await
}

pub async fn restore(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    path: String,
    version: u64,
) -> Result<Response, ApiError> {
    paths::check_not_root(&path, "restore")?;
    let wanted = i64::try_from(version).unwrap_or(i64::MAX);
    let ns = super::namespace(state, session, ns).await?;
    super::write(state, ns.id, move |c, ns| {
        let entry = visible_file(c, ns.id, &path)?;
        if versions::get(c, entry.id, wanted)?.is_none() {
            return Err(ApiError::not_found(format!(
                "version {wanted} of this file is not kept; see `vault versions`"
            ))
            .into());
        }
        if entry.current_version != Some(wanted) {
            let mut stamp = Stamp::new(ns.id);
            let revision = stamp.revision(c)?;
            entries::set_current(c, entry.id, wanted, revision, stamp.now)?;
        }
        let row = entries::by_id(c, entry.id)?.ok_or_else(ApiError::internal)?;
        Ok(Response::Entry(info::entry_info(c, &row)?))
    })
    .await
}
