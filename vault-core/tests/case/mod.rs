//! The vector files' parser, shared by `crypto_vectors.rs` and `format_vectors.rs`: a file
//! is blank-line-separated blocks of `key = value` lines, `#` starting a comment line.
//! (Each test crate uses part of it.)
#![allow(dead_code)]

use vault_core::crypto::Key32;
use vault_core::crypto::seal::NONCE_LEN;

/// One `key = value` block of a vector file.
pub struct Case {
    file: &'static str,
    index: usize,
    fields: Vec<(String, String)>,
}

impl Case {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("{}: no field {name:?}", self.at()))
    }

    pub fn hex(&self, name: &str) -> Vec<u8> {
        hex::decode(self.text(name))
            .unwrap_or_else(|e| panic!("{}: field {name:?} is not hex: {e}", self.at()))
    }

    pub fn num<T: std::str::FromStr>(&self, name: &str) -> T
    where
        T::Err: std::fmt::Display,
    {
        self.text(name)
            .parse()
            .unwrap_or_else(|e| panic!("{}: field {name:?} is not a number: {e}", self.at()))
    }

    pub fn key(&self, name: &str) -> Key32 {
        Key32::from_slice(&self.hex(name))
            .unwrap_or_else(|e| panic!("{}: field {name:?}: {e}", self.at()))
    }

    pub fn nonce(&self) -> [u8; NONCE_LEN] {
        self.hex("nonce")
            .try_into()
            .unwrap_or_else(|_| panic!("{}: nonce is not 12 bytes", self.at()))
    }

    /// `plaintext`/`content` given in hex, as `…_pattern_len = N` (the bytes i % 251), or
    /// as `…_noise_seed = S` and `…_noise_len = N` (the first N bytes of BLAKE3's extended
    /// output for S).
    pub fn data(&self, name: &str) -> Vec<u8> {
        if let Some(seed) = self.get(&format!("{name}_noise_seed")) {
            let mut out = vec![0u8; self.num(&format!("{name}_noise_len"))];
            blake3::Hasher::new()
                .update(seed.as_bytes())
                .finalize_xof()
                .fill(&mut out);
            return out;
        }
        match self.get(&format!("{name}_pattern_len")) {
            Some(_) => pattern(self.num(&format!("{name}_pattern_len"))),
            None => self.hex(name),
        }
    }

    pub fn at(&self) -> String {
        format!("{} case {}", self.file, self.index)
    }
}

/// Splits a vector file into blank-line-separated blocks of `key = value` lines
/// (`#` starts a comment line). Panics on an empty file so a lost vector can't pass.
pub fn cases(file: &'static str, text: &str) -> Vec<Case> {
    let mut out = Vec::new();
    let mut fields = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if !fields.is_empty() {
                out.push(Case {
                    file,
                    index: out.len() + 1,
                    fields: std::mem::take(&mut fields),
                });
            }
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{file}: bad line {line:?}"));
        fields.push((k.trim().to_string(), v.trim().to_string()));
    }
    assert!(!out.is_empty(), "{file}: no cases");
    out
}

pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
