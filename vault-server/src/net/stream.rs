//! Reading a request frame from, and writing a response frame to, one QUIC stream.
//! Every read is bounded in size (`MAX_FRAME_LEN`) and in time.

use std::time::Duration;

use vault_core::proto::{self, FrameError, Request, Response};

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The frame is over the limit: answered with `too_large`.
    TooLarge(usize),
    /// Not a frame of a known request: answered with `bad_request`.
    Malformed(String),
    /// The frame did not arrive in time.
    Timeout,
    /// The peer reset the stream or the connection dropped: nothing to answer.
    Gone,
}

/// Reads one request frame.
pub async fn read_request(
    recv: &mut quinn::RecvStream,
    timeout: Duration,
) -> Result<Request, ReadError> {
    let read = async {
        let mut header = [0u8; 4];
        read_exact(recv, &mut header).await?;
        let len = proto::parse_header(header).map_err(frame_error)?;
        let mut body = vec![0u8; len];
        read_exact(recv, &mut body).await?;
        proto::decode_body(&body).map_err(frame_error)
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ReadError::Timeout)?
}

async fn read_exact(recv: &mut quinn::RecvStream, buf: &mut [u8]) -> Result<(), ReadError> {
    recv.read_exact(buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(n) => ReadError::Malformed(format!(
            "stream ended after {n} bytes, in the middle of a frame"
        )),
        quinn::ReadExactError::ReadError(_) => ReadError::Gone,
    })
}

fn frame_error(e: FrameError) -> ReadError {
    match e {
        FrameError::TooLarge(n) => ReadError::TooLarge(n),
        FrameError::Malformed(m) => ReadError::Malformed(m),
    }
}

/// Writes one response frame and finishes the stream.
pub async fn write_response(
    send: &mut quinn::SendStream,
    response: &Response,
) -> Result<(), quinn::WriteError> {
    let frame = match proto::encode_frame(response) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "response could not be encoded");
            let fallback = Response::Error(vault_core::proto::ApiError::internal());
            proto::encode_frame(&fallback).unwrap_or_default()
        }
    };
    send.write_all(&frame).await?;
    let _ = send.finish();
    Ok(())
}
