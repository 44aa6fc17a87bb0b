//! The legacy DES importer (`format::legacy`): `parse_des_key` on the typed key, and the
//! streaming `LegacyDecryptor` (as `vault import-legacy` feeds it) against the whole-file
//! `decrypt_legacy`.
//!
//! Input: `flags (bit 0: CBC, else ECB; bit 1: key text mode) ‖ key (8) ‖ piece size (u8)
//! ‖ ciphertext` — or in key text mode, the text after the flags. A key that parses is the
//! 16 hex digits typed. Streamed in pieces or whole, the decryption gives one answer; what
//! decrypts, encrypted again here with DES (block by block, chained by hand for CBC) and
//! PKCS#5 padding, is the ciphertext.

#![no_main]

use des::Des;
use des::cipher::{Array, BlockCipherEncrypt, KeyInit};
use libfuzzer_sys::fuzz_target;
use vault_core::format::legacy::{LegacyDecryptor, LegacyMode, decrypt_legacy, parse_des_key};
use vault_fuzz::Reader;

fn key_text(text: &str) {
    let trimmed = text.trim();
    match parse_des_key(text) {
        Ok(key) => {
            let printed: String = key.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(printed, trimmed.to_ascii_lowercase());
        }
        Err(_) => assert!(
            trimmed.len() != 16 || !trimmed.bytes().all(|b| b.is_ascii_hexdigit()),
            "a 16-hex-digit key refused"
        ),
    }
}

/// DES encryption with PKCS#5 padding, written here from the block cipher alone.
fn encrypt(key: &[u8; 8], cbc: bool, plain: &[u8]) -> Vec<u8> {
    let cipher = Des::new_from_slice(key).expect("an 8-byte key");
    let pad = 8 - plain.len() % 8;
    let mut data = plain.to_vec();
    data.extend(std::iter::repeat_n(pad as u8, pad));
    let mut previous = [0u8; 8];
    let mut out = Vec::with_capacity(data.len());
    for block in data.chunks_exact(8) {
        let mut b: [u8; 8] = block.try_into().expect("8 bytes");
        if cbc {
            for (x, p) in b.iter_mut().zip(previous) {
                *x ^= p;
            }
        }
        let mut array = Array::from(b);
        cipher.encrypt_block(&mut array);
        previous = array.into();
        out.extend_from_slice(&previous);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let flags = r.u8();
    if flags & 2 != 0 {
        if let Ok(text) = std::str::from_utf8(r.rest()) {
            key_text(text);
        }
        return;
    }
    let cbc = flags & 1 == 1;
    let mode = if cbc {
        LegacyMode::Cbc
    } else {
        LegacyMode::Ecb
    };
    let key: [u8; 8] = r.bytes(8).try_into().unwrap_or([0; 8]);
    let piece = 1 + usize::from(r.u8());
    let ciphertext = r.rest();

    let whole = decrypt_legacy(&key, mode, ciphertext).map(|p| p.to_vec());
    let mut decryptor = LegacyDecryptor::new(&key, mode);
    let mut streamed = Vec::new();
    for chunk in ciphertext.chunks(piece) {
        streamed.extend_from_slice(&decryptor.update(chunk));
    }
    let streamed = decryptor.finish().map(|tail| {
        streamed.extend_from_slice(&tail);
        streamed
    });
    assert_eq!(whole, streamed, "streamed and whole decryption disagree");
    if let Ok(plain) = whole {
        assert!(ciphertext.len() - plain.len() <= 8 && plain.len() < ciphertext.len());
        assert_eq!(encrypt(&key, cbc, &plain), ciphertext);
    }
});
