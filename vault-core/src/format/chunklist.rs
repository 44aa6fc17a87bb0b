//! A version's chunk list (docs/FORMAT.md §7.11, format version 2, not yet written by
//! clients): the ordered ids and plaintext lengths of the content-defined chunks
//! ([`super::chunks`]) that make up one file version, sealed under that version's file key.
//! The server stores chunks by id and may keep the ids in the clear to count references;
//! this sealed list is what a client trusts for their order and lengths, so a server that
//! drops, repeats or reorders chunks, or serves another version's, is caught.
//!
//! ```text
//! list   = 0x02 ‖ count (u32 BE) ‖ count × (len (u32 BE) ‖ id (32))
//! sealed = seal(HKDF(FK, "vault/v2/chunk-list"), ad = "vault/v2/ad/chunk-list", list)     (section 2)
//! ```

use super::chunks::{ChunkId, MAX_CHUNK};
use super::error::{FormatError, Result};
use crate::crypto::seal::{self, NONCE_LEN, SEAL_OVERHEAD};
use crate::crypto::{Key32, derive_subkey};

/// The version byte of a chunk list.
pub const CHUNK_LIST_VERSION: u8 = 2;
/// Label of the chunk-list key, from the file key.
pub const LABEL_CHUNK_LIST: &str = "vault/v2/chunk-list";
/// Associated data of a sealed chunk list.
pub const AD_CHUNK_LIST: &[u8] = b"vault/v2/ad/chunk-list";
/// Bytes per entry: the length and the id.
const ENTRY_LEN: usize = 4 + 32;
/// At most this many chunks in one version (16 Mi: 64 TiB of 4 MiB chunks), so a list's
/// size is bounded before anything is allocated.
pub const MAX_CHUNKS: usize = 1 << 24;

/// One chunk of a version: which, and how many plaintext bytes it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

/// The sealed length of a list of `count` chunks.
pub fn sealed_list_len(count: usize) -> u64 {
    (SEAL_OVERHEAD + 5 + ENTRY_LEN * count) as u64
}

/// Whether `sealed_len` is the sealed length of some list of at most [`MAX_CHUNKS`]
/// chunks (so a downloader knows how much to read before anything opens).
pub fn is_sealed_len(sealed_len: u64) -> bool {
    let Some(entries) = sealed_len.checked_sub((SEAL_OVERHEAD + 5) as u64) else {
        return false;
    };
    entries.is_multiple_of(ENTRY_LEN as u64) && entries / ENTRY_LEN as u64 <= MAX_CHUNKS as u64
}

/// The plaintext length of a list's chunks together.
pub fn total_len(list: &[ChunkRef]) -> u64 {
    list.iter().map(|c| u64::from(c.len)).sum()
}

fn list_key(file_key: &Key32) -> Result<Key32> {
    Ok(derive_subkey(file_key, LABEL_CHUNK_LIST)?)
}

fn encode(list: &[ChunkRef]) -> Result<Vec<u8>> {
    if list.len() > MAX_CHUNKS {
        return Err(FormatError::ChunkListFormat(format!(
            "{} chunks; a version holds at most {MAX_CHUNKS}",
            list.len()
        )));
    }
    let mut out = Vec::with_capacity(5 + ENTRY_LEN * list.len());
    out.push(CHUNK_LIST_VERSION);
    out.extend_from_slice(&(list.len() as u32).to_be_bytes());
    for chunk in list {
        check_len(chunk.len)?;
        out.extend_from_slice(&chunk.len.to_be_bytes());
        out.extend_from_slice(&chunk.id.0);
    }
    Ok(out)
}

fn check_len(len: u32) -> Result<()> {
    if len == 0 || len as usize > MAX_CHUNK {
        return Err(FormatError::ChunkListFormat(format!(
            "a chunk of {len} bytes; chunks hold 1 to {MAX_CHUNK}"
        )));
    }
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<Vec<ChunkRef>> {
    let bad = |why: String| FormatError::ChunkListFormat(why);
    let (&version, rest) = bytes.split_first().ok_or_else(|| bad("empty".to_owned()))?;
    if version != CHUNK_LIST_VERSION {
        return Err(bad(format!("unknown version {version}")));
    }
    let (count, entries) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| bad("no chunk count".to_owned()))?;
    let count = u32::from_be_bytes(*count) as usize;
    if count > MAX_CHUNKS || entries.len() != count * ENTRY_LEN {
        return Err(bad(format!(
            "{count} chunks declared in {} bytes of entries",
            entries.len()
        )));
    }
    entries
        .chunks_exact(ENTRY_LEN)
        .map(|entry| {
            let (len, id) = entry.split_at(4);
            let len = u32::from_be_bytes(len.try_into().map_err(|_| bad("entry".to_owned()))?);
            check_len(len)?;
            let id = id.try_into().map_err(|_| bad("entry".to_owned()))?;
            Ok(ChunkRef {
                id: ChunkId(id),
                len,
            })
        })
        .collect()
}

