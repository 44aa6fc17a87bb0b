//! The server's request reader on hostile bytes: a 4-byte header through `parse_header`,
//! then the body it announces through `decode_body::<Request>`, as
//! `vault-server/src/net/stream.rs` reads every stream. A frame that decodes must encode
//! again, and that encoding must decode to the same request with the same `kind`.
//!
//! Input: the bytes of the stream (header ‖ body ‖ anything after, which is never read).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_core::proto::{
    FrameError, MAX_FRAME_LEN, Request, decode_body, encode_frame, parse_header,
};

fuzz_target!(|data: &[u8]| {
    let Some((header, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let len = match parse_header(*header) {
        Ok(len) => len,
        Err(FrameError::TooLarge(n)) => {
            assert!(
                n > MAX_FRAME_LEN,
                "a header of {n} bytes refused as too large"
            );
            return;
        }
        Err(e) => panic!("a header fails only as too large: {e}"),
    };
    assert!(len <= MAX_FRAME_LEN);
    let Some(body) = rest.get(..len) else {
        return; // the stream ends inside the frame: the server answers `bad_request`
    };
    let Ok(request) = decode_body::<Request>(body) else {
        return;
    };
    let kind = request.kind();
    let frame = encode_frame(&request).expect("a decoded request encodes");
    let again: Request = decode_body(&frame[4..]).expect("an encoded request decodes");
    assert_eq!(again, request);
    assert_eq!(again.kind(), kind);
});
