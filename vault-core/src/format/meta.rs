//! Encrypted file metadata (docs/FORMAT.md §7.4): plaintext size, modification time, mode and the
//! BLAKE3 hash of the plaintext, sealed per file version.
//!
//! ```text
//! meta   = version ‖ size (u64 BE) ‖ mtime_s (i64 BE) ‖ mtime_ns (u32 BE, < 10^9)
//!          ‖ mode (u32 BE) ‖ blake3 (32)                                   = 57 bytes
//! sealed = seal(HKDF(FK, "vault/v1/meta"), ad = "vault/v1/ad/file-meta", meta) = 86 bytes
//! ```
//!
//! The version byte also says how the contents are stored: `0x01`, one STREAM (§7.2);
//! `0x02`, a sealed chunk list of content-defined chunks (§7.10, §7.11). The rest is the
//! same in both.
//!
//! The metadata key derives from the version's fresh file key, so the sealed metadata is
//! bound to that version without naming it in the associated data.

use super::error::{FormatError, Result};
use crate::crypto::kdf::LABEL_META;
use crate::crypto::seal::{self, NONCE_LEN, SEAL_OVERHEAD};
use crate::crypto::{Key32, derive_subkey};

/// The metadata version byte of a version stored as one STREAM (§7.2).
pub const META_VERSION: u8 = 1;
/// The metadata version byte of a version stored as content-defined chunks (§7.10).
pub const META_VERSION_CHUNKS: u8 = 2;

/// How a version's contents are stored, as its metadata's version byte says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Contents {
    /// Format version 1: the version's blob is the STREAM of the whole file (§7.2).
    #[default]
    Stream,
    /// Format version 2: the version's blob is its sealed chunk list (§7.11), and the
    /// contents are the space's chunks it names (§7.10).
    Chunks,
}
/// Length of encoded (plaintext) metadata.
pub const META_LEN: usize = 1 + 8 + 8 + 4 + 4 + 32;
/// Length of sealed metadata.
pub const SEALED_META_LEN: usize = SEAL_OVERHEAD + META_LEN;
/// Associated data of sealed metadata.
pub const AD_FILE_META: &[u8] = b"vault/v1/ad/file-meta";

/// The metadata of one file version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileMeta {
    /// Plaintext size in bytes.
    pub size: u64,
    /// Modification time, whole seconds since the Unix epoch (negative before 1970).
    pub mtime_s: i64,
    /// Nanoseconds past `mtime_s`, below 1 000 000 000.
    pub mtime_ns: u32,
    /// Unix `st_mode` as the uploading client saw it (0 where the platform has none).
    pub mode: u32,
    /// BLAKE3 hash of the whole plaintext ([`content_hash`], [`ContentHasher`]).
    pub blake3: [u8; 32],
    /// How the contents are stored (the version byte).
    pub contents: Contents,
}

fn check_nanos(ns: u32) -> Result<()> {
    if ns >= 1_000_000_000 {
        return Err(FormatError::MetaFormat(format!(
            "mtime nanoseconds {ns} are not below 1 000 000 000"
        )));
    }
    Ok(())
}

impl FileMeta {
    /// The 57-byte encoding. Fails if `mtime_ns` is 10^9 or more.
    pub fn to_bytes(&self) -> Result<[u8; META_LEN]> {
        check_nanos(self.mtime_ns)?;
        let mut out = [0u8; META_LEN];
        out[0] = match self.contents {
            Contents::Stream => META_VERSION,
            Contents::Chunks => META_VERSION_CHUNKS,
        };
        out[1..9].copy_from_slice(&self.size.to_be_bytes());
        out[9..17].copy_from_slice(&self.mtime_s.to_be_bytes());
        out[17..21].copy_from_slice(&self.mtime_ns.to_be_bytes());
        out[21..25].copy_from_slice(&self.mode.to_be_bytes());
        out[25..57].copy_from_slice(&self.blake3);
        Ok(out)
    }

