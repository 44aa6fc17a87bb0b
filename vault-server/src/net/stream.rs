//! Reading a request frame from, and writing a response frame to, one QUIC stream.
//! Every read is bounded in size (`MAX_FRAME_LEN`, or `limits.prelogin_frame_max` before
//! login), in time, and in memory: the body's buffer grows only as its bytes arrive, each
//! growth taken from the server's [`FrameBudget`].

use std::time::Duration;

use vault_proto::proto::{self, FrameError, Request, Response};

use super::budget::{FrameBudget, Reservation};

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The frame is over the limit (declared length, limit): answered with `too_large`.
    TooLarge(usize, usize),
    /// Not a frame of a known request: answered with `bad_request`.
    Malformed(String),
    /// The frame did not arrive in time.
    Timeout,
    /// The server's budget for frames still arriving is spent: answered "busy, retry".
    Busy,
    /// The peer reset the stream or the connection dropped: nothing to answer.
    Gone,
}

/// How a frame is read: its length limit and which budget it draws on.
#[derive(Debug)]
pub struct FrameRules<'a> {
    pub budget: &'a FrameBudget,
    pub max_len: usize,
    pub prelogin: bool,
    pub timeout: Duration,
}

/// Reads one request frame.
pub async fn read_request(
    recv: &mut quinn::RecvStream,
    rules: FrameRules<'_>,
) -> Result<Request, ReadError> {
    let read = async {
        let mut header = [0u8; 4];
        read_exact(recv, &mut header).await?;
        let len = proto::parse_header(header).map_err(frame_error)?;
        if len > rules.max_len {
            return Err(ReadError::TooLarge(len, rules.max_len));
        }
        let mut reservation = rules.budget.reservation(rules.prelogin);
        let body = read_body(recv, len, &mut reservation).await?;
        proto::decode_body(&body).map_err(frame_error)
    };
    tokio::time::timeout(rules.timeout, read)
        .await
        .map_err(|_| ReadError::Timeout)?
}

/// The smallest buffer a body starts with (most requests fit in it).
const FIRST_BUFFER: usize = 4096;

/// Reads a body of `len` bytes into a buffer that at most doubles as bytes arrive, each
/// growth taken from `reservation` first.
async fn read_body(
    recv: &mut quinn::RecvStream,
    len: usize,
    reservation: &mut Reservation<'_>,
) -> Result<Vec<u8>, ReadError> {
    let mut body: Vec<u8> = Vec::new();
    while body.len() < len {
        let chunk = match recv.read_chunk(len - body.len(), true).await {
            Ok(Some(chunk)) => chunk.bytes,
            Ok(None) => {
                return Err(ReadError::Malformed(format!(
                    "stream ended after {} bytes, in the middle of a frame",
                    4 + body.len()
                )));
            }
            Err(_) => return Err(ReadError::Gone),
        };
        let needed = body.len() + chunk.len();
        if needed > body.capacity() {
            let target = needed.max(body.capacity() * 2).max(FIRST_BUFFER).min(len);
            reservation
                .grow(target - reservation.bytes().min(target))
                .map_err(|_| ReadError::Busy)?;
            body.reserve_exact(target - body.len());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
        FrameError::TooLarge(n) => ReadError::TooLarge(n, proto::MAX_FRAME_LEN),
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
            let fallback = Response::Error(vault_proto::proto::ApiError::internal());
            proto::encode_frame(&fallback).unwrap_or_default()
        }
    };
    send.write_all(&frame).await?;
    let _ = send.finish();
    Ok(())
}
