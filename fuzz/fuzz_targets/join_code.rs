//! Join codes (`format::groupkey::InviteSecret`): the code text a person pastes
//! (`parse_code`), the sealed keys a server hands the holder of a code (`open_keys`, under
//! the secrets of `invite_v1.txt`), and the parser behind that opener
//! (`decode_invite_keys`).
//!
//! Input: a mode byte (0, 1, 2 modulo 3), then — 0: the code text; a code that parses
//! prints back as the same code and gives the same auth part. 1: `group_id (i64 BE) ‖
//! sealed keys`; keys that open seal back to the same bytes with their nonce. 2: the
//! plaintext of sealed keys; keys that parse encode back to the same bytes, and exactly
//! the plaintexts of whole records parse.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vault_core::format::groupkey::{InviteSecret, decode_invite_keys, encode_invite_keys};
use vault_fuzz::{INVITE_V1, Reader, vector_fields};

fn secrets() -> &'static [InviteSecret] {
    static SECRETS: OnceLock<Vec<InviteSecret>> = OnceLock::new();
    SECRETS.get_or_init(|| {
        vector_fields(INVITE_V1, "code")
            .iter()
            .map(|code| InviteSecret::parse_code(code).expect("a vector code").1)
            .collect()
    })
}

fn code(text: &str) {
    let Ok((id, secret)) = InviteSecret::parse_code(text) else {
        return;
    };
    assert!(id > 0);
    let printed = secret.code(id);
    let typed_secret = text.trim().split_once('.').expect("ID.SECRET").1;
    assert_eq!(
        printed.split_once('.').expect("ID.SECRET").1,
        typed_secret.to_ascii_lowercase(),
        "the code prints another secret than was typed"
    );
    let (id_again, again) = InviteSecret::parse_code(&printed).expect("a printed code parses");
    assert_eq!(id_again, id);
    assert_eq!(
        again.auth().expect("auth").dangerously_leak_secret(),
        secret.auth().expect("auth").dangerously_leak_secret()
    );
}

fn sealed(mut r: Reader) {
    let group_id = r.i64();
    let sealed = r.rest();
    for secret in secrets() {
        if let Ok(keys) = secret.open_keys(group_id, sealed) {
            let nonce: [u8; 12] = sealed[1..13].try_into().expect("nonce");
            let again = secret
                .seal_keys_with_nonce(nonce, group_id, &keys)
                .expect("seals");
            assert_eq!(again, sealed);
        }
    }
}

fn plain(bytes: &[u8]) {
    match decode_invite_keys(bytes) {
        Ok(keys) => {
            assert_eq!(keys.len(), bytes.len() / 36);
            assert_eq!(&encode_invite_keys(&keys)[..], bytes);
        }
        Err(_) => assert!(bytes.is_empty() || bytes.len() % 36 != 0),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    match r.u8() % 3 {
        0 => {
            if let Ok(text) = std::str::from_utf8(r.rest()) {
                code(text);
            }
        }
        1 => sealed(r),
        _ => plain(r.rest()),
    }
});