    /// Parses the encoding, refusing any other length or version byte and out-of-range
    /// nanoseconds.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bytes: &[u8; META_LEN] = bytes.try_into().map_err(|_| {
            FormatError::MetaFormat(format!("{} bytes instead of {META_LEN}", bytes.len()))
        })?;
        let contents = match bytes[0] {
            META_VERSION => Contents::Stream,
            META_VERSION_CHUNKS => Contents::Chunks,
            other => {
                return Err(FormatError::MetaFormat(format!("unknown version {other}")));
            }
        };
        let mut u64b = [0u8; 8];
        let mut u32b = [0u8; 4];
        let mut hash = [0u8; 32];
        u64b.copy_from_slice(&bytes[1..9]);
        let size = u64::from_be_bytes(u64b);
        u64b.copy_from_slice(&bytes[9..17]);
        let mtime_s = i64::from_be_bytes(u64b);
        u32b.copy_from_slice(&bytes[17..21]);
        let mtime_ns = u32::from_be_bytes(u32b);
        check_nanos(mtime_ns)?;
        u32b.copy_from_slice(&bytes[21..25]);
        let mode = u32::from_be_bytes(u32b);
        hash.copy_from_slice(&bytes[25..57]);
        Ok(Self {
            size,
            mtime_s,
            mtime_ns,
            mode,
            blake3: hash,
            contents,
        })
    }
}

fn meta_key(file_key: &Key32) -> Result<Key32> {
    Ok(derive_subkey(file_key, LABEL_META)?)
}

/// Seals `meta` for the file version whose file key is `file_key` ([`SEALED_META_LEN`] bytes).
pub fn seal_meta(file_key: &Key32, meta: &FileMeta) -> Result<Vec<u8>> {
    let plain = meta.to_bytes()?;
    Ok(seal::seal(&meta_key(file_key)?, AD_FILE_META, &plain)?)
}

/// [`seal_meta`] with a caller-chosen nonce. Only for golden test vectors.
#[doc(hidden)]
pub fn seal_meta_with_nonce(
    file_key: &Key32,
    nonce: [u8; NONCE_LEN],
    meta: &FileMeta,
) -> Result<Vec<u8>> {
    let plain = meta.to_bytes()?;
    Ok(seal::seal_with_nonce(
        &meta_key(file_key)?,
        nonce,
        AD_FILE_META,
        &plain,
    )?)
}

/// Opens sealed metadata: [`FormatError::MetaDecrypt`] for a wrong key or altered bytes,
/// [`FormatError::MetaFormat`] if it opens but is not the version-1 grammar.
pub fn open_meta(file_key: &Key32, sealed: &[u8]) -> Result<FileMeta> {
    let plain = seal::open(&meta_key(file_key)?, AD_FILE_META, sealed)
        .map_err(|_| FormatError::MetaDecrypt)?;
    FileMeta::from_bytes(&plain)
}

