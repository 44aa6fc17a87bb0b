//! Content-defined chunks of a space (docs/FORMAT.md §7.10, format version 2): a keyed chunker that cuts a file where its content says, so an edit
//! changes only the chunks around it; a keyed chunk id, so equal chunks of one space
//! (an account or a group) are stored once; and each chunk sealed on its own, padded so
//! that the server sees its size only to within [`PAD_TO`].
//!
//! Everything is keyed by the space's key ([`ChunkKeys::derive`]): the gear table the
//! chunker rolls over, the id (keyed BLAKE3 of the plaintext, never a plain hash) and the
//! sealing key. Without the space key the server cannot recompute where a known file
//! would be cut, nor its chunk ids; it learns which chunks of the space are equal, how
//! many a version has, and their sizes rounded up to [`PAD_TO`].
//!
//! ```text
//! gear[0..256]  = BLAKE3-XOF(key = HKDF(SK, "vault/v2/chunker"), "vault/v2/gear"), 2048 bytes, u64 LE each
//! cut           = gear CDC: no cut before MIN_CHUNK; then after the first byte where h < CUT_BELOW
//!                 (one chance in 768 Ki a byte); at MAX_CHUNK at most
//!                 h = (h << 1) + gear[byte]  (wrapping, from 0 at MIN_CHUNK)
//! id            = BLAKE3(key = HKDF(SK, "vault/v2/chunk-id"), plaintext)
//! padded        = plaintext ‖ 0x80 ‖ 0x00 × k   (smallest k with len(padded) + 16 a multiple of PAD_TO)
//! sealed        = AES-256-GCM(HKDF(HKDF(SK, "vault/v2/chunk-seal"), "vault/v2/chunk-key;id=<hex id>"),
//!                             nonce = 0 × 12, ad = "vault/v2/ad/chunk;id=<hex id>", padded)
//! ```
//!
//! A chunk's key is unique to its id, and the same id always seals the same plaintext, so
//! the fixed nonce never meets two messages under one key. Opening checks the padding and
//! recomputes the id from the plaintext: a chunk swapped for another, of another space or
//! altered does not open. The order of a version's chunks is kept in its sealed chunk list
//! ([`super::chunklist`]).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use super::error::{FormatError, Result};
use super::stream::TAG_LEN;
use crate::crypto::{Key32, kdf::derive_subkey};

/// No chunk but a file's last is shorter than this (256 KiB).
pub const MIN_CHUNK: usize = 256 << 10;
/// The mean chunk of random data is about this long (1 MiB): [`MIN_CHUNK`], then on
/// average 768 KiB until the rolling hash first falls below [`CUT_BELOW`].
pub const AVG_CHUNK: usize = 1 << 20;
/// No chunk is longer than this (4 MiB).
pub const MAX_CHUNK: usize = 4 << 20;
/// Sealed chunks are a multiple of this long (64 KiB): the server sees sizes only to
/// within it.
pub const PAD_TO: usize = 64 << 10;

/// Label of the chunker key, from the space key.
pub const LABEL_CHUNKER: &str = "vault/v2/chunker";
/// Label of the chunk-id key, from the space key.
pub const LABEL_CHUNK_ID: &str = "vault/v2/chunk-id";
/// Label of the chunk-sealing key, from the space key.
pub const LABEL_CHUNK_SEAL: &str = "vault/v2/chunk-seal";

/// From [`MIN_CHUNK`] on, a chunk ends after the first byte where the rolling hash is
/// below this: ⌊(2⁶⁴ − 1) / 786 432⌋, one chance in 768 KiB. The condition is the same
/// at every distance from the chunk's start (no strict-then-loose normalization), so after
/// an edit the cuts fall back onto the old ones at the first old cut far enough on:
/// normalized chunking could miss old cuts for several chunks running.
pub const CUT_BELOW: u64 = u64::MAX / (AVG_CHUNK - MIN_CHUNK) as u64;

