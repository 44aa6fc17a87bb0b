//! Decryption of files written by the legacy DES netdisk (docs/FORMAT.md §7.6), for `vault
//! import-legacy`. DES is broken; it is used here only to read old data, never to encrypt.
//!
//! ```text
//! CBC: plaintext ‖ PKCS#5 padding = DES-CBC-decrypt(key, iv = 00 00 00 00 00 00 00 00, ciphertext)
//! ECB: plaintext ‖ PKCS#5 padding = DES-ECB-decrypt(key, ciphertext)   (each 8-byte block alone)
//! ```
//!
//! PKCS#5 padding is 1 to 8 bytes, each equal to the padding length, so the ciphertext is
//! a non-empty multiple of 8 bytes. Both are checked strictly. The key is 8 bytes, written
//! as 16 hex digits ([`parse_des_key`]); DES ignores the low bit of each byte (parity).
//!
//! The decryptor is streaming ([`LegacyDecryptor`]), so files of any size decrypt in
//! bounded memory; it holds back the final block until [`LegacyDecryptor::finish`], where
//! the padding is checked.

use cbc::cipher::{BlockCipherDecrypt, BlockModeDecrypt, KeyInit, KeyIvInit};
use des::Des;
use zeroize::Zeroizing;

use super::error::{FormatError, Result};

/// DES block size.
const BLOCK: usize = 8;

/// How the legacy netdisk chained DES blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegacyMode {
    /// DES-CBC with an all-zero IV.
    Cbc,
    /// DES-ECB: every block on its own.
    Ecb,
}

impl std::fmt::Display for LegacyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cbc => "cbc",
            Self::Ecb => "ecb",
        })
    }
}

impl std::str::FromStr for LegacyMode {
    type Err = String;

    /// `cbc` or `ecb`, in any case.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cbc" => Ok(Self::Cbc),
            "ecb" => Ok(Self::Ecb),
            _ => Err(format!("unknown legacy mode {s:?}: use cbc or ecb")),
        }
    }
}

/// Reads a DES key written as exactly 16 hex digits (upper or lower case; surrounding
/// whitespace ignored), e.g. `0123456789abcdef`.
pub fn parse_des_key(text: &str) -> Result<[u8; 8]> {
    let text = text.trim();
    if text.len() != 2 * BLOCK {
        return Err(FormatError::InvalidDesKey(format!(
            "expected 16 hex digits (8 bytes), e.g. 0123456789abcdef; got {} characters",
            text.chars().count()
        )));
    }
    let mut key = [0u8; BLOCK];
    hex::decode_to_slice(text, &mut key).map_err(|_| {
        FormatError::InvalidDesKey(
            "expected 16 hex digits (0-9, a-f), e.g. 0123456789abcdef; found another character"
                .into(),
        )
    })?;
    Ok(key)
}

enum Engine {
    Cbc(cbc::Decryptor<Des>),
    Ecb(Des),
}

impl Engine {
    /// Decrypts whole blocks in place; `buf.len()` is a multiple of 8.
    fn decrypt(&mut self, buf: &mut [u8]) {
        let (blocks, rest) = cbc::cipher::Array::slice_as_chunks_mut(buf);
        debug_assert!(rest.is_empty());
        match self {
            Self::Cbc(d) => d.decrypt_blocks(blocks),
            Self::Ecb(d) => d.decrypt_blocks(blocks),
        }
    }
}

/// Streaming decryptor of legacy data: feed the ciphertext with
/// [`update`](Self::update), then call [`finish`](Self::finish) for the last bytes and
/// the padding check. Nothing it returns before `finish` succeeds should be trusted as a
/// complete file.
pub struct LegacyDecryptor {
    engine: Engine,
    /// Ciphertext not yet decrypted: a partial block, or the held-back final block.
    pending: Zeroizing<Vec<u8>>,
    total: u64,
}

impl std::fmt::Debug for LegacyDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyDecryptor")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl LegacyDecryptor {
    /// A decryptor for `mode` under `key` (for CBC the IV is zero).
    pub fn new(key: &[u8; 8], mode: LegacyMode) -> Self {
        let key = Zeroizing::new(cbc::cipher::Array::from(*key));
        let engine = match mode {
            LegacyMode::Cbc => Engine::Cbc(cbc::Decryptor::<Des>::new(
                &key,
                &cbc::cipher::Array::from([0u8; BLOCK]),
            )),
            LegacyMode::Ecb => Engine::Ecb(Des::new(&key)),
        };
        Self {
            engine,
            pending: Zeroizing::new(Vec::new()),
            total: 0,
        }
    }

    /// Feeds more ciphertext and returns the plaintext it completes (everything but the
    /// final block seen so far, which may be padding).
    pub fn update(&mut self, ciphertext: &[u8]) -> Zeroizing<Vec<u8>> {
        self.total = self.total.saturating_add(ciphertext.len() as u64);
        self.pending.extend_from_slice(ciphertext);
        let len = self.pending.len();
        let ready = if len.is_multiple_of(BLOCK) {
            len.saturating_sub(BLOCK)
        } else {
            len - len % BLOCK
        };
        let rest = Zeroizing::new(self.pending[ready..].to_vec());
        self.pending.truncate(ready);
        self.engine.decrypt(&mut self.pending);
        std::mem::replace(&mut self.pending, rest)
    }

    /// Decrypts the final block and strips the PKCS#5 padding. Fails with
    /// [`FormatError::LegacyLength`] if the whole input was not a non-empty multiple of 8
    /// bytes, and [`FormatError::LegacyPadding`] if the padding is wrong (usually a wrong
    /// key or mode).
    pub fn finish(mut self) -> Result<Zeroizing<Vec<u8>>> {
        if self.total == 0 || self.pending.len() != BLOCK {
            return Err(FormatError::LegacyLength { len: self.total });
        }
        self.engine.decrypt(&mut self.pending);
        let keep = unpadded_len(&self.pending).ok_or(FormatError::LegacyPadding)?;
        self.pending.truncate(keep);
        Ok(std::mem::take(&mut self.pending))
    }
}

