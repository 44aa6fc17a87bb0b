//! A blob store that times every call of the store it wraps, and every read, write and
//! sync of the blobs it opens, into the metrics (`vault_blob_duration_seconds{op}`). The
//! server wraps its store in it when `metrics.listen` is set.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use super::{BlobId, BlobReader, BlobStore, PartialWriter, StoredBlob};
use crate::telemetry::blob as timed;

/// `store`, timed.
#[derive(Debug)]
pub(crate) struct Timed(pub Arc<dyn BlobStore>);

impl BlobStore for Timed {
    fn write_partial(&self, id: &BlobId, offset: u64) -> io::Result<Box<dyn PartialWriter>> {
        let inner = timed("write_partial", || self.0.write_partial(id, offset))?;
        Ok(Box::new(TimedWriter(inner)))
    }

    fn partial_len(&self, id: &BlobId) -> io::Result<Option<u64>> {
        timed("partial_len", || self.0.partial_len(id))
    }

    fn truncate_partial(&self, id: &BlobId, len: u64) -> io::Result<()> {
        timed("truncate_partial", || self.0.truncate_partial(id, len))
    }

    fn seal_partial(&self, id: &BlobId) -> io::Result<u64> {
        timed("seal_partial", || self.0.seal_partial(id))
    }

    fn remove_partial(&self, id: &BlobId) -> io::Result<()> {
        timed("remove_partial", || self.0.remove_partial(id))
    }

    fn open(&self, id: &BlobId) -> io::Result<Box<dyn BlobReader>> {
        let inner = timed("open", || self.0.open(id))?;
        Ok(Box::new(TimedReader(inner)))
    }

    fn size(&self, id: &BlobId) -> io::Result<Option<u64>> {
        timed("size", || self.0.size(id))
    }

    fn remove(&self, id: &BlobId) -> io::Result<()> {
        timed("remove", || self.0.remove(id))
    }

    fn list(&self) -> io::Result<Vec<StoredBlob>> {
        timed("list", || self.0.list())
    }

    fn list_partials(&self) -> io::Result<Vec<StoredBlob>> {
        timed("list_partials", || self.0.list_partials())
    }

    fn copy_to(&self, id: &BlobId, dest_root: &Path) -> io::Result<()> {
        timed("copy_to", || self.0.copy_to(id, dest_root))
    }

    fn put_many(&self, blobs: &[(BlobId, &[u8])]) -> io::Result<()> {
        timed("put_many", || self.0.put_many(blobs))
    }
}

struct TimedWriter(Box<dyn PartialWriter>);

impl Write for TimedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        timed("write", || self.0.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        timed("flush", || self.0.flush())
    }
}

impl PartialWriter for TimedWriter {
    fn sync(&mut self) -> io::Result<()> {
        timed("sync", || self.0.sync())
    }
}

struct TimedReader(Box<dyn BlobReader>);

impl Read for TimedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        timed("read", || self.0.read(buf))
    }
}

impl Seek for TimedReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}
