//! File contents: the STREAM construction over AES-256-GCM (docs/FORMAT.md §7.2), as in age.
//!
//! The plaintext is cut into chunks of [`CHUNK_LEN`] bytes (the last one may be shorter;
//! an empty file is a single empty last chunk). Chunk `i` is sealed under the file key
//! with
//!
//! ```text
//! nonce(i, last) = i as 11-byte big-endian integer ‖ (0x01 if last else 0x00)
//! sealed chunk   = AES-256-GCM(FK, nonce(i, last), ad = "", plaintext chunk) (ciphertext ‖ tag 16)
//! ```
//!
//! Nothing but the ciphertext and tag is stored: the nonce is derived from the position,
//! so a chunk moved, dropped, duplicated or wrongly flagged as last fails to open, and a
//! stream that ends before a chunk flagged last is reported as truncated by
//! [`StreamOpener::finish`]. The associated data is empty because the file key is fresh for
//! every file version. A file whose length is a positive multiple of [`CHUNK_LEN`] ends
//! with its final full chunk; an empty last chunk after data chunks is refused (as in age),
//! so every plaintext has exactly one encoding length ([`sealed_len`]).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use super::error::{FormatError, Result};
use crate::crypto::Key32;

/// Plaintext bytes per chunk (1 MiB). Every chunk but the last is exactly this long.
pub const CHUNK_LEN: usize = 1 << 20;
/// Bytes the AES-GCM tag adds to every chunk.
pub const TAG_LEN: usize = 16;
/// Length of a full sealed chunk: [`CHUNK_LEN`] + [`TAG_LEN`].
pub const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;

/// The AES-GCM nonce of chunk `index`: `index` as 11-byte big-endian ‖ `0x01` if `last` else
/// `0x00`. Derived, never stored.
pub fn chunk_nonce(index: u64, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[3..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

fn aead_key(key: &Key32) -> Option<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, key.dangerously_leak_secret())
        .ok()
        .map(LessSafeKey::new)
}

fn size_error(index: u64, len: usize, expected: String) -> FormatError {
    FormatError::ChunkSize {
        index,
        len,
        expected,
    }
}

/// Seals a file's chunks in order. Create one per file version, with that version's fresh
/// file key; the key copy it holds is wiped on drop.
#[derive(Debug)]
pub struct StreamSealer {
    key: Key32,
    next: u64,
    finished: bool,
    chunk_len: usize,
}

impl StreamSealer {
    /// A sealer for a new file version whose file key is `file_key`.
    pub fn new(file_key: &Key32) -> Self {
        Self::with_chunk_len(file_key, CHUNK_LEN)
    }

    /// A sealer with another chunk size: private, so that only the property tests (which
    /// cross many chunk boundaries cheaply) use anything but [`CHUNK_LEN`].
    fn with_chunk_len(file_key: &Key32, chunk_len: usize) -> Self {
        Self {
            key: file_key.clone(),
            next: 0,
            finished: false,
            chunk_len,
        }
    }

    /// [`StreamSealer::with_chunk_len`] for the fuzz target, which crosses chunk boundaries
    /// with inputs of a few bytes. Exists only in builds with `--cfg fuzzing`.
    #[cfg(fuzzing)]
    pub fn fuzzing_with_chunk_len(file_key: &Key32, chunk_len: usize) -> Self {
        Self::with_chunk_len(file_key, chunk_len)
    }

    /// The index the next sealed chunk will get.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// Whether the last chunk has been sealed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Seals the next chunk. A chunk not flagged `last` must be exactly [`CHUNK_LEN`]
    /// bytes; the last chunk may be shorter, and is empty only when it is the single chunk
    /// of an empty file. Nothing can be sealed after the last chunk. Returns ciphertext ‖
    /// tag, [`TAG_LEN`] bytes longer than `plaintext`. A refused chunk leaves the sealer as
    /// it was.
    pub fn seal_chunk(&mut self, plaintext: &[u8], last: bool) -> Result<Vec<u8>> {
        // Exact capacity, so no reallocation leaves plaintext behind; wiped if sealing fails.
        let mut out = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
        out.extend_from_slice(plaintext);
        self.seal_chunk_in_place(&mut out, last)?;
        Ok(std::mem::take(&mut *out))
    }

