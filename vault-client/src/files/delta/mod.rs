//! Large files in format version 2 (docs/FORMAT.md §7.10, §7.11): a file is cut into
//! content-defined chunks with the space's keyed chunker, each chunk sealed on its own and
//! stored once per space, and the version itself is only its sealed chunk list. So an edit
//! moves only the chunks around it, both ways:
//!
//! - [`put`]: the file is scanned (cut points, keyed ids, the BLAKE3 of the whole), the
//!   server is asked which ids the space lacks (`chunks_missing`), only those are read
//!   again, sealed and sent (`chunk_put`, a few at once), then the version is committed
//!   with its sealed chunk list and the ids it uses. An interrupted upload resumes at
//!   chunk granularity: the next run finds the chunks already stored.
//! - [`get`]: the chunk list is opened, the file already at the target (and what an
//!   interrupted attempt left) is scanned for chunks it holds, and only the others are
//!   fetched (`chunk_get`, a few at once). Every chunk, local or fetched, is proved
//!   against its id, the whole against the BLAKE3 in the metadata, before anything is
//!   renamed into place.
//!
//! Small files keep format 1 (and their batched path); chat attachments too, since a
//! message's reader cannot reach the sender's chunks.

pub mod get;
pub mod put;
mod scan;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::upload::LocalFile;

/// Files of at least this many bytes are uploaded in format 2; smaller ones are one
/// STREAM (format 1), which costs no extra round trip.
pub const CHUNKED_MIN: u64 = 1 << 20;

/// Chunks sent or fetched at once.
pub(crate) const IN_FLIGHT: usize = 4;

/// Scans of files being uploaded, kept for the command's lifetime so that a transfer
/// retried after a lost connection does not read a large file again: by path, valid
/// while the file's size and mtime and the key generation are the same. An upload that
/// finishes drops its entry.
#[derive(Debug, Default)]
pub struct ScanCache(Mutex<HashMap<PathBuf, CachedScan>>);

/// A scan, and the file and key generation it is of.
type CachedScan = (LocalFile, u32, Arc<scan::Scanned>);

impl ScanCache {
    fn get(&self, path: &Path, file: &LocalFile, generation: u32) -> Option<Arc<scan::Scanned>> {
        let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(path) {
            Some((f, g, scanned)) if f == file && *g == generation => Some(Arc::clone(scanned)),
            _ => None,
        }
    }

    fn put(&self, path: &Path, file: LocalFile, generation: u32, scanned: Arc<scan::Scanned>) {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(path.to_path_buf(), (file, generation, scanned));
    }

    fn forget(&self, path: &Path) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path);
    }
}
