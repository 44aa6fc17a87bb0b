//! Downloads: [`prepare`] finds the version, [`open`] opens its blob at the requested
//! chunk and makes the header; [`send`] then streams the sealed bytes from a blocking
//! reader through a small bounded queue, so memory stays bounded whatever the size; the
//! buffers read go to the stream as they are ([`BodySink`]), without a copy.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use vault_proto::proto::{ApiError, NsRef, Response};
use vault_proto::sizes::{chunk_count, plaintext_len, sealed_chunk_offset};

use super::{info, paths};
use crate::blobs::{BlobId, BlobReader};
use crate::db::files::{entries, versions};
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

/// Bytes read from the blob at a time.
const READ_BUF_LEN: usize = 256 * 1024;
/// Buffers queued between the disk reader and the network writer.
const QUEUE_LEN: usize = 4;

/// An opened download: the blob positioned at the first byte to send.
pub struct Body {
    reader: Box<dyn BlobReader>,
    remaining: u64,
}

impl Body {
    /// A body of the `len` bytes `reader` holds from where it stands.
    pub fn new(reader: Box<dyn BlobReader>, len: u64) -> Body {
        Body {
            reader,
            remaining: len,
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Body({} bytes)", self.remaining)
    }
}

/// Finds what `download` asks for and opens it; the `Response::Download` header is to be
/// written before the body.
pub async fn prepare(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    path: String,
    version: Option<u64>,
    from_chunk: u64,
) -> Result<(Response, Body), ApiError> {
    paths::check_not_root(&path, "download")?;
    let ns = super::namespace(state, session, ns).await?;
    let (file_id, row) = super::read(state, move |c| {
        let entry = entries::visible_at(c, ns.id, &path)?
            .ok_or_else(|| ApiError::not_found("no such file (it may have been deleted)"))?;
        if entry.is_dir() {
            return Err(ApiError::bad_request("this is a folder; download it with -r").into());
        }
        let wanted = match version {
            Some(v) => i64::try_from(v).unwrap_or(i64::MAX),
            None => entry.current_version.ok_or_else(ApiError::internal)?,
        };
        let row = versions::get(c, entry.id, wanted)?.ok_or_else(|| {
            ApiError::not_found(format!("version {wanted} of this file is no longer kept"))
        })?;
        Ok((entry.id, row))
    })
    .await?;
    open(state, file_id, &row, from_chunk).await
}

/// Opens version `row` of file `file_id` at chunk `from_chunk`: the `Response::Download`
/// header and the body from that chunk. Shared by `download` and `chat_file_download`; the
/// blob is found by its id in the database, never by a path from the client.
pub async fn open(
    state: &ServerState,
    file_id: i64,
    row: &versions::Version,
    from_chunk: u64,
) -> Result<(Response, Body), ApiError> {
    let size = row.sealed_size.max(0) as u64;
    let chunks = plaintext_len(size).map_or(0, chunk_count);
    if from_chunk >= chunks {
        return Err(ApiError::bad_request(format!(
            "this version has {chunks} chunks; a download cannot start at chunk {from_chunk}"
        )));
    }
    let offset = sealed_chunk_offset(from_chunk).ok_or_else(ApiError::internal)?;
    let id = BlobId::parse(&row.blob_id)
        .ok_or_else(|| crate::error::internal("bad blob id in versions", &row.blob_id))?;
    let blobs = Arc::clone(&state.blobs);
    let reader = tokio::task::spawn_blocking(move || -> std::io::Result<Box<dyn BlobReader>> {
        let stored = blobs.size(&id)?;
        if stored != Some(size) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("blob {id} is {stored:?} bytes, the database says {size}"),
            ));
        }
        let mut reader = blobs.open(&id)?;
        reader.seek(SeekFrom::Start(offset))?;
        Ok(reader)
    })
    .await
    .map_err(|e| crate::error::internal("blob reader failed", e))?
    .map_err(|e| {
        tracing::error!(error = %e, "a version's blob is missing or damaged");
        ApiError::internal_with(
            "the server lost this file's contents; the operator should run `vault-admin fsck`",
        )
    })?;
    let header = Response::Download {
        file_id,
        version: info::version_info(row),
        offset,
    };
    Ok((
        header,
        Body {
            reader,
            remaining: size - offset,
        },
    ))
}

/// Where a download's bytes go: whole buffers, which a QUIC stream takes without a copy.
pub trait BodySink: Send {
    fn put(&mut self, bytes: Bytes) -> impl Future<Output = std::io::Result<()>> + Send;
}

impl BodySink for quinn::SendStream {
    async fn put(&mut self, bytes: Bytes) -> std::io::Result<()> {
        Ok(self.write_chunk(bytes).await?)
    }
}

/// For tests: the body collected in memory.
#[cfg(test)]
impl BodySink for Vec<u8> {
    async fn put(&mut self, bytes: Bytes) -> std::io::Result<()> {
        self.extend_from_slice(&bytes);
        Ok(())
    }
}

/// Streams the body to `out`. An error means the stream must be reset, not finished, so
/// the client sees an incomplete download.
pub async fn send<S: BodySink>(body: Body, out: &mut S) -> std::io::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(QUEUE_LEN);
    let Body {
        mut reader,
        mut remaining,
    } = body;
    let reading = tokio::task::spawn_blocking(move || {
        while remaining > 0 {
            let want = remaining.min(READ_BUF_LEN as u64);
            let result = read_piece(&mut reader, want);
            let failed = result.is_err();
            if tx.blocking_send(result).is_err() || failed {
                return;
            }
            remaining -= want;
        }
    });
    while let Some(item) = rx.recv().await {
        out.put(item?).await?;
    }
    reading
        .await
        .map_err(|e| std::io::Error::other(format!("blob reader failed: {e}")))
}

/// The next `len` bytes of `reader`, read into a fresh buffer (never zeroed first: the
/// bytes are read into its spare capacity).
fn read_piece(reader: &mut Box<dyn BlobReader>, len: u64) -> std::io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len as usize);
    reader.take(len).read_to_end(&mut buf)?;
    if (buf.len() as u64) < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the blob is shorter than the database says",
        ));
    }
    Ok(Bytes::from(buf))
}