    /// [`StreamSealer::seal_chunk`] without a copy: `buf` holds the plaintext chunk and
    /// becomes ciphertext ‖ tag. Its capacity must already have room for the tag (so no
    /// reallocation can leave plaintext behind); the caller wipes it if this fails.
    pub fn seal_chunk_in_place(&mut self, buf: &mut Vec<u8>, last: bool) -> Result<()> {
        if self.finished {
            return Err(FormatError::ChunkAfterLast);
        }
        let index = self.next;
        let chunk_len = self.chunk_len;
        let len = buf.len();
        if !last && len != chunk_len {
            return Err(size_error(
                index,
                len,
                format!("every chunk but the last must be exactly {chunk_len} bytes"),
            ));
        }
        if len > chunk_len {
            return Err(size_error(
                index,
                len,
                format!("a chunk holds at most {chunk_len} bytes"),
            ));
        }
        if last && len == 0 && index > 0 {
            return Err(FormatError::EmptyTrailingChunk);
        }
        if buf.capacity() - len < TAG_LEN {
            return Err(size_error(
                index,
                len,
                format!("the buffer needs room for the {TAG_LEN}-byte tag"),
            ));
        }
        let next = if last {
            index
        } else {
            index.checked_add(1).ok_or(FormatError::TooManyChunks)?
        };
        let aead = aead_key(&self.key).ok_or(FormatError::Encrypt)?;
        let tag = aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(chunk_nonce(index, last)),
                Aad::empty(),
                buf.as_mut_slice(),
            )
            .map_err(|_| FormatError::Encrypt)?;
        buf.extend_from_slice(tag.as_ref());
        self.next = next;
        self.finished = last;
        Ok(())
    }
}

/// Opens a file's chunks. The first chunk opened may have any index (a resumed download
/// starts in the middle); after that, indices must follow one by one. Call
/// [`StreamOpener::finish`] at the end: it fails if the last chunk never came. The key copy
/// it holds is wiped on drop.
#[derive(Debug)]
pub struct StreamOpener {
    key: Key32,
    next: Option<u64>,
    finished: bool,
    chunk_len: usize,
}

impl StreamOpener {
    /// An opener for a file version whose file key is `file_key`.
    pub fn new(file_key: &Key32) -> Self {
        Self::with_chunk_len(file_key, CHUNK_LEN)
    }

    /// An opener with another chunk size, for the property tests only.
    fn with_chunk_len(file_key: &Key32, chunk_len: usize) -> Self {
        Self {
            key: file_key.clone(),
            next: None,
            finished: false,
            chunk_len,
        }
    }

    /// [`StreamOpener::with_chunk_len`] for the fuzz target, which crosses chunk boundaries
    /// with inputs of a few bytes. Exists only in builds with `--cfg fuzzing`.
    #[cfg(fuzzing)]
    pub fn fuzzing_with_chunk_len(file_key: &Key32, chunk_len: usize) -> Self {
        Self::with_chunk_len(file_key, chunk_len)
    }

    /// The index the next chunk must have: `None` before the first chunk (any index may
    /// start) and after the last one (no chunk may follow).
    pub fn next_index(&self) -> Option<u64> {
        self.next
    }

    /// Whether the last chunk has been opened.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Opens the sealed chunk at position `index`; `last` says whether it is the file's
    /// final chunk (known from the sealed or plaintext size, see [`chunk_count`] and
    /// [`plaintext_len`]). Any wrong index, flag, key or byte fails; a failed chunk leaves
    /// the opener as it was.
    pub fn open_chunk(
        &mut self,
        index: u64,
        sealed: &[u8],
        last: bool,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let mut buf = Zeroizing::new(sealed.to_vec());
        let plain_len = self.open_chunk_in_place(index, &mut buf, last)?;
        buf.truncate(plain_len);
        Ok(buf)
    }

