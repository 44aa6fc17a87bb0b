//! The blob store: where sealed file contents live, under ids the server chooses
//! ([`BlobId::random`]), never under anything a client sent. A blob is written as a
//! *partial* while its upload runs, then sealed into place atomically when the upload
//! commits; sealed blobs are immutable. Deleting a version does not delete its blob at
//! once: the id goes to `deleted_blobs` and `gc` removes the file after a grace period.
//!
//! Small files of a batch skip the partial stage from the client's point of view:
//! [`BlobStore::put_many`] writes many whole blobs at once, each atomically, durable when
//! it returns, with as few syncs as the backend allows.
//!
//! The BLAKE3 of each blob's bytes is recorded with its version ([`hash`]), so that
//! `fsck --read-data` and the server's scrub can tell when stored bytes changed.
//!
//! [`FsBlobStore`] is the local filesystem backend (the embedded default); [`S3BlobStore`]
//! keeps blobs in an S3-compatible bucket (`storage.kind = "s3"`). The calls are blocking;
//! async callers run them in `spawn_blocking`.

mod fs;
pub mod hash;
mod s3;
mod timed;

use std::fmt;
use std::io::{self, Read, Seek, Write};

pub use fs::FsBlobStore;
pub use hash::BlobHash;
pub use s3::{PART_LEN, S3BlobStore, S3Settings};
pub(crate) use timed::Timed;

/// Opens the blob store `config` names: `<blobs_dir>` for `fs`, the bucket for `s3`
/// (checked: a wrong endpoint, bucket or key fails here).
pub fn open(
    config: &crate::config::StorageConfig,
    blobs_dir: &std::path::Path,
) -> io::Result<std::sync::Arc<dyn BlobStore>> {
    Ok(match config.kind.as_str() {
        "s3" => std::sync::Arc::new(S3BlobStore::open(&config.s3())?),
        _ => std::sync::Arc::new(FsBlobStore::open(blobs_dir)?),
    })
}

/// A server-chosen blob id: 32 lowercase hex characters (128 random bits).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(String);

impl BlobId {
    pub const LEN: usize = 32;

    /// A fresh random id.
    pub fn random() -> BlobId {
        let mut bytes = [0u8; Self::LEN / 2];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator works");
        BlobId(hex::encode(bytes))
    }

    /// An id read back from the database or a directory listing; `None` if it is not the
    /// shape of an id this server made (so it can never name another path).
    pub fn parse(text: &str) -> Option<BlobId> {
        (text.len() == Self::LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| BlobId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A blob that can be read from any offset.
pub trait BlobReader: Read + Seek + Send {}
impl<T: Read + Seek + Send> BlobReader for T {}

/// A partial blob being written.
pub trait PartialWriter: Write + Send {
    /// Makes everything written so far durable.
    fn sync(&mut self) -> io::Result<()>;
}

/// Storage for sealed blobs. Implementations must make [`BlobStore::seal_partial`] atomic:
/// after a crash a blob is either absent or complete.
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// Opens a partial blob for writing at `offset`, creating it when `offset` is 0 and
    /// cutting off anything stored beyond `offset`. Fails if the partial holds fewer
    /// than `offset` bytes.
    fn write_partial(&self, id: &BlobId, offset: u64) -> io::Result<Box<dyn PartialWriter>>;

    /// The bytes a partial blob holds, `None` if there is no such partial.
    fn partial_len(&self, id: &BlobId) -> io::Result<Option<u64>>;

    /// Cuts a partial blob to `len` bytes (to drop a chunk that arrived only in part).
    fn truncate_partial(&self, id: &BlobId, len: u64) -> io::Result<()>;

    /// Makes a finished partial blob durable and moves it into place as a sealed blob.
    /// Returns its size.
    fn seal_partial(&self, id: &BlobId) -> io::Result<u64>;

    /// Removes a partial blob; absent is fine.
    fn remove_partial(&self, id: &BlobId) -> io::Result<()>;

    /// Opens a sealed blob for reading.
    fn open(&self, id: &BlobId) -> io::Result<Box<dyn BlobReader>>;

    /// A sealed blob's size, `None` if absent.
    fn size(&self, id: &BlobId) -> io::Result<Option<u64>>;

    /// Removes a sealed blob; absent is fine.
    fn remove(&self, id: &BlobId) -> io::Result<()>;

    /// Every sealed blob with its size and age in seconds (for fsck and gc).
    fn list(&self) -> io::Result<Vec<StoredBlob>>;

    /// Every partial blob with its size and age in seconds.
    fn list_partials(&self) -> io::Result<Vec<StoredBlob>>;

    /// Copies a sealed blob to `dest_root` in this store's layout (for backups);
    /// a hard link where the filesystem allows it, since sealed blobs never change.
    fn copy_to(&self, id: &BlobId, dest_root: &std::path::Path) -> io::Result<()>;

    /// Stores whole sealed blobs: each atomically (after a crash a blob is absent, or
    /// complete, possibly with its partial still beside it), all of them durable when this
    /// returns. A sealed blob that already exists is never replaced: the same bytes again
    /// are fine (a retried request), other bytes fail with `AlreadyExists`.
    ///
    /// This portable version writes, syncs and seals one partial after the other;
    /// [`FsBlobStore`] overrides it with one filesystem sync for the whole batch.
    fn put_many(&self, blobs: &[(BlobId, &[u8])]) -> io::Result<()> {
        for (id, bytes) in blobs {
            if self.size(id)?.is_some() {
                check_same(self, id, bytes)?;
                continue;
            }
            let mut w = self.write_partial(id, 0)?;
            w.write_all(bytes)?;
            w.flush()?;
            w.sync()?;
            drop(w);
            self.seal_partial(id)?;
        }
        Ok(())
    }
}

/// Succeeds when the sealed blob `id` holds exactly `bytes`, else fails with
/// `AlreadyExists` (see [`BlobStore::put_many`]).
pub fn check_same(store: &(impl BlobStore + ?Sized), id: &BlobId, bytes: &[u8]) -> io::Result<()> {
    let same = store.size(id)? == Some(bytes.len() as u64) && {
        let mut stored = Vec::with_capacity(bytes.len());
        store.open(id)?.read_to_end(&mut stored)?;
        stored == bytes
    };
    if same {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("blob {id} exists with other contents"),
        ))
    }
}

/// A blob found in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    pub id: BlobId,
    pub size: u64,
    pub age_s: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_hex_and_parse_refuses_anything_else() {
        let a = BlobId::random();
        let b = BlobId::random();
        assert_ne!(a, b);
        assert_eq!(BlobId::parse(a.as_str()), Some(a));
        for bad in [
            "",
            "../etc/passwd",
            &"A".repeat(32),
            &"0".repeat(31),
            &"0".repeat(33),
        ] {
            assert_eq!(BlobId::parse(bad), None, "{bad:?}");
        }
    }
}
