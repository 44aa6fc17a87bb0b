//! File requests (docs/PROTOCOL.md §6.2): listing, directories, uploads, downloads, versions,
//! trash, usage and the change feed, over the tables of [`crate::db::files`] and the
//! [`crate::blobs::BlobStore`]. Paths are encrypted paths; the server compares them and
//! never builds a filesystem path from them.
//!
//! [`dispatch`] serves the requests that are one frame each way. `upload_data`,
//! `chunk_put`, `chunk_get` and `download` carry raw bytes on their stream and are served
//! by [`upload::receive`], [`chunks::put`], [`chunks::get`] and [`download::prepare`] +
//! [`download::send`], which the network layer calls with the stream. Small files can go up in batches instead (`small`):
//! `upload_open_many` then `upload_put_many`, the contents inside the frame.
//!
//! Every change runs in one transaction that first locks the namespace
//! ([`crate::db::files::namespaces::lock`]) and stamps what it changes with one new
//! revision ([`Stamp`]). Nothing a client uploads is visible before its commit, and no
//! blob file is deleted here: deleted versions' blobs go to `deleted_blobs` for `gc`.

mod changes;
pub mod chunks;
pub mod download;
mod info;
mod list;
pub mod paths;
pub mod small;
mod trash;
mod tree;
pub mod upload;
pub mod upload_hash;
mod usage;
mod versions;
pub mod watch;

use vault_proto::proto::{ApiError, ByteBuf, NsRef, Request, Response};

use crate::db::files::namespaces::{self, Namespace};
use crate::db::{self, DbConn};
use crate::error::Failure;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

/// Serves a one-frame file request for `session` (the session is already checked).
pub async fn dispatch(
    state: &ServerState,
    session: &SessionCtx,
    request: Request,
) -> Result<Response, ApiError> {
    match request {
        Request::List {
            ns,
            dir,
            recursive,
            after,
            before,
            names_only,
        } => {
            let request = list::ListRequest {
                dir,
                recursive,
                after,
                before,
                names_only,
            };
            list::list(state, session, &ns, request).await
        }
        Request::Stat { ns, path } => list::stat(state, session, &ns, path).await,
        Request::Mkdir { ns, path } => tree::mkdir(state, session, &ns, path).await,
        Request::UploadOpen {
            ns,
            path,
            sealed_size,
            chunk_bytes,
            batch,
            if_current,
        } => {
            let sizes = (sealed_size, chunk_bytes);
            upload::open(state, session, &ns, path, sizes, (batch, if_current)).await
        }
        Request::UploadStatus { upload_id } => upload::status(state, session, upload_id).await,
        Request::UploadCommit {
            upload_id,
            wrapped_key,
            sealed_meta,
            chunks,
        } => {
            let sealed = upload::Sealed {
                wrapped_key: wrapped_key.into_vec(),
                sealed_meta: sealed_meta.into_vec(),
                chunks: chunks.into_iter().map(ByteBuf::into_vec).collect(),
            };
            upload::commit(state, session, upload_id, sealed).await
        }
        Request::ChunksMissing { ns, ids } => chunks::missing(state, session, &ns, ids).await,
        Request::UploadAbort { upload_id } => upload::abort(state, session, upload_id).await,
        Request::UploadOpenMany { ns, files, batch } => {
            small::open_many(state, session, &ns, files, batch).await
        }
        Request::UploadAbortBatch { batch } => small::abort_batch(state, session, batch).await,
        Request::UploadPutMany { files } => small::put_many(state, session, files).await,
        Request::Versions { ns, path } => versions::versions(state, session, &ns, path).await,
        Request::Restore { ns, path, version } => {
            versions::restore(state, session, &ns, path, version).await
        }
        Request::Remove {
            ns,
            path,
            recursive,
        } => tree::remove(state, session, &ns, path, recursive).await,
        Request::Move { ns, renames } => tree::rename(state, session, &ns, renames).await,
        Request::TrashList { ns } => trash::list(state, session, &ns).await,
        Request::TrashRestore { ns, trash_id } => {
            trash::restore(state, session, &ns, trash_id).await
        }
        Request::TrashEmpty { ns } => trash::empty(state, session, &ns).await,
        Request::Usage { ns } => usage::usage(state, session, &ns).await,
        Request::Changes { ns, since, after } => {
            changes::changes(state, session, &ns, since, after).await
        }
        Request::UploadData { .. }
        | Request::ChunkPut { .. }
        | Request::ChunkGet { .. }
        | Request::Download { .. } => Err(ApiError::bad_request(
            "this request carries bytes on its stream and cannot be sent here",
        )),
        _ => Err(ApiError::bad_request("not a file request")),
    }
}