    /// [`StreamOpener::open_chunk`] without a copy: `buf` holds the sealed chunk and its
    /// first `n` bytes become the plaintext, `n` returned. After a failure `buf` holds
    /// nothing to use.
    pub fn open_chunk_in_place(&mut self, index: u64, buf: &mut [u8], last: bool) -> Result<usize> {
        if self.finished {
            return Err(FormatError::ChunkAfterLast);
        }
        if let Some(expected) = self.next
            && index != expected
        {
            return Err(FormatError::ChunkOrder {
                expected,
                got: index,
            });
        }
        let full = self.chunk_len + TAG_LEN;
        let len = buf.len();
        if !last && len != full {
            return Err(size_error(
                index,
                len,
                format!("every sealed chunk but the last must be exactly {full} bytes"),
            ));
        }
        if len < TAG_LEN || len > full {
            return Err(size_error(
                index,
                len,
                format!("a sealed chunk has {TAG_LEN} to {full} bytes"),
            ));
        }
        if last && len == TAG_LEN && index > 0 {
            return Err(FormatError::EmptyTrailingChunk);
        }
        let next = if last {
            None
        } else {
            Some(index.checked_add(1).ok_or(FormatError::TooManyChunks)?)
        };
        let aead = aead_key(&self.key).ok_or(FormatError::ChunkDecrypt { index })?;
        let plain_len = aead
            .open_in_place(
                Nonce::assume_unique_for_key(chunk_nonce(index, last)),
                Aad::empty(),
                buf,
            )
            .map_err(|_| FormatError::ChunkDecrypt { index })?
            .len();
        self.next = next;
        self.finished = last;
        Ok(plain_len)
    }

    /// Ends the stream: an error unless the chunk flagged last was opened, so a download
    /// cut short (or a server that withholds the end) is never taken for a whole file.
    pub fn finish(self) -> Result<()> {
        if self.finished {
            Ok(())
        } else {
            Err(FormatError::Truncated)
        }
    }
}

pub use vault_proto::sizes::{chunk_count, plaintext_len, sealed_chunk_offset, sealed_len};

/// Seals a whole in-memory plaintext into its chunks (for small files and tests).
pub fn seal_all(file_key: &Key32, data: &[u8]) -> Result<Vec<Vec<u8>>> {
    seal_all_with(StreamSealer::new(file_key), data)
}

fn seal_all_with(mut sealer: StreamSealer, data: &[u8]) -> Result<Vec<Vec<u8>>> {
    if data.is_empty() {
        return Ok(vec![sealer.seal_chunk(&[], true)?]);
    }
    let count = data.len().div_ceil(sealer.chunk_len);
    data.chunks(sealer.chunk_len)
        .enumerate()
        .map(|(i, chunk)| sealer.seal_chunk(chunk, i + 1 == count))
        .collect()
}

/// Opens all chunks of a file from index 0 and checks that the last one is there (for
/// small files and tests).
pub fn open_all<C: AsRef<[u8]>>(file_key: &Key32, chunks: &[C]) -> Result<Zeroizing<Vec<u8>>> {
    open_all_with(StreamOpener::new(file_key), chunks)
}

