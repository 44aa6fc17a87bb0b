//! The local filesystem blob store:
//!
//! ```text
//! <root>/<first two hex chars>/<blob id>   sealed blobs (immutable)
//! <root>/partial/<blob id>                 uploads in progress
//! ```
//!
//! A partial is written behind ([`WriteBehind`]: durable and out of the page cache a window
//! at a time as it grows) and a blob is read with [`DropBehind`], so a large transfer
//! neither fills the cache nor ends in one long fsync.
//!
//! Sealing is fsync of the partial, rename into place, fsync of both directories. Every
//! path is the configured root joined with a [`BlobId`], which is always 32 hex chars.
//!
//! A batch ([`BlobStore::put_many`]) writes every blob as its partial, makes them all
//! durable with one `syncfs` (Linux; elsewhere an fsync per file), renames each into place
//! without ever replacing an existing blob (`RENAME_NOREPLACE`, or a hard link and an
//! unlink), and syncs once more (Linux: `syncfs`; elsewhere the touched directories).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use vault_fsio::{DropBehind, WriteBehind};

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

    /// Where a sealed blob lives under `root` (also the layout of a backup's blobs).
    pub(crate) fn sealed_path(root: &Path, id: &BlobId) -> PathBuf {
        root.join(&id.as_str()[..2]).join(id.as_str())
    }

    fn partial_path(&self, id: &BlobId) -> PathBuf {
        self.root.join(PARTIAL_DIR).join(id.as_str())
    }
}

/// A partial blob, flushed as it grows so that sealing it ends in a short sync.
struct FsPartial(WriteBehind);

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
        self.0.get_ref().sync_data()
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Up to this many blobs, [`FsBlobStore::put_many`] syncs each file and its directory;
/// above it, the whole filesystem once.
const SYNC_EACH_AT_MOST: usize = 4;

/// Makes everything written under `root` durable: one `syncfs` of its filesystem.
#[cfg(target_os = "linux")]
fn sync_filesystem(root: &Path) -> io::Result<()> {
    Ok(rustix::fs::syncfs(File::open(root)?)?)
}