/// The number of plaintext bytes in a decrypted final block: `None` unless it ends with
/// 1 to 8 bytes that all equal their count (PKCS#5).
fn unpadded_len(last_block: &[u8]) -> Option<usize> {
    let pad = usize::from(*last_block.last()?);
    let keep = last_block.len().checked_sub(pad)?;
    ((1..=BLOCK).contains(&pad) && last_block[keep..].iter().all(|&b| usize::from(b) == pad))
        .then_some(keep)
}

/// Decrypts a whole legacy file held in memory (see [`LegacyDecryptor`] for streaming).
pub fn decrypt_legacy(
    key: &[u8; 8],
    mode: LegacyMode,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(BLOCK) {
        return Err(FormatError::LegacyLength {
            len: ciphertext.len() as u64,
        });
    }
    let mut d = LegacyDecryptor::new(key, mode);
    let mut out = d.update(ciphertext);
    out.extend_from_slice(&d.finish()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];

    /// The classic DES known answer (FIPS 81 examples): under key 0123456789abcdef the
    /// block "Now is t" encrypts to 3fa40e8a984d4815 (also what
    /// `openssl enc -des-ecb -nopad -K 0123456789abcdef` prints).
    #[test]
    fn des_known_answer_block() -> Result<()> {
        let mut ct = hex::decode("3fa40e8a984d4815").map_err(|_| FormatError::LegacyPadding)?;
        let mut engine = Engine::Ecb(Des::new(&cbc::cipher::Array::from(KEY)));
        engine.decrypt(&mut ct);
        assert_eq!(ct, b"Now is t");
        Ok(())
    }

    #[test]
    fn length_errors() {
        for len in [0usize, 1, 7, 9, 15] {
            let err = decrypt_legacy(&KEY, LegacyMode::Cbc, &vec![0; len]).err();
            assert_eq!(err, Some(FormatError::LegacyLength { len: len as u64 }));
            let msg = err.map(|e| e.to_string()).unwrap_or_default();
            let says = if len == 0 {
                "empty"
            } else {
                "not a multiple of 8 bytes"
            };
            assert!(
                msg.contains(says) && msg.contains("is this a legacy file?"),
                "{msg}"
            );
        }
        let mut d = LegacyDecryptor::new(&KEY, LegacyMode::Ecb);
        let _ = d.update(&[0; 12]);
        assert_eq!(
            d.finish().err(),
            Some(FormatError::LegacyLength { len: 12 })
        );
    }

    #[test]
    fn padding_rules() {
        assert_eq!(unpadded_len(b"abcdefg\x01"), Some(7));
        assert_eq!(unpadded_len(b"abcde\x03\x03\x03"), Some(5));
        assert_eq!(unpadded_len(&[8; 8]), Some(0));
        assert_eq!(unpadded_len(b"abcdefg\x00"), None, "pad byte 0");
        assert_eq!(unpadded_len(b"abcdefg\x09"), None, "pad byte above 8");
        assert_eq!(unpadded_len(&[0xff; 8]), None);
        assert_eq!(
            unpadded_len(b"abcde\x02\x03\x03"),
            None,
            "unequal pad bytes"
        );
        assert_eq!(unpadded_len(b"a\x08\x08\x08\x08\x08\x08\x08"), None);
        let msg = FormatError::LegacyPadding.to_string();
        assert!(msg.contains("bad padding") && msg.contains("wrong key or mode?"));
    }

    #[test]
    fn streaming_holds_back_the_last_block() {
        // Whatever the split, update never releases the final (padding) block.
        let mut d = LegacyDecryptor::new(&KEY, LegacyMode::Cbc);
        assert!(d.update(&[0; 8]).is_empty());
        assert_eq!(d.update(&[0; 3]).len(), 8);
        assert!(d.update(&[0; 5]).is_empty());
        assert_eq!(d.update(&[0; 16]).len(), 16);
    }

    #[test]
    fn keys() -> Result<()> {
        assert_eq!(parse_des_key("0123456789abcdef")?, KEY);
        assert_eq!(parse_des_key(" 0123456789ABCDEF\n")?, KEY);
        for bad in [
            "",
            "0123456789abcde",
            "0123456789abcdef0",
            "0123456789abcdeg",
            "password",
        ] {
            assert!(
                matches!(parse_des_key(bad), Err(FormatError::InvalidDesKey(_))),
                "{bad:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn modes_parse() {
        assert_eq!("cbc".parse(), Ok(LegacyMode::Cbc));
        assert_eq!("ECB".parse(), Ok(LegacyMode::Ecb));
        assert!("cfb".parse::<LegacyMode>().is_err());
        assert_eq!(LegacyMode::Cbc.to_string(), "cbc");
    }
}
