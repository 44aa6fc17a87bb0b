//! The local filesystem blob store:
//!
//! ```text
//! <root>/<first two hex chars>/<blob id>   sealed blobs (immutable)
//! <root>/partial/<blob id>                 uploads in progress
//! ```
//!
//! Sealing is fsync of the partial, rename into place, fsync of both directories. Every
//! path is the configured root joined with a [`BlobId`], which is always 32 hex chars.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{BlobId, BlobReader, BlobStore, PartialWriter, StoredBlob};

const PARTIAL_DIR: &str = "partial";

/// Blobs as files under one root directory.
#[derive(Clone, Debug)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// A store rooted at `root`, creating the directory for partials if missing.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<FsBlobStore> {
        let root = root.into();
        crate::fsutil::create_private_dir(&root.join(PARTIAL_DIR))?;
        Ok(FsBlobStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn sealed_path(root: &Path, id: &BlobId) -> PathBuf {
        root.join(&id.as_str()[..2]).join(id.as_str())
    }

    fn partial_path(&self, id: &BlobId) -> PathBuf {
        self.root.join(PARTIAL_DIR).join(id.as_str())
    }
}

struct FsPartial(File);

impl io::Write for FsPartial {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl PartialWriter for FsPartial {
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn age_s(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .map_or(0, |d| d.as_secs())
}

fn not_found_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn list_dir(dir: &Path, into: &mut Vec<StoredBlob>) -> io::Result<()> {
    let Some(read) = not_found_is_none(fs::read_dir(dir))? else {
        return Ok(());
    };
    for item in read {
        let item = item?;
        let name = item.file_name();
        let Some(id) = name.to_str().and_then(BlobId::parse) else {
            continue;
        };
        let meta = item.metadata()?;
        if meta.is_file() {
            into.push(StoredBlob {
                id,
                size: meta.len(),
                age_s: age_s(&meta),
            });
        }
    }
    Ok(())
}

impl BlobStore for FsBlobStore {
    fn write_partial(&self, id: &BlobId, offset: u64) -> io::Result<Box<dyn PartialWriter>> {
        let path = self.partial_path(id);
        let mut file = if offset == 0 {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?
        } else {
            let file = OpenOptions::new().write(true).open(&path)?;
            let len = file.metadata()?.len();
            if len < offset {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("partial blob holds {len} bytes, cannot continue at {offset}"),
                ));
            }
            file.set_len(offset)?;
            file
        };
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(FsPartial(file)))
    }

    fn partial_len(&self, id: &BlobId) -> io::Result<Option<u64>> {
        Ok(not_found_is_none(fs::metadata(self.partial_path(id)))?.map(|m| m.len()))
    }

    fn truncate_partial(&self, id: &BlobId, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(self.partial_path(id))?;
        file.set_len(len)?;
        file.sync_data()
    }

    fn seal_partial(&self, id: &BlobId) -> io::Result<u64> {
        let from = self.partial_path(id);
        let to = Self::sealed_path(&self.root, id);
        let file = File::open(&from)?;
        file.sync_all()?;
        let size = file.metadata()?.len();
        let dir = to.parent().unwrap_or(&self.root);
        crate::fsutil::create_private_dir(dir)?;
        fs::rename(&from, &to)?;
        sync_dir(dir)?;
        sync_dir(&self.root.join(PARTIAL_DIR))?;
        Ok(size)
    }

    fn remove_partial(&self, id: &BlobId) -> io::Result<()> {
        not_found_is_none(fs::remove_file(self.partial_path(id))).map(drop)
    }

    fn open(&self, id: &BlobId) -> io::Result<Box<dyn BlobReader>> {
        Ok(Box::new(File::open(Self::sealed_path(&self.root, id))?))
    }

    fn size(&self, id: &BlobId) -> io::Result<Option<u64>> {
        Ok(not_found_is_none(fs::metadata(Self::sealed_path(&self.root, id)))?.map(|m| m.len()))
    }

    fn remove(&self, id: &BlobId) -> io::Result<()> {
        not_found_is_none(fs::remove_file(Self::sealed_path(&self.root, id))).map(drop)
    }

    fn list(&self) -> io::Result<Vec<StoredBlob>> {
        let mut blobs = Vec::new();
        for item in fs::read_dir(&self.root)? {
            let item = item?;
            let name = item.file_name();
            let is_fanout = name.len() == 2
                && name
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_hexdigit()));
            if is_fanout && item.file_type()?.is_dir() {
                list_dir(&item.path(), &mut blobs)?;
            }
        }
        Ok(blobs)
    }

    fn list_partials(&self) -> io::Result<Vec<StoredBlob>> {
        let mut blobs = Vec::new();
        list_dir(&self.root.join(PARTIAL_DIR), &mut blobs)?;
        Ok(blobs)
    }

    fn copy_to(&self, id: &BlobId, dest_root: &Path) -> io::Result<()> {
        let from = Self::sealed_path(&self.root, id);
        let to = Self::sealed_path(dest_root, id);
        if let Some(dir) = to.parent() {
            crate::fsutil::create_private_dir(dir)?;
        }
        if fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to)?;
            File::open(&to)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn partial_then_sealed_then_listed_and_removed() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = FsBlobStore::open(dir.path())?;
        let id = BlobId::random();
        let mut w = store.write_partial(&id, 0)?;
        w.write_all(b"hello wor")?;
        drop(w);
        // A resume cuts off what is beyond the offset and continues there.
        let mut w = store.write_partial(&id, 6)?;
        w.write_all(b"world")?;
        w.sync()?;
        drop(w);
        assert_eq!(store.partial_len(&id)?, Some(11));
        assert!(store.write_partial(&id, 12).is_err());
        assert_eq!(store.list_partials()?.len(), 1);
        assert_eq!(store.seal_partial(&id)?, 11);
        assert_eq!(store.partial_len(&id)?, None);
        let mut text = String::new();
        store.open(&id)?.read_to_string(&mut text)?;
        assert_eq!(text, "hello world");
        assert_eq!(store.size(&id)?, Some(11));
        let listed = store.list()?;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, id);

        let backup = tempfile::tempdir()?;
        store.copy_to(&id, backup.path())?;
        let copy = FsBlobStore::open(backup.path())?;
        assert_eq!(copy.size(&id)?, Some(11));

        store.remove(&id)?;
        store.remove(&id)?;
        assert_eq!(store.size(&id)?, None);
        assert!(store.list()?.is_empty());
        Ok(())
    }
}