/// A chunk's identity in its space: the keyed BLAKE3 of its plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Lowercase hex, as it appears in associated data and on the wire.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkId({})", self.to_hex())
    }
}

/// The keys of one space's chunks, derived from the space key (the account key, or the
/// group key of the generation new uploads use).
pub struct ChunkKeys {
    gear: Zeroizing<[u64; 256]>,
    id_key: Key32,
    seal_key: Key32,
}

impl std::fmt::Debug for ChunkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChunkKeys(..)")
    }
}

impl ChunkKeys {
    /// Derives the gear table, the id key and the sealing key from `space_key`.
    pub fn derive(space_key: &Key32) -> Result<ChunkKeys> {
        let chunker = derive_subkey(space_key, LABEL_CHUNKER)?;
        let mut table = Zeroizing::new([0u8; 256 * 8]);
        blake3::Hasher::new_keyed(chunker.dangerously_leak_secret())
            .update(b"vault/v2/gear")
            .finalize_xof()
            .fill(table.as_mut_slice());
        let mut gear = Zeroizing::new([0u64; 256]);
        for (entry, bytes) in gear.iter_mut().zip(table.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            *entry = u64::from_le_bytes(word);
        }
        Ok(ChunkKeys {
            gear,
            id_key: derive_subkey(space_key, LABEL_CHUNK_ID)?,
            seal_key: derive_subkey(space_key, LABEL_CHUNK_SEAL)?,
        })
    }

    /// The length of the chunk that starts `data`. `data` is the rest of the file, or at
    /// least [`MAX_CHUNK`] bytes of it; the answer depends only on the first
    /// [`MAX_CHUNK`] bytes. An empty `data` gives 0.
    pub fn cut(&self, data: &[u8]) -> usize {
        if data.len() <= MIN_CHUNK {
            return data.len();
        }
        let end = data.len().min(MAX_CHUNK);
        match scan(&self.gear, &data[MIN_CHUNK..end], CUT_BELOW) {
            Some(at) => MIN_CHUNK + at,
            None => end,
        }
    }

    /// The lengths of the chunks of a whole file held in memory, in order (none for an
    /// empty file).
    pub fn chunk_lengths(&self, mut data: &[u8]) -> Vec<usize> {
        let mut lengths = Vec::new();
        while !data.is_empty() {
            let len = self.cut(data);
            lengths.push(len);
            data = &data[len..];
        }
        lengths
    }

