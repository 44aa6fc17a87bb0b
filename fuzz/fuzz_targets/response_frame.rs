//! The client's answer reader against a malicious server: a 4-byte header through
//! `parse_header`, then the body through `decode_body::<Response>`, as
//! `vault-client/src/transport.rs` reads every answer and every `subscribe` event frame. An
//! answer that decodes must encode again, and that encoding must decode to the same answer.
//!
//! Input: the bytes of the stream (header ‖ body ‖ anything after, which is never read).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_core::proto::Response;

fuzz_target!(|data: &[u8]| {
    let _ = vault_fuzz::read_frame::<Response>(data);
});
