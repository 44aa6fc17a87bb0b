//! The client's answer reader against a malicious server: a 4-byte header through
//! `parse_header`, then the body through `decode_body::<Response>`, as
//! `vault-client/src/transport.rs` reads every answer and every `subscribe` event frame. An
//! answer that decodes must encode again, and that encoding must decode to the same answer.
//!
//! Input: the bytes of the stream (header ‖ body ‖ anything after, which is never read).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_core::proto::{
    FrameError, MAX_FRAME_LEN, Response, decode_body, encode_frame, parse_header,
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
    let Some(body) = rest.get(..len) else {
        return;
    };
    let Ok(response) = decode_body::<Response>(body) else {
        return;
    };
    let frame = encode_frame(&response).expect("a decoded answer encodes");
    let again: Response = decode_body(&frame[4..]).expect("an encoded answer decodes");
    assert_eq!(again, response);
});
