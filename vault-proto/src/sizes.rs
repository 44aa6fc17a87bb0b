//! The sizes of sealed data, as docs/FORMAT.md fixes them, for the side that checks them
//! without opening anything (the server). `vault-core`, which seals and opens, checks at
//! compile time that its own constants are these.

/// Plaintext bytes per STREAM chunk (FORMAT.md §3).
pub const CHUNK_LEN: usize = 1 << 20;
/// AES-GCM tag bytes.
pub const TAG_LEN: usize = 16;
/// Bytes of a full sealed chunk.
pub const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;
/// Bytes a sealed key blob adds to its plaintext: version byte, 12-byte nonce, tag.
pub const SEAL_OVERHEAD: usize = 1 + 12 + TAG_LEN;
/// Bytes of a wrapped file key (a sealed 32-byte key).
pub const WRAPPED_FILE_KEY_LEN: usize = SEAL_OVERHEAD + 32;
/// Bytes of a file's sealed metadata (version, size, mtime, mode, BLAKE3: 57 bytes).
pub const SEALED_META_LEN: usize = SEAL_OVERHEAD + 1 + 8 + 8 + 4 + 4 + 32;
/// Bytes of a chunk id (FORMAT.md §7.10): a keyed BLAKE3 of the chunk's plaintext.
pub const CHUNK_ID_LEN: usize = 32;
/// Sealed chunks (FORMAT.md §7.10) are a positive multiple of this many bytes.
pub const CHUNK_PAD: u64 = 64 << 10;
/// The largest sealed chunk: a 4 MiB plaintext, padded, with its tag.
pub const MAX_SEALED_CHUNK: u64 = (4 << 20) + CHUNK_PAD;

/// Whether `sealed_size` can be the size of a sealed chunk: a positive multiple of
/// [`CHUNK_PAD`], at most [`MAX_SEALED_CHUNK`].
pub fn is_sealed_chunk_size(sealed_size: u64) -> bool {
    sealed_size > 0 && sealed_size.is_multiple_of(CHUNK_PAD) && sealed_size <= MAX_SEALED_CHUNK
}

/// The longest encrypted name (a 255-byte name: 16-byte SIV + 256 padded bytes, base32).
pub const MAX_ENCRYPTED_NAME_LEN: usize = ((16 + 256) * 8usize).div_ceil(5);

/// Number of chunks a plaintext of `plaintext_len` bytes is sealed into: at least one
/// (an empty file is one empty chunk), else `ceil(len / CHUNK_LEN)`.
pub fn chunk_count(plaintext_len: u64) -> u64 {
    plaintext_len.div_ceil(CHUNK_LEN as u64).max(1)
}

/// Length of the sealed stream of a plaintext of `plaintext_len` bytes:
/// `len + TAG_LEN × chunk_count(len)` (saturating at `u64::MAX`, far beyond any real file).
pub fn sealed_len(plaintext_len: u64) -> u64 {
    plaintext_len.saturating_add((TAG_LEN as u64).saturating_mul(chunk_count(plaintext_len)))
}

/// Byte offset of sealed chunk `index` in the sealed stream (where a resumed transfer
/// continues): `index × SEALED_CHUNK_LEN`, or `None` on overflow.
pub fn sealed_chunk_offset(index: u64) -> Option<u64> {
    index.checked_mul(SEALED_CHUNK_LEN as u64)
}

/// The plaintext length of a sealed stream of `sealed_len` bytes, or `None` if no
/// plaintext seals to that length (shorter than one tag, or a last chunk that would be an
/// empty trailing chunk). The inverse of [`sealed_len`].
pub fn plaintext_len(sealed_len: u64) -> Option<u64> {
    let tag = TAG_LEN as u64;
    if sealed_len < tag {
        return None;
    }
    let chunks = sealed_len.div_ceil(SEALED_CHUNK_LEN as u64);
    let plain = sealed_len.checked_sub(chunks.checked_mul(tag)?)?;
    (chunk_count(plain) == chunks).then_some(plain)
}