    /// A chunker to feed a file a piece at a time.
    pub fn cutter(&self) -> Cutter<'_> {
        Cutter {
            gear: &self.gear,
            len: 0,
            h: 0,
        }
    }

    /// A hasher of chunk ids, for a chunk fed a piece at a time.
    pub fn id_hasher(&self) -> IdHasher {
        IdHasher(blake3::Hasher::new_keyed(
            self.id_key.dangerously_leak_secret(),
        ))
    }

    /// The id of a chunk with this plaintext.
    pub fn id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(self.id_key.dangerously_leak_secret(), plaintext).as_bytes())
    }

    /// The AES-256-GCM key that seals the chunk `id` and nothing else.
    fn chunk_key(&self, id: &ChunkId) -> Result<LessSafeKey> {
        let key = derive_subkey(
            &self.seal_key,
            &format!("vault/v2/chunk-key;id={}", id.to_hex()),
        )?;
        let unbound = UnboundKey::new(&AES_256_GCM, key.dangerously_leak_secret())
            .map_err(|_| FormatError::ChunkSeal)?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Seals one chunk (at most [`MAX_CHUNK`] bytes): returns its id and the sealed bytes,
    /// a positive multiple of [`PAD_TO`] long.
    pub fn seal(&self, plaintext: &[u8]) -> Result<(ChunkId, Vec<u8>)> {
        if plaintext.len() > MAX_CHUNK {
            return Err(FormatError::ChunkSize {
                index: 0,
                len: plaintext.len(),
                expected: format!("a chunk holds at most {MAX_CHUNK} bytes"),
            });
        }
        let id = self.id(plaintext);
        let sealed_len = sealed_len(plaintext.len());
        let mut buf = Zeroizing::new(Vec::with_capacity(sealed_len));
        buf.extend_from_slice(plaintext);
        buf.push(0x80);
        buf.resize(sealed_len - TAG_LEN, 0);
        let ad = ad(&id);
        self.chunk_key(&id)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key([0u8; 12]),
                Aad::from(ad.as_bytes()),
                &mut *buf,
            )
            .map_err(|_| FormatError::ChunkSeal)?;
        Ok((id, std::mem::take(&mut *buf)))
    }

    /// Opens a sealed chunk that should be `id`: checks its length, its tag, its padding
    /// (canonical: no more than reaches the next multiple of [`PAD_TO`]) and that its
    /// plaintext has this id.
    pub fn open(&self, id: &ChunkId, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.is_empty()
            || !sealed.len().is_multiple_of(PAD_TO)
            || sealed.len() > sealed_len(MAX_CHUNK)
        {
            return Err(FormatError::ChunkOpen { id: id.to_hex() });
        }
        let mut buf = Zeroizing::new(sealed.to_vec());
        let ad = ad(id);
        let len = self
            .chunk_key(id)?
            .open_in_place(
                Nonce::assume_unique_for_key([0u8; 12]),
                Aad::from(ad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| FormatError::ChunkOpen { id: id.to_hex() })?
            .len();
        buf.truncate(len);
        let Some(mark) = buf.iter().rposition(|&b| b != 0) else {
            return Err(FormatError::ChunkOpen { id: id.to_hex() });
        };
        // The mark, then only as many zeros as reach the next multiple of PAD_TO.
        if buf[mark] != 0x80 || sealed_len(mark) != sealed.len() {
            return Err(FormatError::ChunkOpen { id: id.to_hex() });
        }
        buf.truncate(mark);
        if self.id(&buf) != *id {
            return Err(FormatError::ChunkOpen { id: id.to_hex() });
        }
        Ok(buf)
    }
}

/// A rolling hash depends on the last 64 bytes only: each step shifts the oldest
/// contribution further left, and after 64 steps out of the word.
const WINDOW: usize = 64;

/// The bytes each of [`scan`]'s four lanes covers per block (8 KiB).
const LANE: usize = 8 << 10;

/// Rolls a hash from 0 over `bytes` and returns the length up to the first byte after
/// which it is below `below`, if any.
///
/// Four lanes at once, a block of four [`LANE`]s at a time: lane 0 carries the hash on
/// from the last block, and each other lane starts its quarter with the hash rolled from 0
/// over the [`WINDOW`] bytes before it, which is exactly the hash there (see [`WINDOW`]).
/// The four chains of dependent steps run side by side, about three times as fast as one
/// on this kind of core; the result is exactly that of one byte at a time.
fn scan(gear: &[u64; 256], bytes: &[u8], below: u64) -> Option<usize> {
    scan_in_lanes(gear, bytes, below, LANE, 0).ok()
}

