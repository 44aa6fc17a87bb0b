//! Frames: `u32` big-endian length, then that many bytes of CBOR. A frame body is at most
//! `MAX_FRAME_LEN` bytes; both sides refuse longer ones before reading them.

use serde::{Serialize, de::DeserializeOwned};

/// The largest frame body either side accepts (1 MiB; docs/PROTOCOL.md §2).
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The declared or actual body length is over `MAX_FRAME_LEN`.
    #[error("frame of {0} bytes is over the {MAX_FRAME_LEN}-byte limit")]
    TooLarge(usize),
    /// The body is not CBOR of the expected message type.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Encodes `message` as a complete frame (header + CBOR body).
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; 4];
    ciborium::into_writer(message, &mut out).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let body_len = out.len() - 4;
    if body_len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(body_len));
    }
    let len = u32::try_from(body_len).map_err(|_| FrameError::TooLarge(body_len))?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Reads the body length from a 4-byte header, refusing lengths over the limit.
pub fn parse_header(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes a frame body (without its header) as a `T`.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    if body.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(body.len()));
    }
    ciborium::from_reader(body).map_err(|e| FrameError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Request, Response};

    #[test]
    fn round_trip_request() {
        let frame = encode_frame(&Request::Hello {
            protocol_version: 1,
        })
        .expect("encode");
        let len = parse_header(frame[..4].try_into().expect("header")).expect("len");
        assert_eq!(len, frame.len() - 4);
        let back: Request = decode_body(&frame[4..]).expect("decode");
        assert_eq!(
            back,
            Request::Hello {
                protocol_version: 1
            }
        );
    }

    #[test]
    fn header_over_limit_is_refused() {
        let too_big = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
        assert!(matches!(
            parse_header(too_big),
            Err(FrameError::TooLarge(_))
        ));
        assert_eq!(
            parse_header((MAX_FRAME_LEN as u32).to_be_bytes()).expect("limit"),
            MAX_FRAME_LEN
        );
    }

    #[test]
    fn garbage_body_is_malformed_not_a_panic() {
        for body in [
            &b""[..],
            b"\xff\xff\xff",
            b"\xa1\x63foo\x00",
            b"random bytes on a stream",
        ] {
            assert!(matches!(
                decode_body::<Request>(body),
                Err(FrameError::Malformed(_))
            ));
        }
    }

    #[test]
    fn unknown_request_type_is_malformed() {
        let mut body = Vec::new();
        ciborium::into_writer(
            &std::collections::BTreeMap::from([("format_disk", 1)]),
            &mut body,
        )
        .expect("cbor");
        assert!(matches!(
            decode_body::<Request>(&body),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_message_is_refused_on_encode() {
        let huge = Response::Error(crate::proto::ApiError::new(
            crate::proto::ErrorCode::Internal,
            "x".repeat(MAX_FRAME_LEN + 1),
        ));
        assert!(matches!(encode_frame(&huge), Err(FrameError::TooLarge(_))));
    }
}
