//! File metadata (`format::meta`), as the client reads every version a server lists:
//! `open_meta` under the file keys of `meta_v1.txt`, and `FileMeta::from_bytes`, the
//! parser behind the opener, on the same bytes. Metadata that parses encodes back to the
//! same 57 bytes; sealed metadata that opens seals back to the same bytes with its nonce.
//!
//! Input: the bytes (sealed or plain metadata).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vault_core::crypto::Key32;
use vault_core::format::meta::{FileMeta, open_meta, seal_meta_with_nonce};
use vault_fuzz::key32;

fn file_keys() -> &'static [Key32] {
    static KEYS: OnceLock<Vec<Key32>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let counting: Vec<u8> = (0..32).collect();
        vec![key32(&[0x01; 32]), key32(&counting), key32(&[0xC3; 32])]
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = FileMeta::from_bytes(data) {
        assert_eq!(meta.to_bytes().expect("parsed metadata encodes"), data);
        assert!(meta.mtime_ns < 1_000_000_000);
    }
    for key in file_keys() {
        if let Ok(meta) = open_meta(key, data) {
            let nonce: [u8; 12] = data[1..13].try_into().expect("a sealed blob has a nonce");
            let again = seal_meta_with_nonce(key, nonce, &meta).expect("opened metadata seals");
            assert_eq!(
                again, data,
                "metadata opened from bytes it does not seal to"
            );
        }
    }
});
