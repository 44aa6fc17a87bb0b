//! Reading a file once with the space's keyed chunker: where its chunks start, their ids
//! and lengths, and the BLAKE3 of the whole. Two threads share the work: this one reads
//! the file a block at a time and finds where chunks end (the keyed chunker), and a
//! second hashes the same blocks, for the chunk ids (keyed BLAKE3) and the BLAKE3 of the
//! whole. The file is read once, and at most [`BLOCKS_AHEAD`] blocks are in memory.

use std::collections::HashMap;
use std::io::Read;
use std::sync::mpsc;

use vault_core::format::ContentHasher;
use vault_core::format::chunklist::ChunkRef;
use vault_core::format::chunks::{ChunkId, ChunkKeys};
use zeroize::Zeroizing;

/// A file as the chunker sees it.
#[derive(Debug, Default)]
pub struct Scanned {
    /// Each chunk in order, with the offset where it starts.
    pub chunks: Vec<(u64, ChunkRef)>,
    /// The BLAKE3 of the whole file (zero when not asked for).
    pub blake3: [u8; 32],
    /// Bytes read.
    pub size: u64,
}

impl Scanned {
    /// Where the next chunk starts: where the last one ends.
    fn next_offset(&self) -> u64 {
        self.chunks
            .last()
            .map_or(0, |(offset, c)| offset + u64::from(c.len))
    }

    /// Appends the chunk `id` that ends at offset `end`.
    fn push_chunk(&mut self, end: u64, id: ChunkId) -> std::io::Result<()> {
        let start = self.next_offset();
        let len = u32::try_from(end - start).map_err(std::io::Error::other)?;
        self.chunks.push((start, ChunkRef { id, len }));
        Ok(())
    }

    /// Where each distinct chunk first occurs: id → (offset, length).
    pub fn first_places(&self) -> HashMap<ChunkId, (u64, u32)> {
        let mut places = HashMap::with_capacity(self.chunks.len());
        for (offset, chunk) in &self.chunks {
            places.entry(chunk.id).or_insert((*offset, chunk.len));
        }
        places
    }
}

/// The bytes read at once (1 MiB).
const BLOCK: usize = 1 << 20;
/// Blocks read ahead of the hashing thread, at most.
const BLOCKS_AHEAD: usize = 8;

/// Reads the file at `path` to its end: its chunks and the BLAKE3 of the whole.
pub fn scan_file(keys: &ChunkKeys, path: &std::path::Path) -> std::io::Result<Scanned> {
    scan_reader(keys, &mut std::fs::File::open(path)?, true)
}

/// Reads `file` to its end, cutting it with `keys`, without the BLAKE3 of the whole
/// (what a download looks for in the files already here).
pub fn scan_chunks(keys: &ChunkKeys, file: &mut impl Read) -> std::io::Result<Scanned> {
    scan_reader(keys, file, false)
}

/// Reads `file` to its end with the BLAKE3 of the whole.
#[cfg(test)]
pub fn scan(keys: &ChunkKeys, file: &mut impl Read) -> std::io::Result<Scanned> {
    scan_reader(keys, file, true)
}

/// A block read, and where chunks end in it.
struct Block {
    bytes: Zeroizing<Vec<u8>>,
    len: usize,
    ends: Vec<usize>,
}

/// Reads `file` to its end on this thread, cutting it with `keys`, while a second thread
/// hashes each block: the chunks' ids, and the whole if `whole`.
fn scan_reader(keys: &ChunkKeys, file: &mut impl Read, whole: bool) -> std::io::Result<Scanned> {
    let (to_hasher, blocks) = mpsc::sync_channel::<Block>(BLOCKS_AHEAD);
    let (give_back, spare) = mpsc::channel::<Zeroizing<Vec<u8>>>();
    std::thread::scope(|s| {
        let hashing = s.spawn(move || hash_blocks(keys, blocks, give_back, whole));
        let read = cut_blocks(keys, file, to_hasher, spare);
        let hashed = hashing
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the hashing thread failed")));
        let scanned = hashed?;
        let open_len = read?;
        let last = scanned.chunks.last().map_or(0, |(_, c)| c.len as usize);
        if open_len != 0 && open_len != last {
            return Err(std::io::Error::other(
                "the chunker and the hasher disagree on the last chunk",
            ));
        }
        Ok(scanned)
    })
}

/// The reading side: fills blocks (reusing those `spare` gives back), finds where chunks
/// end, and sends both on. Returns the length of the last chunk, open at the end.
fn cut_blocks(
    keys: &ChunkKeys,
    file: &mut impl Read,
    to_hasher: mpsc::SyncSender<Block>,
    spare: mpsc::Receiver<Zeroizing<Vec<u8>>>,
) -> std::io::Result<usize> {
    let mut cutter = keys.cutter();
    loop {
        let mut bytes = spare
            .try_recv()
            .unwrap_or_else(|_| Zeroizing::new(vec![0u8; BLOCK]));
        let mut len = 0;
        while len < BLOCK {
            match file.read(&mut bytes[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if len == 0 {
            return Ok(cutter.open_len());
        }
        let mut ends = Vec::new();
        cutter.feed(&bytes[..len], |end| ends.push(end));
        if to_hasher.send(Block { bytes, len, ends }).is_err() {
            return Err(std::io::Error::other("the hashing thread stopped"));
        }
    }
}

/// The hashing side: each block into the id of the chunk it continues (finished where
/// the chunker said a chunk ends) and, if `whole`, into the BLAKE3 of the whole.
fn hash_blocks(
    keys: &ChunkKeys,
    blocks: mpsc::Receiver<Block>,
    give_back: mpsc::Sender<Zeroizing<Vec<u8>>>,
    whole: bool,
) -> std::io::Result<Scanned> {
    let mut all = ContentHasher::new();
    let mut id = keys.id_hasher();
    let mut out = Scanned::default();
    for block in blocks {
        let bytes = &block.bytes[..block.len];
        if whole {
            all.update(bytes);
        }
        let mut from = 0;
        for &end in &block.ends {
            id.update(&bytes[from..end]);
            out.push_chunk(out.size + end as u64, id.finish())?;
            from = end;
        }
        id.update(&bytes[from..]);
        out.size += block.len as u64;
        let _ = give_back.send(block.bytes);
    }
    if out.size > out.next_offset() {
        out.push_chunk(out.size, id.finish())?;
    }
    if whole {
        out.blake3 = all.finalize();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vault_core::crypto::Key32;
    use vault_core::format::chunks::MAX_CHUNK;

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
        let from_disk = scan_file(&keys, &path).expect("scan_file");
        assert_eq!(from_disk.blake3, scanned.blake3);
        assert_eq!(from_disk.chunks, scanned.chunks);
        let without_whole = scan_chunks(&keys, &mut &data[..]).expect("scan_chunks");
        assert_eq!(without_whole.chunks, scanned.chunks);
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