/// [`scan`] with lanes of `lane` bytes (at least [`WINDOW`]), going on from a hash `h`
/// rolled over the bytes before `bytes` (0: none): `Ok` with the length up to the first
/// byte after which the hash is below `below`, or `Err` with the hash after the last.
fn scan_in_lanes(
    gear: &[u64; 256],
    bytes: &[u8],
    below: u64,
    lane: usize,
    mut h: u64,
) -> Result<usize, u64> {
    let g = |b: u8| gear[usize::from(b)];
    let roll = |h: u64, b: u8| (h << 1).wrapping_add(g(b));
    let mut at = 0;
    while bytes.len() - at >= 4 * lane {
        let block = &bytes[at..at + 4 * lane];
        let (l0, rest) = block.split_at(lane);
        let (l1, rest) = rest.split_at(lane);
        let (l2, l3) = rest.split_at(lane);
        let warm = |before: &[u8]| before[lane - WINDOW..].iter().fold(0, |h, &b| roll(h, b));
        let (mut h1, mut h2, mut h3) = (warm(l0), warm(l1), warm(l2));
        // The first hit of lanes 1 to 3, if any.
        let mut hits = [usize::MAX; 3];
        for i in 0..lane {
            h = roll(h, l0[i]);
            h1 = roll(h1, l1[i]);
            h2 = roll(h2, l2[i]);
            h3 = roll(h3, l3[i]);
            if h < below {
                return Ok(at + i + 1);
            }
            if (h1 < below) | (h2 < below) | (h3 < below) {
                for (hit, lane_h) in hits.iter_mut().zip([h1, h2, h3]) {
                    if lane_h < below {
                        *hit = (*hit).min(i);
                    }
                }
            }
        }
        if let Some((k, i)) = hits.iter().enumerate().find(|(_, i)| **i != usize::MAX) {
            return Ok(at + (k + 1) * lane + i + 1);
        }
        h = h3;
        at += 4 * lane;
    }
    for (i, &b) in bytes[at..].iter().enumerate() {
        h = roll(h, b);
        if h < below {
            return Ok(at + i + 1);
        }
    }
    Err(h)
}

/// The keyed chunker fed a file a piece at a time, in order: it says where each chunk
/// ends, exactly where [`ChunkKeys::cut`] would over the whole, holding no bytes.
pub struct Cutter<'k> {
    gear: &'k [u64; 256],
    /// Bytes of the current chunk so far.
    len: usize,
    /// The rolling hash from [`MIN_CHUNK`] on.
    h: u64,
}

impl std::fmt::Debug for Cutter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cutter({} bytes into a chunk)", self.len)
    }
}

impl Cutter<'_> {
    /// Feeds the next `bytes` of the file; calls `end` with the offset in `bytes` just
    /// past each chunk that ends within them. The chunk open at the end of the file is
    /// its last (unless empty).
    pub fn feed(&mut self, bytes: &[u8], mut end: impl FnMut(usize)) {
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            if self.len < MIN_CHUNK {
                let skip = (MIN_CHUNK - self.len).min(rest.len());
                self.len += skip;
                at += skip;
                self.h = 0;
                continue;
            }
            let window = &rest[..(MAX_CHUNK - self.len).min(rest.len())];
            match scan_in_lanes(self.gear, window, CUT_BELOW, LANE, self.h) {
                Ok(n) => {
                    at += n;
                    self.len = 0;
                    end(at);
                }
                Err(h) => {
                    at += window.len();
                    self.len += window.len();
                    self.h = h;
                    if self.len == MAX_CHUNK {
                        self.len = 0;
                        end(at);
                    }
                }
            }
        }
    }

    /// Bytes fed since the last chunk ended: the length of the last chunk, at the end.
    pub fn open_len(&self) -> usize {
        self.len
    }
}

/// A chunk id computed a piece at a time (the chunk's plaintext need not be in one
/// buffer).
pub struct IdHasher(blake3::Hasher);

impl std::fmt::Debug for IdHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdHasher(..)")
    }
}

impl IdHasher {
    pub fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    /// The id of everything fed since it was made or last finished; starts afresh.
    pub fn finish(&mut self) -> ChunkId {
        let id = ChunkId(*self.0.finalize().as_bytes());
        self.0.reset();
        id
    }
}

/// The associated data of chunk `id`.
fn ad(id: &ChunkId) -> String {
    format!("vault/v2/ad/chunk;id={}", id.to_hex())
}

