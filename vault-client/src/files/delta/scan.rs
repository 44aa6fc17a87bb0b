//! Reading a file once with the space's keyed chunker: where its chunks start, their ids
//! and lengths, and the BLAKE3 of the whole. The file is read through one buffer of twice
//! the largest chunk, so memory stays bounded whatever its size.

use std::collections::HashMap;
use std::io::Read;

use vault_core::format::ContentHasher;
use vault_core::format::chunklist::ChunkRef;
use vault_core::format::chunks::{ChunkId, ChunkKeys, MAX_CHUNK};
use zeroize::Zeroizing;

/// A file as the chunker sees it.
#[derive(Debug, Default)]
pub struct Scanned {
    /// Each chunk in order, with the offset where it starts.
    pub chunks: Vec<(u64, ChunkRef)>,
    /// The BLAKE3 of the whole file.
    pub blake3: [u8; 32],
    /// Bytes read.
    pub size: u64,
}

impl Scanned {
    /// Where each distinct chunk first occurs: id → (offset, length).
    pub fn first_places(&self) -> HashMap<ChunkId, (u64, u32)> {
        let mut places = HashMap::with_capacity(self.chunks.len());
        for (offset, chunk) in &self.chunks {
            places.entry(chunk.id).or_insert((*offset, chunk.len));
        }
        places
    }
}

/// Reads the file at `path` to its end, cutting it with `keys`, while a second thread
/// reads it again for the BLAKE3 of the whole: the two run on two cores at once.
pub fn scan_file(keys: &ChunkKeys, path: &std::path::Path) -> std::io::Result<Scanned> {
    let mut chunks_of = std::fs::File::open(path)?;
    let mut hash_of = std::fs::File::open(path)?;
    let (scanned, whole) = std::thread::scope(|s| {
        let hashing = s.spawn(move || hash_all(&mut hash_of));
        let scanned = scan_with(keys, &mut chunks_of, false);
        let whole = hashing
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the hashing thread failed")));
        (scanned, whole)
    });
    let (mut scanned, (size, blake3)) = (scanned?, whole?);
    if size != scanned.size {
        return Err(std::io::Error::other(
            "the file changed while it was read (two reads differ in length)",
        ));
    }
    scanned.blake3 = blake3;
    Ok(scanned)
}

/// Reads `file` to its end: its length and BLAKE3.
fn hash_all(file: &mut impl Read) -> std::io::Result<(u64, [u8; 32])> {
    let mut hasher = ContentHasher::new();
    let mut buf = Zeroizing::new(vec![0u8; 1 << 20]);
    let mut size = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok((size, hasher.finalize())),
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads `file` to its end, cutting it with `keys`, without the BLAKE3 of the whole
/// (what a download looks for in the files already here).
pub fn scan_chunks(keys: &ChunkKeys, file: &mut impl Read) -> std::io::Result<Scanned> {
    scan_with(keys, file, false)
}

/// Reads `file` to its end, cutting it with `keys`, with the BLAKE3 of the whole on the
/// same thread.
#[cfg(test)]
pub fn scan(keys: &ChunkKeys, file: &mut impl Read) -> std::io::Result<Scanned> {
    scan_with(keys, file, true)
}

/// Reads `file` to its end, cutting it with `keys`; and hashes the whole if `whole`.
fn scan_with(keys: &ChunkKeys, file: &mut impl Read, whole: bool) -> std::io::Result<Scanned> {
    let mut buf = Zeroizing::new(vec![0u8; 2 * MAX_CHUNK]);
    let (mut start, mut end, mut eof) = (0usize, 0usize, false);
    let mut hasher = ContentHasher::new();
    let mut out = Scanned::default();
    loop {
        if !eof && end - start < MAX_CHUNK {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            while end < buf.len() {
                match file.read(&mut buf[end..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => end += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if start == end {
            break;
        }
        // Not at the end of the file, the buffer holds at least MAX_CHUNK bytes: all the
        // chunker looks at.
        let len = keys.cut(&buf[start..end]);
        let piece = &buf[start..start + len];
        if whole {
            hasher.update(piece);
        }
        let chunk = ChunkRef {
            id: keys.id(piece),
            len: len as u32,
        };
        out.chunks.push((out.size, chunk));
        out.size += len as u64;
        start += len;
    }
    if whole {
        out.blake3 = hasher.finalize();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vault_core::crypto::Key32;

    /// Bytes no chunker finds a pattern in (xorshift64*).
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    /// A reader that hands out at most 1000 bytes per read.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(1000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_streamed_scan_cuts_as_the_whole_file_in_memory_does() {
        let keys = ChunkKeys::derive(&Key32::from_bytes([3; 32])).expect("keys");
        let data = noise(11 << 20, 1);
        let scanned = scan(&keys, &mut Trickle(&data)).expect("scan");
        let lengths: Vec<usize> = scanned.chunks.iter().map(|(_, c)| c.len as usize).collect();
        assert_eq!(lengths, keys.chunk_lengths(&data));
        assert_eq!(scanned.size, data.len() as u64);
        assert_eq!(scanned.blake3, vault_core::format::content_hash(&data));
        for (offset, chunk) in &scanned.chunks {
            let at = *offset as usize;
            assert_eq!(chunk.id, keys.id(&data[at..at + chunk.len as usize]));
        }
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        std::fs::write(&path, &data).expect("write");
        let two_threads = scan_file(&keys, &path).expect("scan_file");
        assert_eq!(two_threads.blake3, scanned.blake3);
        assert_eq!(two_threads.chunks, scanned.chunks);
        let empty = scan(&keys, &mut Trickle(&[])).expect("empty");
        assert!(empty.chunks.is_empty());
        assert_eq!(empty.blake3, vault_core::format::content_hash(b""));
    }

    #[test]
    fn an_insertion_changes_only_the_chunks_around_it() {
        let keys = ChunkKeys::derive(&Key32::from_bytes([4; 32])).expect("keys");
        let data = noise(16 << 20, 2);
        let mut edited = data.clone();
        edited.splice(8 << 20..8 << 20, b"a hundred bytes or so".repeat(5));
        let before = scan(&keys, &mut &data[..]).expect("scan").first_places();
        let after = scan(&keys, &mut &edited[..]).expect("scan");
        let new: u64 = after
            .chunks
            .iter()
            .filter(|(_, c)| !before.contains_key(&c.id))
            .map(|(_, c)| u64::from(c.len))
            .sum();
        assert!(new <= 2 * MAX_CHUNK as u64, "{new} bytes of new chunks");
        assert!(new > 0);
    }
}