/// The namespace a request names, created on first use for the personal space; a
/// group's only for its members.
pub async fn namespace(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
) -> Result<Namespace, ApiError> {
    match ns {
        NsRef::Personal => {
            let user_id = session.user_id;
            Ok(state
                .db
                .run(move |c| namespaces::personal_or_create(c, user_id))
                .await?)
        }
        NsRef::Group { name } => {
            let (name, user_id) = (name.clone(), session.user_id);
            read(state, move |c| {
                crate::groups::files::member_namespace(c, &name, user_id)
            })
            .await
        }
    }
}

/// Runs `work` in a transaction that starts by locking namespace `ns_id`. When it moved the
/// space's revision and someone may be watching (a stream here, or other instances), the
/// new revision is published after the commit ([`watch`]).
pub async fn write<T, F>(state: &ServerState, ns_id: i64, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn, &Namespace) -> Result<T, Failure> + Send + 'static,
{
    let relayed = state.relay.connected();
    let (out, before, inside) = state
        .db
        .run(move |c| {
            db::transaction(c, |c| {
                let ns = match namespaces::lock(c, ns_id) {
                    // Deleted since the request found it: only a group's space goes.
                    Err(db::DbError::Query(diesel::result::Error::NotFound)) => {
                        return Err(ApiError::not_found(
                            "this space no longer exists: its group was deleted",
                        )
                        .into());
                    }
                    locked => locked?,
                };
                let out = work(c, &ns)?;
                // Read here, where the row is locked, when others may need it.
                let after = if relayed {
                    Some(namespaces::revision_of(c, ns_id)?)
                } else {
                    None
                };
                Ok::<_, Failure>((out, ns.revision, after))
            })
        })
        .await?;
    // A stream that joined after the commit read the new revision itself; one that
    // joined before it is found here.
    let after = match inside {
        Some(after) => Some(after),
        None if state.watchers.is_watched(ns_id) => state
            .db
            .run(move |c| namespaces::revision_of(c, ns_id))
            .await
            .ok(),
        None => None,
    };
    if let Some(after) = after
        && after > before
    {
        crate::relay::space_changed(state, ns_id, after.max(0) as u64);
    }
    Ok(out)
}

/// Runs read-only `work` on a pooled connection.
pub async fn read<T, F>(state: &ServerState, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn) -> Result<T, Failure> + Send + 'static,
{
    Ok(state.db.run(work).await?)
}

/// The one revision a transaction stamps on what it changes, bumped on first use (so a
/// request that changes nothing leaves the revision alone).
#[derive(Debug)]
pub struct Stamp {
    ns: i64,
    revision: Option<i64>,
    pub now: i64,
}

impl Stamp {
    pub fn new(ns: i64) -> Stamp {
        Stamp {
            ns,
            revision: None,
            now: db::now(),
        }
    }

    pub fn revision(&mut self, conn: &mut DbConn) -> Result<i64, Failure> {
        if let Some(r) = self.revision {
            return Ok(r);
        }
        let r = namespaces::bump(conn, self.ns)?;
        self.revision = Some(r);
        Ok(r)
    }
}

/// The quota of a namespace (the owner's live `users.quota_bytes` for a personal one).
pub fn quota_of(conn: &mut DbConn, ns: &Namespace) -> Result<i64, Failure> {
    if let Some(q) = ns.quota_bytes {
        return Ok(q);
    }
    let owner = ns.owner_user_id.unwrap_or(-1);
    Ok(namespaces::personal_quota(conn, owner)?.unwrap_or(0))
}

/// Refuses to add `adding` bytes to a namespace that would then be over its quota, with
/// `pending` bytes of unfinished uploads counted as if they had arrived.
pub fn check_quota(
    conn: &mut DbConn,
    ns: &Namespace,
    adding: u64,
    pending: u64,
) -> Result<(), Failure> {
    let quota = quota_of(conn, ns)?.max(0) as u64;
    let used = ns.used_bytes.max(0) as u64;
    if used.saturating_add(pending).saturating_add(adding) > quota {
        use vault_proto::units::format_size;
        let unfinished = if pending > 0 {
            format!(", unfinished uploads hold {} more,", format_size(pending))
        } else {
            String::new()
        };
        return Err(Failure::Api(ApiError::new(
            vault_proto::proto::ErrorCode::QuotaExceeded,
            format!(
                "quota exceeded: this space uses {} of {} ({used} of {quota} bytes){unfinished} \
                 and the upload needs {} more; free space (`vault rm`, then `vault trash \
                 empty`), finish or abort unfinished uploads, or ask the operator for more",
                format_size(used),
                format_size(quota),
                format_size(adding),
            ),
        )));
    }
    Ok(())
}

/// The personal space's used bytes of a user (0 before the first upload), for `whoami`.
pub fn personal_used_bytes(conn: &mut DbConn, user_id: i64) -> db::DbResult<u64> {
    Ok(namespaces::personal(conn, user_id)?.map_or(0, |ns| ns.used_bytes.max(0) as u64))
}

#[cfg(test)]
mod tests;
