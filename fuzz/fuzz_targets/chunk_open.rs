//! Chunks and chunk lists of format 2 (`format::chunks`, `format::chunklist`), as a client
//! reads what `chunk_get` and a version's download bring from a malicious server:
//! `ChunkKeys::open` under the space key of `chunks_v2.txt`, and `open_chunk_list` under
//! the file key of `chunk_list_v2.txt`. A chunk that opens hashes to the id asked for and
//! seals back to the same bytes; a list that opens seals back to the same bytes with its
//! nonce.
//!
//! Input: `0x00` ‖ chunk id (32) ‖ sealed chunk, or `0x01` ‖ sealed chunk list.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vault_core::crypto::Key32;
use vault_core::format::chunklist::{open_chunk_list, seal_chunk_list_with_nonce};
use vault_core::format::chunks::{ChunkId, ChunkKeys};
use vault_fuzz::key32;

fn space_keys() -> &'static ChunkKeys {
    static KEYS: OnceLock<ChunkKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let counting: Vec<u8> = (0..32).collect();
        ChunkKeys::derive(&key32(&counting)).expect("chunk keys")
    })
}

fn list_key() -> &'static Key32 {
    static KEY: OnceLock<Key32> = OnceLock::new();
    KEY.get_or_init(|| {
        let from_100: Vec<u8> = (100..132).collect();
        key32(&from_100)
    })
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, rest)) if rest.len() >= 32 => {
            let (id, sealed) = rest.split_at(32);
            let id = ChunkId(id.try_into().expect("32 bytes"));
            let keys = space_keys();
            if let Ok(plain) = keys.open(&id, sealed) {
                assert_eq!(keys.id(&plain), id, "a chunk opened under another id");
                let (again_id, again) = keys.seal(&plain).expect("an opened chunk seals");
                assert_eq!((again_id, again.as_slice()), (id, sealed));
            }
        }
        Some((1, sealed)) => {
            if let Ok(list) = open_chunk_list(list_key(), sealed) {
                let nonce: [u8; 12] = sealed[1..13].try_into().expect("a sealed blob has a nonce");
                let again = seal_chunk_list_with_nonce(list_key(), nonce, &list)
                    .expect("an opened list seals");
                assert_eq!(again, sealed, "a list opened from bytes it does not seal to");
            }
        }
        _ => {}
    }
});