/// BLAKE3 of a whole in-memory plaintext.
pub fn content_hash(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

/// Incremental BLAKE3 of a plaintext fed chunk by chunk (while sealing or after opening).
#[derive(Clone, Default)]
pub struct ContentHasher(blake3::Hasher);

impl ContentHasher {
    /// A hasher with nothing fed yet.
    pub fn new() -> Self {
        Self(blake3::Hasher::new())
    }

    /// Feeds the next plaintext bytes.
    pub fn update(&mut self, data: &[u8]) -> &mut Self {
        self.0.update(data);
        self
    }

    /// The BLAKE3 hash of everything fed so far.
    pub fn finalize(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

impl std::fmt::Debug for ContentHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentHasher(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FileMeta {
        FileMeta {
            size: 1_048_577,
            mtime_s: 1_700_000_000,
            mtime_ns: 123_456_789,
            mode: 0o100644,
            blake3: content_hash(b"hello"),
            contents: Contents::Stream,
        }
    }

    #[test]
    fn encoding_layout() -> Result<()> {
        let m = FileMeta {
            size: 0x0102_0304_0506_0708,
            mtime_s: -2,
            mtime_ns: 999_999_999,
            mode: 0o755,
            blake3: [0xaa; 32],
            contents: Contents::Stream,
        };
        let b = m.to_bytes()?;
        assert_eq!(b.len(), META_LEN);
        assert_eq!(b[0], 1);
        assert_eq!(b[1..9], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(b[9..17], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(b[17..21], 999_999_999u32.to_be_bytes());
        assert_eq!(b[21..25], [0, 0, 0x01, 0xed]);
        assert_eq!(b[25..], [0xaa; 32]);
        assert_eq!(FileMeta::from_bytes(&b)?, m);
        // A chunked version differs in the version byte only.
        let chunked = FileMeta {
            contents: Contents::Chunks,
            ..m
        };
        let c = chunked.to_bytes()?;
        assert_eq!(c[0], 2);
        assert_eq!(c[1..], b[1..]);
        assert_eq!(FileMeta::from_bytes(&c)?, chunked);
        Ok(())
    }

    #[test]
    fn round_trip() -> Result<()> {
        let fk = Key32::from_bytes([1; 32]);
        let sealed = seal_meta(&fk, &sample())?;
        assert_eq!(sealed.len(), SEALED_META_LEN);
        assert_eq!(open_meta(&fk, &sealed)?, sample());
        Ok(())
    }

    #[test]
    fn tamper_and_wrong_key_are_rejected() -> Result<()> {
        let fk = Key32::from_bytes([2; 32]);
        let sealed = seal_meta(&fk, &sample())?;
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x20;
            assert_eq!(
                open_meta(&fk, &bad).err(),
                Some(FormatError::MetaDecrypt),
                "byte {i}"
            );
        }
        assert_eq!(
            open_meta(&Key32::from_bytes([3; 32]), &sealed).err(),
            Some(FormatError::MetaDecrypt)
        );
        // The metadata key is a subkey of FK, never FK itself.
        assert!(seal::open(&fk, AD_FILE_META, &sealed).is_err());
        Ok(())
    }

    #[test]
    fn malformed_plaintext_is_rejected() -> Result<()> {
        let good = sample().to_bytes()?;
        assert!(matches!(
            FileMeta::from_bytes(&good[..56]),
            Err(FormatError::MetaFormat(_))
        ));
        let mut longer = good.to_vec();
        longer.push(0);
        assert!(FileMeta::from_bytes(&longer).is_err());
        for unknown in [0, 3, 0xff] {
            let mut other = good;
            other[0] = unknown;
            assert!(FileMeta::from_bytes(&other).is_err(), "version {unknown}");
        }
        let mut ns = good;
        ns[17..21].copy_from_slice(&1_000_000_000u32.to_be_bytes());
        assert!(FileMeta::from_bytes(&ns).is_err());
        let bad = FileMeta {
            mtime_ns: 1_000_000_000,
            ..sample()
        };
        assert!(seal_meta(&Key32::from_bytes([4; 32]), &bad).is_err());
        // Sealed correctly but not meta inside: opens, then fails to parse.
        let fk = Key32::from_bytes([5; 32]);
        let wrong = seal::seal(&meta_key(&fk)?, AD_FILE_META, b"short")?;
        assert!(matches!(
            open_meta(&fk, &wrong),
            Err(FormatError::MetaFormat(_))
        ));
        Ok(())
    }

    #[test]
    fn blake3_known_answers_and_incremental() {
        // BLAKE3 of the empty input (from the BLAKE3 specification's test vectors).
        assert_eq!(
            hex::encode(content_hash(b"")),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut h = ContentHasher::new();
        for part in data.chunks(7919) {
            h.update(part);
        }
        assert_eq!(h.finalize(), content_hash(&data));
        assert_eq!(format!("{h:?}"), "ContentHasher(..)");
    }
}
