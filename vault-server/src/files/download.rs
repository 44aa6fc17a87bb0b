//! Downloads: [`prepare`] finds the version, [`open`] opens its blob at the requested
//! chunk and makes the header; [`send`] then streams the sealed bytes: from a blocking
//! reader (a file) through a small bounded queue, or as the store's own stream (S3) passes
//! them on, so memory stays bounded whatever the size; the buffers go to the QUIC stream as
//! they are ([`BodySink`]), without a copy.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use vault_proto::proto::{ApiError, NsRef, Response};
use vault_proto::sizes::{chunk_count, plaintext_len, sealed_chunk_offset};

use super::{info, paths};
use crate::blobs::{BlobId, BlobReader, BlobStream};
use crate::db::files::{entries, versions};
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

/// Bytes read from the blob at a time.
const READ_BUF_LEN: usize = 256 * 1024;
/// Buffers queued between the disk reader and the network writer.
const QUEUE_LEN: usize = 4;

/// An opened download: the blob positioned at the first byte to send.
pub struct Body {
    source: Source,
    remaining: u64,
}

/// Where a download's bytes come from.
enum Source {
    /// A blocking reader (a file), read on its own thread a few buffers ahead.
    Reader(Box<dyn BlobReader>),
    /// The store's own stream (S3), passed on as it arrives.
    Stream(BlobStream),
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
    let source = tokio::task::spawn_blocking(move || -> std::io::Result<Source> {
        let stored = blobs.size(&id)?;
        if stored != Some(size) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("blob {id} is {stored:?} bytes, the database says {size}"),
            ));
        }
        if let Some(stream) = blobs.stream_from(&id, offset) {
            return Ok(Source::Stream(stream));
        }
        let mut reader = blobs.open(&id)?;
        reader.seek(SeekFrom::Start(offset))?;
        Ok(Source::Reader(reader))
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
            source,
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
    match body.source {
        Source::Reader(reader) => send_read(reader, body.remaining, out).await,
        Source::Stream(stream) => send_stream(stream, body.remaining, out).await,
    }
}

/// Passes the store's buffers on as they come, checking that they add up to `len`.
async fn send_stream<S: BodySink>(
    mut stream: BlobStream,
    len: u64,
    out: &mut S,
) -> std::io::Result<()> {
    use futures::StreamExt;
    let mut remaining = len;
    while remaining > 0 {
        let Some(bytes) = stream.next().await.transpose()? else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the blob is shorter than the database says",
            ));
        };
        let bytes = bytes.slice(
            ..bytes
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX)),
        );
        remaining -= bytes.len() as u64;
        if !bytes.is_empty() {
            out.put(bytes).await?;
        }
    }
    Ok(())
}

/// Reads on a blocking thread a few buffers ahead of the stream.
async fn send_read<S: BodySink>(
    mut reader: Box<dyn BlobReader>,
    mut remaining: u64,
    out: &mut S,
) -> std::io::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(QUEUE_LEN);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(pieces: &[&'static [u8]]) -> BlobStream {
        use futures::StreamExt;
        let items: Vec<std::io::Result<Bytes>> =
            pieces.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        futures::stream::iter(items).boxed()
    }

    #[tokio::test]
    async fn a_streamed_body_is_passed_on_whole_and_only_as_long_as_the_version() {
        let mut out = Vec::new();
        send_stream(stream_of(&[b"abc", b"", b"defg"]), 7, &mut out)
            .await
            .expect("sent");
        assert_eq!(out, b"abcdefg");

        let mut out = Vec::new();
        send_stream(stream_of(&[b"abc", b"defg", b"more"]), 5, &mut out)
            .await
            .expect("sent");
        assert_eq!(out, b"abcde", "what the store has beyond the version stays");

        let mut out = Vec::new();
        let short = send_stream(stream_of(&[b"abc"]), 5, &mut out).await;
        assert_eq!(
            short.expect_err("short").kind(),
            std::io::ErrorKind::UnexpectedEof
        );
    }
}
