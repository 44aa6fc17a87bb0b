//! The chunks of format version 2 (docs/FORMAT.md §7.10, PROTOCOL.md §6.2): each
//! distinct chunk of a space is stored once, under a blob id the server chooses, and found
//! by the keyed id the client computed.
//!
//! - [`missing`] (`chunks_missing`) says which of a version's chunk ids the space lacks, so
//!   a client sends only those, and marks the others used so that gc leaves them for the
//!   commit that counts on them.
//! - [`put`] (`chunk_put`) stores one sealed chunk: its bytes follow the frame and are read
//!   into a buffer taken from the server-wide request budget (a chunk is at most 4 MiB
//!   and 64 KiB), hashed, and stored as one whole blob (one PUT on S3); then one
//!   transaction records the chunk, counts its bytes against the space's quota and takes
//!   them off the reservation of the upload the client names. A chunk the space already
//!   holds is not read at all (and comes off that reservation too).
//! - [`get`] (`chunk_get`) opens one chunk for the download path to stream.
//!
//! The server checks only a chunk's shape (its id's length, a sealed size that is a
//! multiple of the padding) and opens nothing: the client proves each chunk against its id
//! when it opens it, and trusts only its sealed chunk list for which chunks a version has.

use tokio::io::{AsyncRead, AsyncReadExt};
use vault_proto::proto::{ApiError, ByteBuf, CHUNKS_PER_QUERY, NsRef, Response};
use vault_proto::sizes::{CHUNK_ID_LEN, MAX_SEALED_CHUNK, is_sealed_chunk_size};

use super::download::Body;
use super::upload::{blocking, store_error};
use crate::blobs::{BlobId, BlobReader, hash};
use crate::db::files::{chunks, uploads};
use crate::db::{self, files::versions};
use crate::net::budget::Reservation;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

fn check_id(id: &[u8]) -> Result<(), ApiError> {
    if id.len() != CHUNK_ID_LEN {
        return Err(ApiError::bad_request(format!(
            "a chunk id is {CHUNK_ID_LEN} bytes, not {}",
            id.len()
        )));
    }
    Ok(())
}

/// Serves `chunks_missing`: the indexes of the ids the space does not hold.
pub async fn missing(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    ids: Vec<ByteBuf>,
) -> Result<Response, ApiError> {
    if ids.len() > CHUNKS_PER_QUERY {
        return Err(ApiError::new(
            vault_proto::proto::ErrorCode::TooLarge,
            format!(
                "{} chunk ids in one chunks_missing; at most {CHUNKS_PER_QUERY}",
                ids.len()
            ),
        ));
    }
    let ids: Vec<Vec<u8>> = ids.into_iter().map(ByteBuf::into_vec).collect();
    for id in &ids {
        check_id(id)?;
    }
    let ns = super::namespace(state, session, ns).await?;
    let asked = ids.clone();
    let held = super::read(state, move |c| {
        Ok(chunks::held(c, ns.id, &asked, db::now())?)
    })
    .await?;
    let missing = ids
        .iter()
        .enumerate()
        .filter(|(_, id)| !held.contains(*id))
        .map(|(i, _)| i as u32)
        .collect();
    Ok(Response::ChunksMissing { missing })
}

/// One `chunk_put`: the chunk's id and sealed size, and the caller's open upload it is
/// for, if the client named one.
pub struct ChunkPut {
    pub id: Vec<u8>,
    pub sealed_size: u64,
    pub upload_id: Option<i64>,
}

