//! The server's request reader on hostile bytes: a 4-byte header through `parse_header`,
//! then the body it announces through `decode_body::<Request>`, as
//! `vault-server/src/net/stream.rs` reads every stream. A frame that decodes must encode
//! again, and that encoding must decode to the same request with the same `kind`.
//!
//! Input: the bytes of the stream (header ‖ body ‖ anything after, which is never read).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_core::proto::Request;

fuzz_target!(|data: &[u8]| {
    if let Some(request) = vault_fuzz::read_frame::<Request>(data) {
        let _ = request.kind();
    }
});