fn open_all_with<C: AsRef<[u8]>>(
    mut opener: StreamOpener,
    chunks: &[C],
) -> Result<Zeroizing<Vec<u8>>> {
    let total: usize = chunks.iter().map(|c| c.as_ref().len()).sum();
    let mut out = Zeroizing::new(Vec::with_capacity(total));
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let plain = opener.open_chunk(i as u64, chunk.as_ref(), last)?;
        out.extend_from_slice(&plain);
    }
    opener.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `chunk_count` for a chunk length other than [`CHUNK_LEN`].
    fn chunk_count_with(plaintext_len: u64, chunk_len: u64) -> u64 {
        plaintext_len.div_ceil(chunk_len).max(1)
    }

    fn key(b: u8) -> Key32 {
        Key32::from_bytes([b; 32])
    }

    /// Deterministic, non-repeating-per-chunk test data.
    fn data(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i >> 20) as u8)
            .collect()
    }

    fn round_trip(len: usize) -> Result<()> {
        let k = key(1);
        let pt = data(len);
        let chunks = seal_all(&k, &pt)?;
        assert_eq!(chunks.len() as u64, chunk_count(len as u64), "len {len}");
        let total: usize = chunks.iter().map(Vec::len).sum();
        assert_eq!(total as u64, sealed_len(len as u64), "len {len}");
        assert_eq!(plaintext_len(total as u64), Some(len as u64), "len {len}");
        for c in &chunks[..chunks.len() - 1] {
            assert_eq!(c.len(), SEALED_CHUNK_LEN);
        }
        assert!(*open_all(&k, &chunks)? == pt, "len {len}");
        Ok(())
    }

    #[test]
    fn boundary_sizes_round_trip() -> Result<()> {
        for len in [
            0,
            1,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            CHUNK_LEN + 1,
            3 * CHUNK_LEN + 5,
        ] {
            round_trip(len)?;
        }
        Ok(())
    }

    #[test]
    fn empty_file_is_one_empty_last_chunk() -> Result<()> {
        let chunks = seal_all(&key(2), b"")?;
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].len(), TAG_LEN);
        assert!(open_all(&key(2), &chunks)?.is_empty());
        Ok(())
    }

    #[test]
    fn exact_multiple_ends_with_full_last_chunk() -> Result<()> {
        let chunks = seal_all(&key(3), &data(2 * CHUNK_LEN))?;
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].len(), SEALED_CHUNK_LEN);
        Ok(())
    }

    #[test]
    fn sizes_and_counts() {
        let c = CHUNK_LEN as u64;
        let t = TAG_LEN as u64;
        assert_eq!(chunk_count(0), 1);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(c), 1);
        assert_eq!(chunk_count(c + 1), 2);
        assert_eq!(sealed_len(0), t);
        assert_eq!(sealed_len(c), c + t);
        assert_eq!(sealed_len(3 * c + 5), 3 * c + 5 + 4 * t);
        assert_eq!(sealed_len(u64::MAX), u64::MAX);
        assert_eq!(plaintext_len(0), None);
        assert_eq!(plaintext_len(t - 1), None);
        assert_eq!(plaintext_len(t), Some(0));
        // One full sealed chunk plus an empty trailing chunk is not a valid length.
        assert_eq!(plaintext_len(c + 2 * t), None);
        assert_eq!(plaintext_len(c + 2 * t + 1), Some(c + 1));
        assert_eq!(sealed_chunk_offset(0), Some(0));
        assert_eq!(sealed_chunk_offset(3), Some(3 * (c + t)));
        assert_eq!(sealed_chunk_offset(u64::MAX), None);
    }

    #[test]
    fn nonce_layout() {
        assert_eq!(chunk_nonce(0, false), [0; 12]);
        assert_eq!(chunk_nonce(0, true), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            chunk_nonce(0x0102_0304_0506_0708, false),
            [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0]
        );
        assert_eq!(chunk_nonce(u64::MAX, true)[..3], [0; 3]);
        assert_eq!(chunk_nonce(u64::MAX, true)[3..11], [0xff; 8]);
        assert_eq!(chunk_nonce(u64::MAX, true)[11], 1);
    }

    /// Four chunks (3 full + 5 bytes), small enough to mangle every which way.
    fn four_chunks() -> Result<(Key32, Vec<u8>, Vec<Vec<u8>>)> {
        let k = key(4);
        let pt = data(3 * CHUNK_LEN + 5);
        let chunks = seal_all(&k, &pt)?;
        assert_eq!(chunks.len(), 4);
        Ok((k, pt, chunks))
    }

    #[test]
    fn truncated_is_rejected() -> Result<()> {
        let (k, _, chunks) = four_chunks()?;
        // Dropping the last chunk: every remaining chunk opens, but the stream has no end.
        let mut opener = StreamOpener::new(&k);
        for (i, c) in chunks[..3].iter().enumerate() {
            opener.open_chunk(i as u64, c, false)?;
        }
        assert_eq!(opener.finish(), Err(FormatError::Truncated));
        // open_all treats its final element as last: the full chunk 2 is not a last chunk.
        assert_eq!(
            open_all(&k, &chunks[..3]).err(),
            Some(FormatError::ChunkDecrypt { index: 2 })
        );
        assert_eq!(
            open_all::<Vec<u8>>(&k, &[]).err(),
            Some(FormatError::Truncated)
        );
        Ok(())
    }

    #[test]
    fn reordered_dropped_duplicated_are_rejected() -> Result<()> {
        let (k, _, chunks) = four_chunks()?;
        let swapped = vec![
            chunks[1].clone(),
            chunks[0].clone(),
            chunks[2].clone(),
            chunks[3].clone(),
        ];
        assert_eq!(
            open_all(&k, &swapped).err(),
            Some(FormatError::ChunkDecrypt { index: 0 })
        );
        let dropped = vec![chunks[0].clone(), chunks[2].clone(), chunks[3].clone()];
        assert_eq!(
            open_all(&k, &dropped).err(),
            Some(FormatError::ChunkDecrypt { index: 1 })
        );
        let duplicated = vec![
            chunks[0].clone(),
            chunks[0].clone(),
            chunks[1].clone(),
            chunks[2].clone(),
            chunks[3].clone(),
        ];
        assert_eq!(
            open_all(&k, &duplicated).err(),
            Some(FormatError::ChunkDecrypt { index: 1 })
        );
        // The opener itself refuses indices that skip or repeat.
        let mut opener = StreamOpener::new(&k);
        opener.open_chunk(0, &chunks[0], false)?;
        assert_eq!(
            opener.open_chunk(2, &chunks[2], false).err(),
            Some(FormatError::ChunkOrder {
                expected: 1,
                got: 2
            })
        );
        assert_eq!(
            opener.open_chunk(0, &chunks[0], false).err(),
            Some(FormatError::ChunkOrder {
                expected: 1,
                got: 0
            })
        );
        Ok(())
    }

    #[test]
    fn tampered_bit_in_each_chunk_is_rejected() -> Result<()> {
        let (k, _, chunks) = four_chunks()?;
        for i in 0..chunks.len() {
            // A bit in the body and a bit in the tag of chunk i.
            for pos in [0, chunks[i].len() / 2, chunks[i].len() - 1] {
                let mut bad = chunks.clone();
                bad[i][pos] ^= 0x10;
                assert_eq!(
                    open_all(&k, &bad).err(),
                    Some(FormatError::ChunkDecrypt { index: i as u64 }),
                    "chunk {i} byte {pos}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn wrong_last_flag_is_rejected() -> Result<()> {
        let (k, _, chunks) = four_chunks()?;
        // A full middle chunk presented as last.
        let mut opener = StreamOpener::new(&k);
        opener.open_chunk(0, &chunks[0], false)?;
        assert_eq!(
            opener.open_chunk(1, &chunks[1], true).err(),
            Some(FormatError::ChunkDecrypt { index: 1 })
        );
        // The real last chunk presented as not last (wrong size for a middle chunk).
        let mut opener = StreamOpener::new(&k);
        assert!(matches!(
            opener.open_chunk(3, &chunks[3], false),
            Err(FormatError::ChunkSize { index: 3, .. })
        ));
        // A last full chunk (file of exactly one chunk) presented as not last.
        let one = seal_all(&k, &data(CHUNK_LEN))?;
        let mut opener = StreamOpener::new(&k);
        assert_eq!(
            opener.open_chunk(0, &one[0], false).err(),
            Some(FormatError::ChunkDecrypt { index: 0 })
        );
        Ok(())
    }

    #[test]
    fn chunk_from_another_file_is_rejected() -> Result<()> {
        let (k, _, chunks) = four_chunks()?;
        let other = seal_all(&key(5), &data(3 * CHUNK_LEN + 5))?;
        for i in 0..chunks.len() {
            let mut mixed = chunks.clone();
            mixed[i] = other[i].clone();
            assert_eq!(
                open_all(&k, &mixed).err(),
                Some(FormatError::ChunkDecrypt { index: i as u64 }),
                "chunk {i}"
            );
        }
        Ok(())
    }

    #[test]
    fn open_from_middle_index() -> Result<()> {
        let (k, pt, chunks) = four_chunks()?;
        let mut opener = StreamOpener::new(&k);
        assert_eq!(opener.next_index(), None);
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate().skip(2) {
            out.extend_from_slice(&opener.open_chunk(i as u64, chunk, i == 3)?);
        }
        assert!(opener.is_finished());
        assert_eq!(opener.next_index(), None);
        opener.finish()?;
        assert!(out == pt[2 * CHUNK_LEN..]);
        Ok(())
    }

    #[test]
    fn nothing_after_last() -> Result<()> {
        let k = key(6);
        let mut sealer = StreamSealer::new(&k);
        let sealed = sealer.seal_chunk(b"tail", true)?;
        assert!(sealer.is_finished());
        assert_eq!(
            sealer.seal_chunk(b"more", true).err(),
            Some(FormatError::ChunkAfterLast)
        );
        let mut opener = StreamOpener::new(&k);
        opener.open_chunk(0, &sealed, true)?;
        assert_eq!(
            opener.open_chunk(1, &sealed, true).err(),
            Some(FormatError::ChunkAfterLast)
        );
        Ok(())
    }

    #[test]
    fn sealer_enforces_chunk_sizes() -> Result<()> {
        let k = key(7);
        let mut sealer = StreamSealer::new(&k);
        assert!(matches!(
            sealer.seal_chunk(&[0; 10], false),
            Err(FormatError::ChunkSize {
                index: 0,
                len: 10,
                ..
            })
        ));
        assert!(matches!(
            sealer.seal_chunk(&vec![0; CHUNK_LEN + 1], true),
            Err(FormatError::ChunkSize { index: 0, .. })
        ));
        // Refusals don't advance the sealer.
        assert_eq!(sealer.next_index(), 0);
        sealer.seal_chunk(&vec![0; CHUNK_LEN], false)?;
        assert_eq!(sealer.next_index(), 1);
        assert_eq!(
            sealer.seal_chunk(b"", true).err(),
            Some(FormatError::EmptyTrailingChunk)
        );
        let last = sealer.seal_chunk(b"x", true)?;
        assert_eq!(last.len(), 1 + TAG_LEN);
        Ok(())
    }

    #[test]
    fn in_place_sealing_and_opening_match_the_copying_ones() -> Result<()> {
        let k = key(9);
        let data: Vec<u8> = (0..CHUNK_LEN + 5).map(|i| (i % 253) as u8).collect();
        let mut copying = StreamSealer::new(&k);
        let mut in_place = StreamSealer::new(&k);
        let mut sealed = Vec::new();
        for (i, piece) in data.chunks(CHUNK_LEN).enumerate() {
            let last = i == 1;
            let mut buf = Vec::with_capacity(piece.len() + TAG_LEN);
            buf.extend_from_slice(piece);
            in_place.seal_chunk_in_place(&mut buf, last)?;
            assert_eq!(buf, copying.seal_chunk(piece, last)?);
            sealed.push(buf);
        }
        // No room for the tag: refused, and the sealer stays where it was.
        let mut tight = b"abc".to_vec();
        tight.shrink_to_fit();
        let mut fresh = StreamSealer::new(&k);
        if tight.capacity() - tight.len() < TAG_LEN {
            assert!(fresh.seal_chunk_in_place(&mut tight, true).is_err());
            assert_eq!(fresh.next_index(), 0);
        }

        let mut opener = StreamOpener::new(&k);
        let mut back = Vec::new();
        for (i, chunk) in sealed.iter_mut().enumerate() {
            let n = opener.open_chunk_in_place(i as u64, chunk, i == 1)?;
            back.extend_from_slice(&chunk[..n]);
        }
        opener.finish()?;
        assert_eq!(back, data);
        // A flipped byte fails in place too, and the opener does not advance.
        let mut bad = StreamSealer::new(&k).seal_chunk(b"hello", true)?;
        bad[0] ^= 1;
        let mut opener = StreamOpener::new(&k);
        assert_eq!(
            opener.open_chunk_in_place(0, &mut bad, true),
            Err(FormatError::ChunkDecrypt { index: 0 })
        );
        assert!(!opener.is_finished());
        Ok(())
    }

    #[test]
    fn opener_checks_sizes_and_empty_trailing_chunk() -> Result<()> {
        let k = key(8);
        let mut opener = StreamOpener::new(&k);
        for bad in [0, TAG_LEN - 1] {
            assert!(matches!(
                opener.open_chunk(0, &vec![0; bad], true),
                Err(FormatError::ChunkSize { .. })
            ));
        }
        assert!(matches!(
            opener.open_chunk(0, &vec![0; SEALED_CHUNK_LEN + 1], true),
            Err(FormatError::ChunkSize { .. })
        ));
        assert!(matches!(
            opener.open_chunk(0, &vec![0; SEALED_CHUNK_LEN - 1], false),
            Err(FormatError::ChunkSize { .. })
        ));
        // An empty last chunk at index > 0 (what a sealer for a 1 MiB file never writes).
        let mut sealer = StreamSealer::with_chunk_len(&k, 4);
        let first = sealer.seal_chunk(b"abcd", false)?;
        let mut opener = StreamOpener::with_chunk_len(&k, 4);
        opener.open_chunk(0, &first, false)?;
        assert_eq!(
            opener.open_chunk(1, &[0; TAG_LEN], true).err(),
            Some(FormatError::EmptyTrailingChunk)
        );
        Ok(())
    }

    #[test]
    fn failed_chunk_leaves_opener_usable() -> Result<()> {
        let (k, _, chunks) = four_chunks()?;
        let mut opener = StreamOpener::new(&k);
        opener.open_chunk(0, &chunks[0], false)?;
        let mut bad = chunks[1].clone();
        bad[5] ^= 1;
        assert!(opener.open_chunk(1, &bad, false).is_err());
        assert_eq!(opener.next_index(), Some(1));
        opener.open_chunk(1, &chunks[1], false)?;
        Ok(())
    }

    #[test]
    fn same_key_same_data_same_ciphertext_different_key_differs() -> Result<()> {
        // Deterministic by construction (the file key is fresh per version in practice).
        assert_eq!(seal_all(&key(9), b"abc")?, seal_all(&key(9), b"abc")?);
        assert_ne!(seal_all(&key(9), b"abc")?, seal_all(&key(10), b"abc")?);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Round trips over random lengths up to 3 small chunks + change, with a
        /// 64-byte test chunk size so every boundary is crossed.
        #[test]
        fn prop_round_trip(data in proptest::collection::vec(any::<u8>(), 0..=200), kb in any::<u8>()) {
            const SMALL: usize = 64;
            let k = key(kb);
            let chunks = seal_all_with(StreamSealer::with_chunk_len(&k, SMALL), &data)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(chunks.len() as u64, chunk_count_with(data.len() as u64, SMALL as u64));
            let total: usize = chunks.iter().map(Vec::len).sum();
            prop_assert_eq!(total, data.len() + TAG_LEN * chunks.len());
            let opened = open_all_with(StreamOpener::with_chunk_len(&k, SMALL), &chunks)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(opened.as_slice(), data.as_slice());
            // Dropping the final chunk never passes.
            if chunks.len() > 1 {
                let mut opener = StreamOpener::with_chunk_len(&k, SMALL);
                for (i, c) in chunks[..chunks.len() - 1].iter().enumerate() {
                    opener.open_chunk(i as u64, c, false).map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                prop_assert_eq!(opener.finish(), Err(FormatError::Truncated));
            }
        }

        #[test]
        fn prop_length_inverse(len in 0u64..(1 << 40)) {
            prop_assert_eq!(plaintext_len(sealed_len(len)), Some(len));
        }
    }
}