/// The sealed length of a chunk of `len` plaintext bytes: `len` + the 0x80 mark + the tag,
/// rounded up to [`PAD_TO`].
pub fn sealed_len(len: usize) -> usize {
    (len + 1 + TAG_LEN).div_ceil(PAD_TO) * PAD_TO
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(seed: u8) -> ChunkKeys {
        ChunkKeys::derive(&Key32::from_slice(&[seed; 32]).expect("a key")).expect("chunk keys")
    }

    /// `len` bytes that look random and are the same every run.
    fn noise(len: usize, seed: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; len];
        blake3::Hasher::new()
            .update(seed)
            .finalize_xof()
            .fill(&mut out);
        out
    }

    fn chunks<'a>(keys: &ChunkKeys, data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut at = 0;
        keys.chunk_lengths(data)
            .into_iter()
            .map(|len| {
                at += len;
                &data[at - len..at]
            })
            .collect()
    }

    #[test]
    fn four_lanes_cut_where_one_byte_at_a_time_does() {
        let keys = keys(7);
        let data = noise(4096 + 9 * LANE, b"scan");
        let one_at_a_time = |bytes: &[u8], below: u64| {
            let mut h = 0u64;
            for (i, &b) in bytes.iter().enumerate() {
                h = (h << 1).wrapping_add(keys.gear[usize::from(b)]);
                if h < below {
                    return Some(i + 1);
                }
            }
            None
        };
        // From "almost every byte" to "never": each finds the first cut or none.
        for below in [
            u64::MAX,
            u64::MAX / 2,
            u64::MAX / 5,
            u64::MAX / 300,
            CUT_BELOW,
            0,
        ] {
            for start in 0..64 {
                for len in [0, 1, 2, 3, 4, 5, 7, 8, 9, 63, 1000, 4 * LANE - 1, 9 * LANE] {
                    let bytes = &data[start..start + len];
                    let expected = one_at_a_time(bytes, below);
                    assert_eq!(
                        scan(&keys.gear, bytes, below),
                        expected,
                        "below {below}, start {start}, len {len}"
                    );
                    // Short lanes: many blocks, hits in every lane, and the tail.
                    for lane in [WINDOW, 100] {
                        assert_eq!(
                            scan_in_lanes(&keys.gear, &bytes[..len.min(4000)], below, lane, 0).ok(),
                            one_at_a_time(&bytes[..len.min(4000)], below),
                            "below {below}, start {start}, len {len}, lane {lane}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn fed_a_piece_at_a_time_the_cutter_and_the_id_hasher_agree_with_the_whole() {
        let keys = keys(8);
        let data = noise(24 << 20, b"pieces");
        let whole = keys.chunk_lengths(&data);
        assert!(whole.len() > 10, "{} chunks", whole.len());
        let ids: Vec<ChunkId> = chunks(&keys, &data).iter().map(|c| keys.id(c)).collect();
        for piece in [1000, 64 << 10, (1 << 20) + 7, 5 << 20] {
            let (mut cutter, mut hasher) = (keys.cutter(), keys.id_hasher());
            let (mut lengths, mut fed_ids, mut start) = (Vec::new(), Vec::new(), 0usize);
            for (n, bytes) in data.chunks(piece).enumerate() {
                let base = n * piece;
                let mut from = 0;
                cutter.feed(bytes, |end| {
                    hasher.update(&bytes[from..end]);
                    fed_ids.push(hasher.finish());
                    lengths.push(base + end - start);
                    (start, from) = (base + end, end);
                });
                hasher.update(&bytes[from..]);
            }
            if cutter.open_len() > 0 {
                lengths.push(cutter.open_len());
                fed_ids.push(hasher.finish());
            }
            assert_eq!(lengths, whole, "pieces of {piece}");
            assert_eq!(fed_ids, ids, "pieces of {piece}");
        }
        // A file that ends at a cap, and one shorter than the shortest chunk.
        let capped = noise(MAX_CHUNK, b"capped");
        for data in [&capped[..], &capped[..1000]] {
            let mut cutter = keys.cutter();
            let (mut lengths, mut last) = (Vec::new(), 0);
            cutter.feed(data, |end| {
                lengths.push(end - last);
                last = end;
            });
            if cutter.open_len() > 0 {
                lengths.push(cutter.open_len());
            }
            assert_eq!(lengths, keys.chunk_lengths(data));
        }
    }

    #[test]
    fn chunks_are_within_bounds_and_average_about_a_mebibyte() {
        let data = noise(64 << 20, b"bounds");
        let lengths = keys(1).chunk_lengths(&data);
        assert_eq!(lengths.iter().sum::<usize>(), data.len());
        let (last, rest) = lengths.split_last().expect("chunks");
        assert!(
            rest.iter().all(|&l| (MIN_CHUNK..=MAX_CHUNK).contains(&l)),
            "{lengths:?}"
        );
        assert!(*last <= MAX_CHUNK);
        let mean = data.len() / lengths.len();
        assert!(
            (768 << 10..=1536 << 10).contains(&mean),
            "mean chunk {mean} bytes"
        );
    }

    #[test]
    fn an_insertion_or_deletion_changes_only_the_chunks_around_it() {
        let keys = keys(2);
        let data = noise(32 << 20, b"edit");
        let before: Vec<ChunkId> = chunks(&keys, &data).iter().map(|c| keys.id(c)).collect();
        let middle = data.len() / 2 + 12_345;
        let mut inserted = data.clone();
        inserted.splice(middle..middle, noise(100, b"inserted"));
        let mut deleted = data.clone();
        deleted.drain(middle..middle + 100);
        for edited in [inserted, deleted] {
            let after: Vec<ChunkId> = chunks(&keys, &edited).iter().map(|c| keys.id(c)).collect();
            let new = after.iter().filter(|id| !before.contains(id)).count();
            assert!(
                (1..=2).contains(&new),
                "{new} new chunks of {}",
                after.len()
            );
            assert!(after.len().abs_diff(before.len()) <= 1);
        }
    }

    #[test]
    fn another_space_cuts_elsewhere_and_names_chunks_otherwise() {
        let data = noise(16 << 20, b"spaces");
        let (a, b) = (keys(3), keys(4));
        assert_ne!(a.chunk_lengths(&data), b.chunk_lengths(&data));
        assert_ne!(a.id(&data[..1000]), b.id(&data[..1000]));
        assert_ne!(
            a.id(&data[..1000]),
            ChunkId(*blake3::hash(&data[..1000]).as_bytes())
        );
    }

    #[test]
    fn a_sealed_chunk_is_padded_opens_to_its_plaintext_and_nothing_else() {
        let keys = keys(5);
        for len in [0, 1, PAD_TO - 17, PAD_TO - 16, MIN_CHUNK + 3, MAX_CHUNK] {
            let plaintext = noise(len, b"seal");
            let (id, sealed) = keys.seal(&plaintext).expect("sealed");
            assert_eq!(sealed.len(), sealed_len(len));
            assert!(sealed.len().is_multiple_of(PAD_TO) && sealed.len() > len);
            assert_eq!(*keys.open(&id, &sealed).expect("opened"), plaintext);
            // Sealing is deterministic within the space: equal chunks are stored once.
            assert_eq!(keys.seal(&plaintext).expect("sealed").1, sealed);
        }
        let (id, sealed) = keys.seal(b"one chunk").expect("sealed");
        let (other_id, other) = keys.seal(b"another chunk").expect("sealed");
        assert!(keys.open(&other_id, &sealed).is_err(), "swapped");
        assert!(keys.open(&id, &other).is_err(), "swapped");
        let mut flipped = sealed.clone();
        flipped[7] ^= 1;
        assert!(keys.open(&id, &flipped).is_err(), "altered");
        assert!(keys.open(&id, &sealed[..PAD_TO / 2]).is_err(), "cut");
        assert!(self::keys(6).open(&id, &sealed).is_err(), "another space");
        assert!(keys.seal(&vec![0u8; MAX_CHUNK + 1]).is_err());
    }
}
