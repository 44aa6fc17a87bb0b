//! Name decryption (`format::names::NameKey`), as the client reads every encrypted path a
//! server lists, under the name key of `names_v1.txt`.
//!
//! Input, first byte even — arbitrary text: `parent "\n" path`; the path is split at `/`
//! like a listed path. A segment that decrypts must encrypt back to exactly its text
//! (names are deterministic), and a path that decrypts must encrypt back to its segments.
//!
//! First byte odd — encrypt, tamper, decrypt: a position and a replacement byte, then
//! `parent "\n" name`. A valid name encrypts and decrypts back; the encryption with one
//! character changed never decrypts (to anything).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vault_core::format::names::NameKey;
use vault_fuzz::{Reader, key32};

fn name_key() -> &'static NameKey {
    static KEY: OnceLock<NameKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let parent_key: Vec<u8> = (100..132).collect();
        NameKey::derive(&key32(&parent_key)).expect("name key")
    })
}

fn arbitrary(text: &str) {
    let nk = name_key();
    let (parent, path) = text.split_once('\n').unwrap_or(("", text));
    if let Ok(name) = nk.decrypt_segment(parent, path) {
        let again = nk
            .encrypt_segment(parent, &name)
            .expect("a decrypted name encrypts");
        assert_eq!(
            again, path,
            "a name decrypted from text it does not encrypt to"
        );
    }
    if path.is_empty() {
        return;
    }
    let segments: Vec<&str> = path.split('/').collect();
    if let Ok(plain) = nk.decrypt_path(&segments) {
        let again = nk.encrypt_path(&plain).expect("a decrypted path encrypts");
        assert_eq!(again, segments);
    }
}

fn tampered(mut r: Reader) {
    let nk = name_key();
    let pos = usize::from(r.u16());
    let replacement = r.u8();
    let Ok(text) = std::str::from_utf8(r.rest()) else {
        return;
    };
    let (parent, name) = text.split_once('\n').unwrap_or(("", text));
    let Ok(encrypted) = nk.encrypt_segment(parent, name) else {
        return;
    };
    assert_eq!(
        nk.decrypt_segment(parent, &encrypted).expect("decrypts"),
        name
    );
    let mut changed = encrypted.clone().into_bytes();
    let at = pos % changed.len();
    if changed[at] == replacement {
        return;
    }
    changed[at] = replacement;
    if let Ok(changed) = String::from_utf8(changed) {
        assert!(
            nk.decrypt_segment(parent, &changed).is_err(),
            "a changed encrypted name decrypted"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    if r.u8() & 1 == 0 {
        if let Ok(text) = std::str::from_utf8(r.rest()) {
            arbitrary(text);
        }
    } else {
        tampered(r);
    }
});
