//! BLAKE3 of sealed blobs: what the server records with each version when it stores the
//! blob, and what `fsck --read-data` and the server's scrub compare with when they read
//! it again. It covers the blob's bytes exactly as stored (ciphertext), never anything a
//! client could open.

use std::io::{self, Read};

use super::{BlobId, BlobStore};

/// The recorded hash of a blob: BLAKE3 of its bytes.
pub type BlobHash = [u8; 32];

/// Bytes read from a blob at a time when hashing it: large enough for BLAKE3's wide
/// (SIMD) path, small enough to pace the reads.
pub const READ_LEN: usize = 256 * 1024;

/// The BLAKE3 of `bytes` (a blob held in memory).
pub fn of_bytes(bytes: &[u8]) -> BlobHash {
    *blake3::hash(bytes).as_bytes()
}

/// A blob read from start to end: how many bytes it held and their BLAKE3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashedBlob {
    pub len: u64,
    pub hash: BlobHash,
}

/// Reads the sealed blob `id` from start to end (with the store's reader, which drops the
/// pages behind it) and hashes it, holding one buffer of [`READ_LEN`] bytes. `pace` is
/// called after every buffer with its length; an error it returns stops the read (to
/// bound its rate, or to stop it at shutdown). A missing blob fails with `NotFound`.
pub fn of_blob(
    store: &dyn BlobStore,
    id: &BlobId,
    pace: &mut dyn FnMut(u64) -> io::Result<()>,
) -> io::Result<HashedBlob> {
    let mut reader = store.open(id)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; READ_LEN];
    let mut len = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
        pace(n as u64)?;
    }
    Ok(HashedBlob {
        len,
        hash: *hasher.finalize().as_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::blobs::FsBlobStore;

    #[test]
    fn a_blob_read_back_hashes_as_its_bytes_and_pace_sees_every_byte() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = FsBlobStore::open(dir.path())?;
        let id = BlobId::random();
        let bytes: Vec<u8> = (0..READ_LEN * 2 + 77).map(|i| (i * 7) as u8).collect();
        let mut w = store.write_partial(&id, 0)?;
        w.write_all(&bytes)?;
        w.sync()?;
        drop(w);
        store.seal_partial(&id)?;
        let mut paced = 0;
        let read = of_blob(&store, &id, &mut |n| {
            paced += n;
            Ok(())
        })?;
        assert_eq!(read.len, bytes.len() as u64);
        assert_eq!(read.hash, of_bytes(&bytes));
        assert_eq!(paced, bytes.len() as u64);

        // An error from `pace` stops the read; a missing blob is `NotFound`.
        let stop = of_blob(&store, &id, &mut |_| Err(io::ErrorKind::Interrupted.into()));
        assert_eq!(
            stop.err().map(|e| e.kind()),
            Some(io::ErrorKind::Interrupted)
        );
        let missing = of_blob(&store, &BlobId::random(), &mut |_| Ok(()));
        assert_eq!(
            missing.err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
        Ok(())
    }
}