/// Serves `chunk_put`: stores the `sealed_size` bytes that follow the request on `body` as
/// chunk `id` of the space, unless it holds that id already (then nothing is read). Either
/// way, the upload it is for holds that many chunk bytes less in reserve.
pub async fn put<R: AsyncRead + Unpin>(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    ChunkPut {
        id,
        sealed_size,
        upload_id,
    }: ChunkPut,
    body: &mut R,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    if !is_sealed_chunk_size(sealed_size) {
        return Err(ApiError::bad_request(format!(
            "a sealed chunk is a positive multiple of 64 KiB up to {MAX_SEALED_CHUNK} bytes, \
             not {sealed_size}"
        )));
    }
    let ns = super::namespace(state, session, ns).await?;
    let release = move |c: &mut crate::db::DbConn| match upload_id {
        Some(upload_id) => uploads::release_chunk_bytes(c, upload_id, sealed_size),
        None => Ok(()),
    };
    let (ns_id, known, user) = (ns.id, id.clone(), session.user_id);
    let early = ns.clone();
    let exists = super::read(state, move |c| {
        if let Some(upload_id) = upload_id {
            check_upload(c, (user, ns_id), upload_id)?;
        }
        if chunks::find(c, ns_id, &known)?.is_some() {
            return Ok(true);
        }
        // Not beside the unfinished uploads' reservations: the upload this chunk is for
        // reserved its chunks' bytes when it was opened.
        super::check_quota(c, &early, sealed_size, 0)?;
        Ok(false)
    })
    .await?;
    if exists {
        if upload_id.is_some() {
            super::write(state, ns_id, move |c, _| Ok(release(c)?)).await?;
        }
        return Ok(Response::Ok);
    }
    state.space.check_room(sealed_size)?;

    let (bytes, reservation) = receive(state, sealed_size, body).await?;
    let blob_hash = hash::of_bytes(&bytes);
    let blob = BlobId::random();
    let storing = blob.clone();
    // One whole blob, atomically and durably (on S3 one PUT): a chunk is small.
    blocking(state, move |b| b.put_many(&[(storing, bytes.as_slice())]))
        .await
        .map_err(|e| store_error("storing a chunk failed", &e))?;
    drop(reservation);

    let recorded = blob.clone();
    let stored = super::write(state, ns_id, move |c, ns| {
        let now = db::now();
        if chunks::find(c, ns.id, &id)?.is_some() {
            // Another upload stored it meanwhile: this copy goes to gc.
            versions::mark_deleted(c, &[recorded.to_string()], now)?;
            release(c)?;
            return Ok(());
        }
        super::check_quota(c, ns, sealed_size, 0)?;
        chunks::insert(
            c,
            &chunks::NewChunk {
                namespace_id: ns.id,
                chunk_id: &id,
                blob_id: recorded.as_str(),
                sealed_size: sealed_size as i64,
                blob_blake3: &blob_hash,
                used_at: now,
            },
        )?;
        crate::db::files::namespaces::add_used(c, ns.id, sealed_size as i64)?;
        release(c)?;
        Ok(())
    })
    .await;
    if stored.is_err() {
        // Refused (the quota, most likely): the sealed blob is referenced by nothing, and
        // gc collects it after the grace period; queue it now so it goes sooner.
        let id = blob.to_string();
        let _ = state
            .db
            .run(move |c| versions::mark_deleted(c, &[id], db::now()))
            .await;
    }
    stored.map(|()| Response::Ok)
}

/// Refuses `upload_id` unless it is an unexpired upload of `user` into space `ns_id`
/// (`not_found`, as if absent, as for every other request that names an upload).
fn check_upload(
    c: &mut crate::db::DbConn,
    (user, ns_id): (i64, i64),
    upload_id: i64,
) -> Result<(), crate::error::Failure> {
    match uploads::get(c, upload_id)? {
        Some(u) if u.user_id == user && u.namespace_id == ns_id && u.expires_at >= db::now() => {
            Ok(())
        }
        Some(u) if u.user_id == user && u.namespace_id == ns_id => {
            Err(ApiError::not_found("the upload expired; start again").into())
        }
        Some(u) if u.user_id == user => {
            Err(ApiError::not_found(format!("upload {upload_id} is not into this space")).into())
        }
        _ => Err(super::upload::gone().into()),
    }
}

/// Reads exactly `size` bytes of `body` (a chunk: at most [`MAX_SEALED_CHUNK`]) into a
/// buffer taken from the server-wide request budget, as a frame's would be; fails if the
/// stream ends early or carries more.
async fn receive<'s, R: AsyncRead + Unpin>(
    state: &'s ServerState,
    size: u64,
    body: &mut R,
) -> Result<(Vec<u8>, Reservation<'s>), ApiError> {
    let mut reservation = state.frame_budget.reservation(false);
    reservation.grow(size as usize).map_err(|_| {
        ApiError::throttled(
            1,
            "the server is busy receiving other requests; try again in a second",
        )
    })?;
    let mut buf = Vec::with_capacity(size as usize);
    let read = (&mut *body).take(size).read_to_end(&mut buf).await;
    if read.is_err() || (buf.len() as u64) < size {
        return Err(ApiError::bad_request(format!(
            "the chunk ended after {} of its {size} bytes; send it again",
            buf.len()
        )));
    }
    let mut probe = [0u8; 1];
    if matches!(body.read(&mut probe).await, Ok(n) if n > 0) {
        return Err(ApiError::new(
            vault_proto::proto::ErrorCode::TooLarge,
            format!("more than the {size} bytes the chunk_put announced"),
        ));
    }
    Ok((buf, reservation))
}

/// Finds chunk `id` of the space and opens its blob: the `chunk` header and the body.
pub async fn get(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    id: Vec<u8>,
) -> Result<(Response, Body), ApiError> {
    check_id(&id)?;
    let ns = super::namespace(state, session, ns).await?;
    let row = super::read(state, move |c| {
        Ok(chunks::find(c, ns.id, &id)?
            .ok_or_else(|| ApiError::not_found("this space holds no such chunk"))?)
    })
    .await?;
    let size = row.sealed_size.max(0) as u64;
    let blob = BlobId::parse(&row.blob_id)
        .ok_or_else(|| crate::error::internal("bad blob id in chunks", &row.blob_id))?;
    let reader = blocking(state, move |b| -> std::io::Result<Box<dyn BlobReader>> {
        let stored = b.size(&blob)?;
        if stored != Some(size) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("blob {blob} is {stored:?} bytes, the database says {size}"),
            ));
        }
        b.open(&blob)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "a chunk's blob is missing or damaged");
        ApiError::internal_with(
            "the server lost a chunk of this file; the operator should run `vault-admin fsck`",
        )
    })?;
    Ok((
        Response::Chunk { sealed_size: size },
        Body::new(reader, size),
    ))
}