/// Seals the chunk list of the version whose file key is `file_key`.
pub fn seal_chunk_list(file_key: &Key32, list: &[ChunkRef]) -> Result<Vec<u8>> {
    Ok(seal::seal(
        &list_key(file_key)?,
        AD_CHUNK_LIST,
        &encode(list)?,
    )?)
}

/// [`seal_chunk_list`] with a caller-chosen nonce. Only for golden test vectors.
#[doc(hidden)]
pub fn seal_chunk_list_with_nonce(
    file_key: &Key32,
    nonce: [u8; NONCE_LEN],
    list: &[ChunkRef],
) -> Result<Vec<u8>> {
    Ok(seal::seal_with_nonce(
        &list_key(file_key)?,
        nonce,
        AD_CHUNK_LIST,
        &encode(list)?,
    )?)
}

/// Opens a sealed chunk list: [`FormatError::ChunkListDecrypt`] for a wrong key (another
/// version's list) or altered bytes, [`FormatError::ChunkListFormat`] if it opens but is
/// not the grammar above.
pub fn open_chunk_list(file_key: &Key32, sealed: &[u8]) -> Result<Vec<ChunkRef>> {
    let plain = seal::open(&list_key(file_key)?, AD_CHUNK_LIST, sealed)
        .map_err(|_| FormatError::ChunkListDecrypt)?;
    decode(&plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> Key32 {
        Key32::from_slice(&[seed; 32]).expect("a key")
    }

    fn list() -> Vec<ChunkRef> {
        (0u8..3)
            .map(|i| ChunkRef {
                id: ChunkId([i; 32]),
                len: 300_000 + u32::from(i),
            })
            .collect()
    }

    #[test]
    fn a_list_opens_under_its_version_only() {
        let sealed = seal_chunk_list(&key(1), &list()).expect("sealed");
        assert_eq!(open_chunk_list(&key(1), &sealed).expect("opened"), list());
        assert_eq!(total_len(&list()), 900_003);
        assert_eq!(
            open_chunk_list(&key(2), &sealed),
            Err(FormatError::ChunkListDecrypt)
        );
        let mut altered = sealed.clone();
        altered[20] ^= 1;
        assert_eq!(
            open_chunk_list(&key(1), &altered),
            Err(FormatError::ChunkListDecrypt)
        );
        let empty = seal_chunk_list(&key(1), &[]).expect("sealed");
        assert_eq!(open_chunk_list(&key(1), &empty).expect("opened"), vec![]);
        // The sealed length follows the count, and only such lengths are lists.
        assert_eq!(sealed.len() as u64, sealed_list_len(list().len()));
        assert_eq!(empty.len() as u64, sealed_list_len(0));
        assert!(is_sealed_len(sealed.len() as u64));
        assert!(!is_sealed_len(sealed.len() as u64 + 1));
        assert!(!is_sealed_len(10));
        assert!(!is_sealed_len(sealed_list_len(MAX_CHUNKS + 1)));
    }

    #[test]
    fn malformed_lists_are_refused() {
        let mut bad = list();
        bad[1].len = 0;
        assert!(seal_chunk_list(&key(1), &bad).is_err());
        bad[1].len = MAX_CHUNK as u32 + 1;
        assert!(seal_chunk_list(&key(1), &bad).is_err());
        let good = encode(&list()).expect("encoded");
        for broken in [
            &good[..good.len() - 1],
            &good[..4],
            &[&[3u8][..], &good[1..]].concat()[..],
            &[&good[..], &[0u8; 36][..]].concat()[..],
        ] {
            assert!(
                matches!(decode(broken), Err(FormatError::ChunkListFormat(_))),
                "{broken:?}"
            );
        }
    }
}