/// Moves `from` to `to` unless `to` exists (then `AlreadyExists`, and `from` stays):
/// `renameat2(RENAME_NOREPLACE)` where the filesystem has it, else a hard link and an
/// unlink (a crash between them leaves both names; gc collects the partial).
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
    }
    fs::hard_link(from, to)?;
    fs::remove_file(from)
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
        // Gone since the directory was read (sealed, or removed by gc): not here any more.
        let Some(meta) = not_found_is_none(item.metadata())? else {
            continue;
        };
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
        Ok(Box::new(FsPartial(WriteBehind::new(file, offset))))
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
        let file = File::open(Self::sealed_path(&self.root, id))?;
        Ok(Box::new(DropBehind::new(file)))
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

    fn put_many(&self, blobs: &[(BlobId, &[u8])]) -> io::Result<()> {
        if blobs.is_empty() {
            return Ok(());
        }
        // A few blobs (a chunk of format 2) are synced one file and directory at a time: a
        // `syncfs` would also wait for everything else being written on the filesystem,
        // such as the chunks arriving beside it. A batch of many is cheaper with one.
        let one_by_one = cfg!(not(target_os = "linux")) || blobs.len() <= SYNC_EACH_AT_MOST;
        let mut written = Vec::with_capacity(blobs.len());
        for (id, bytes) in blobs {
            let path = self.partial_path(id);
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(bytes)?;
            if one_by_one {
                file.sync_data()?;
            }
            written.push((id, *bytes, path, file));
        }
        #[cfg(target_os = "linux")]
        if !one_by_one {
            sync_filesystem(&self.root)?;
        }
        // Written back by now: the next blobs reuse these pages (see `vault_fsio`).
        for (.., file) in &written {
            vault_fsio::drop_from_cache(file);
        }

        let mut dirs = BTreeSet::new();
        for (id, bytes, partial, _) in &written {
            let to = Self::sealed_path(&self.root, id);
            let dir = to.parent().unwrap_or(&self.root).to_path_buf();
            if !dirs.contains(&dir) {
                crate::fsutil::create_private_dir(&dir)?;
            }
            match rename_no_replace(partial, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    super::check_same(self, id, bytes)?;
                    fs::remove_file(partial)?;
                }
                Err(e) => return Err(e),
            }
            dirs.insert(dir);
        }
        if one_by_one {
            dirs.insert(self.root.join(PARTIAL_DIR));
            for dir in &dirs {
                sync_dir(dir)?;
            }
        } else {
            #[cfg(target_os = "linux")]
            sync_filesystem(&self.root)?;
        }
        Ok(())
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
    use std::io::Read;

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

    #[test]
    fn put_many_stores_whole_blobs_and_never_replaces_one() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = FsBlobStore::open(dir.path())?;
        let ids: Vec<BlobId> = (0..20).map(|_| BlobId::random()).collect();
        let contents: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; usize::from(i) * 7]).collect();
        let batch: Vec<(BlobId, &[u8])> = ids
            .iter()
            .cloned()
            .zip(contents.iter().map(Vec::as_slice))
            .collect();
        store.put_many(&batch)?;
        store.put_many(&[])?;
        for (id, bytes) in &batch {
            let mut back = Vec::new();
            store.open(id)?.read_to_end(&mut back)?;
            assert_eq!(&back, bytes);
        }
        assert_eq!(store.list()?.len(), 20);
        assert!(store.list_partials()?.is_empty());
        // The same bytes again are fine; other bytes never replace a stored blob.
        store.put_many(&batch[..3])?;
        let other = [(ids[4].clone(), &b"other"[..])];
        let e = store.put_many(&other).err().map(|e| e.kind());
        assert_eq!(e, Some(io::ErrorKind::AlreadyExists));
        assert_eq!(store.size(&ids[4])?, Some(28));
        Ok(())
    }

    /// The trait's portable version behaves the same.
    #[test]
    fn the_portable_put_many_agrees() -> io::Result<()> {
        #[derive(Debug)]
        struct Portable(FsBlobStore);
        impl BlobStore for Portable {
            fn write_partial(&self, id: &BlobId, o: u64) -> io::Result<Box<dyn PartialWriter>> {
                self.0.write_partial(id, o)
            }
            fn partial_len(&self, id: &BlobId) -> io::Result<Option<u64>> {
                self.0.partial_len(id)
            }
            fn truncate_partial(&self, id: &BlobId, len: u64) -> io::Result<()> {
                self.0.truncate_partial(id, len)
            }
            fn seal_partial(&self, id: &BlobId) -> io::Result<u64> {
                self.0.seal_partial(id)
            }
            fn remove_partial(&self, id: &BlobId) -> io::Result<()> {
                self.0.remove_partial(id)
            }
            fn open(&self, id: &BlobId) -> io::Result<Box<dyn BlobReader>> {
                self.0.open(id)
            }
            fn size(&self, id: &BlobId) -> io::Result<Option<u64>> {
                self.0.size(id)
            }
            fn remove(&self, id: &BlobId) -> io::Result<()> {
                self.0.remove(id)
            }
            fn list(&self) -> io::Result<Vec<StoredBlob>> {
                self.0.list()
            }
            fn list_partials(&self) -> io::Result<Vec<StoredBlob>> {
                self.0.list_partials()
            }
            fn copy_to(&self, id: &BlobId, dest: &Path) -> io::Result<()> {
                self.0.copy_to(id, dest)
            }
        }
        let dir = tempfile::tempdir()?;
        let store = Portable(FsBlobStore::open(dir.path())?);
        let (a, b) = (BlobId::random(), BlobId::random());
        store.put_many(&[(a.clone(), &b"alpha"[..]), (b.clone(), &b""[..])])?;
        assert_eq!(store.size(&a)?, Some(5));
        assert_eq!(store.size(&b)?, Some(0));
        assert!(store.list_partials()?.is_empty());
        store.put_many(&[(a.clone(), &b"alpha"[..])])?;
        let e = store
            .put_many(&[(a, &b"alphA"[..])])
            .err()
            .map(|e| e.kind());
        assert_eq!(e, Some(io::ErrorKind::AlreadyExists));
        Ok(())
    }
}
