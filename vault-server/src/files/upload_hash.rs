//! The BLAKE3 of a large upload's blob, computed as its bytes arrive, so that
//! `upload_commit` can record it without reading the blob again.
//!
//! An upload may arrive in several `upload_data` requests (a resume after a broken
//! stream). Between them this server keeps the hasher's state at the last sealed-chunk
//! boundary it saw (an upload resumes at a chunk boundary, or is complete), keyed by the
//! upload's blob id, in a table of at most [`MAX_KEPT`] entries (about 2 KiB each). What
//! it does not have — the server restarted, another instance took the earlier bytes, the
//! table was full, two requests wrote the same upload at once — it does not guess:
//! [`UploadHashes::complete`] answers `None` and the commit hashes the sealed blob from
//! disk instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vault_proto::sizes::SEALED_CHUNK_LEN;

use crate::blobs::{BlobHash, BlobId};

/// At most this many uploads' hash states are kept between requests.
pub const MAX_KEPT: usize = 1024;

/// A hasher over an upload's bytes from byte 0, that also remembers its state at the last
/// sealed-chunk boundary.
#[derive(Clone, Debug)]
pub struct ArrivalHasher {
    hasher: blake3::Hasher,
    len: u64,
    /// The state after the last whole sealed chunk (`None` before the first).
    boundary: Option<(u64, blake3::Hasher)>,
}

impl ArrivalHasher {
    fn new() -> ArrivalHasher {
        ArrivalHasher {
            hasher: blake3::Hasher::new(),
            len: 0,
            boundary: None,
        }
    }

    /// Bytes hashed so far: where the upload stands.
    pub fn position(&self) -> u64 {
        self.len
    }

    /// Hashes the next bytes of the upload.
    pub fn update(&mut self, mut bytes: &[u8]) {
        let chunk = SEALED_CHUNK_LEN as u64;
        while !bytes.is_empty() {
            let to_boundary = chunk - self.len % chunk;
            let take = bytes
                .len()
                .min(usize::try_from(to_boundary).unwrap_or(usize::MAX));
            self.hasher.update(&bytes[..take]);
            self.len += take as u64;
            bytes = &bytes[take..];
            if self.len.is_multiple_of(chunk) {
                self.boundary = Some((self.len, self.hasher.clone()));
            }
        }
    }

    /// The state an upload of `size` bytes can go on from: everything when it is
    /// complete, else the last chunk boundary (where the next request resumes).
    fn resumable(self, size: u64) -> Option<Kept> {
        let (len, hasher) = if self.len == size {
            (self.len, self.hasher)
        } else {
            self.boundary?
        };
        Some(Kept { len, hasher })
    }
}

/// A hash state kept between requests.
#[derive(Debug)]
struct Kept {
    len: u64,
    hasher: blake3::Hasher,
}

/// What the table knows of one upload.
#[derive(Debug)]
struct Slot {
    /// Requests writing this upload now.
    writers: u32,
    /// Two requests wrote at once: the bytes on disk may be either's, so nothing is kept
    /// until both have ended.
    overlapped: bool,
    kept: Option<Kept>,
    touched: Instant,
}

/// The hash states of the uploads this server is receiving, shared by all connections.
#[derive(Debug)]
pub struct UploadHashes {
    slots: Mutex<HashMap<BlobId, Slot>>,
    /// A kept state older than this belongs to an upload that expired.
    max_age: Duration,
}

impl UploadHashes {
    /// A table whose states are dropped after `max_age` (the upload expiry).
    pub fn new(max_age: Duration) -> UploadHashes {
        UploadHashes {
            slots: Mutex::new(HashMap::new()),
            max_age,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BlobId, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A writer starts writing the upload `id` at `offset`; it holds the returned
    /// [`Writing`] (with the hasher to feed its bytes to, or none when the bytes before
    /// `offset` were not all hashed here) until it has stopped writing.
    pub fn begin(self: &Arc<Self>, id: &BlobId, offset: u64) -> Writing {
        let mut slots = self.lock();
        let slot = slots.entry(id.clone()).or_insert_with(|| Slot {
            writers: 0,
            overlapped: false,
            kept: None,
            touched: Instant::now(),
        });
        slot.writers += 1;
        slot.touched = Instant::now();
        let hasher = if slot.writers > 1 {
            slot.overlapped = true;
            None
        } else {
            match slot.kept.take() {
                _ if offset == 0 => Some(ArrivalHasher::new()),
                Some(kept) if kept.len == offset => Some(ArrivalHasher {
                    boundary: Some((kept.len, kept.hasher.clone())),
                    hasher: kept.hasher,
                    len: kept.len,
                }),
                _ => None,
            }
        };
        Writing {
            table: Arc::clone(self),
            id: id.clone(),
            hasher,
            ended: false,
        }
    }

    /// The BLAKE3 of the whole upload of `size` bytes, if every byte of it was hashed
    /// here as it arrived.
    pub fn complete(&self, id: &BlobId, size: u64) -> Option<BlobHash> {
        let slots = self.lock();
        let slot = slots.get(id)?;
        let kept = slot.kept.as_ref()?;
        (slot.writers == 0 && kept.len == size).then(|| *kept.hasher.finalize().as_bytes())
    }

    /// Drops what is kept of the upload `id` (committed or aborted).
    pub fn forget(&self, id: &BlobId) {
        let mut slots = self.lock();
        if slots.get(id).is_some_and(|s| s.writers == 0) {
            slots.remove(id);
        }
    }

    fn end(&self, id: &BlobId, hasher: Option<ArrivalHasher>, size: u64) {
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(id) else {
            return;
        };
        slot.writers = slot.writers.saturating_sub(1);
        slot.touched = Instant::now();
        if slot.overlapped {
            slot.kept = None;
            if slot.writers == 0 {
                slot.overlapped = false;
            }
        } else {
            slot.kept = hasher.and_then(|h| h.resumable(size));
        }
        if slot.writers == 0 && slot.kept.is_none() {
            slots.remove(id);
            return;
        }
        if slots.len() > MAX_KEPT {
            make_room(&mut slots, self.max_age);
        }
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.lock().len()
    }
}

/// Drops states of expired uploads, then the least recently used idle ones, until the
/// table holds at most [`MAX_KEPT`].
fn make_room(slots: &mut HashMap<BlobId, Slot>, max_age: Duration) {
    let now = Instant::now();
    slots.retain(|_, s| s.writers > 0 || now.duration_since(s.touched) <= max_age);
    while slots.len() > MAX_KEPT {
        let oldest = slots
            .iter()
            .filter(|(_, s)| s.writers == 0)
            .min_by_key(|(_, s)| s.touched)
            .map(|(id, _)| id.clone());
        match oldest {
            Some(id) => slots.remove(&id),
            None => break,
        };
    }
}

/// One writer of an upload's partial. Dropped without [`Writing::finish`] (a failed
/// write), it keeps nothing of that upload.
#[derive(Debug)]
pub struct Writing {
    table: Arc<UploadHashes>,
    id: BlobId,
    hasher: Option<ArrivalHasher>,
    ended: bool,
}

impl Writing {
    /// The hasher to feed the request's bytes to, in order (`None`: none is kept).
    pub fn take_hasher(&mut self) -> Option<ArrivalHasher> {
        self.hasher.take()
    }

    /// The writer wrote and synced its bytes, and the partial holds exactly what
    /// `hasher` saw: keeps the state an upload of `size` bytes resumes from (everything
    /// once complete, else the last chunk boundary, where the partial is cut back to).
    pub fn finish(mut self, hasher: Option<ArrivalHasher>, size: u64) {
        self.ended = true;
        self.table.end(&self.id, hasher, size);
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        if !self.ended {
            self.table.end(&self.id, None, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::hash::of_bytes;

    const CHUNK: usize = SEALED_CHUNK_LEN;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 13 + i / 251) as u8).collect()
    }

    fn table() -> Arc<UploadHashes> {
        Arc::new(UploadHashes::new(Duration::from_secs(3600)))
    }

    #[test]
    fn one_request_hashes_the_whole_upload_in_any_pieces() {
        let data = bytes(2 * CHUNK + 100);
        let t = table();
        let id = BlobId::random();
        let mut writing = t.begin(&id, 0);
        let mut h = writing.take_hasher().expect("a fresh upload is hashed");
        for piece in data.chunks(300_001) {
            h.update(piece);
        }
        writing.finish(Some(h), data.len() as u64);
        assert_eq!(t.complete(&id, data.len() as u64), Some(of_bytes(&data)));
        t.forget(&id);
        assert_eq!(t.kept(), 0);
    }

    #[test]
    fn a_resume_at_the_last_chunk_boundary_goes_on_from_there() {
        let data = bytes(3 * CHUNK + 5);
        let size = data.len() as u64;
        let t = table();
        let id = BlobId::random();
        // 1.5 chunks arrive; the partial is cut back to the whole chunk.
        let mut writing = t.begin(&id, 0);
        let mut h = writing.take_hasher().expect("hasher");
        h.update(&data[..CHUNK + CHUNK / 2]);
        writing.finish(Some(h), size);
        assert_eq!(t.complete(&id, size), None);
        let mut writing = t.begin(&id, CHUNK as u64);
        let mut h = writing.take_hasher().expect("the state at the boundary");
        assert_eq!(h.position(), CHUNK as u64);
        h.update(&data[CHUNK..]);
        writing.finish(Some(h), size);
        assert_eq!(t.complete(&id, size), Some(of_bytes(&data)));
    }

    #[test]
    fn what_was_not_seen_here_is_not_guessed() {
        let data = bytes(2 * CHUNK);
        let size = data.len() as u64;
        let t = table();
        // A resume this server has no state for (a restart): no hasher, no hash.
        let id = BlobId::random();
        let mut writing = t.begin(&id, CHUNK as u64);
        assert!(writing.take_hasher().is_none());
        writing.finish(None, size);
        assert_eq!(t.complete(&id, size), None);
        assert_eq!(t.kept(), 0);

        // A resume at another offset than the state kept.
        let id = BlobId::random();
        let mut writing = t.begin(&id, 0);
        let mut h = writing.take_hasher().expect("hasher");
        h.update(&data[..CHUNK]);
        writing.finish(Some(h), size);
        assert!(t.begin(&id, 2 * CHUNK as u64).take_hasher().is_none());

        // A failed write (dropped without finish) keeps nothing.
        let id = BlobId::random();
        let mut writing = t.begin(&id, 0);
        let mut h = writing.take_hasher().expect("hasher");
        h.update(&data);
        drop(writing);
        assert_eq!(t.complete(&id, size), None);

        // Two requests at once: neither is kept.
        let id = BlobId::random();
        let mut first = t.begin(&id, 0);
        let mut second = t.begin(&id, 0);
        assert!(second.take_hasher().is_none());
        let mut h = first.take_hasher().expect("hasher");
        h.update(&data);
        first.finish(Some(h), size);
        assert_eq!(t.complete(&id, size), None);
        second.finish(None, size);
        assert_eq!(t.complete(&id, size), None);
        // Once both ended, a new start from byte 0 is hashed again.
        let mut again = t.begin(&id, 0);
        let mut h = again.take_hasher().expect("hasher");
        h.update(&data);
        again.finish(Some(h), size);
        assert_eq!(t.complete(&id, size), Some(of_bytes(&data)));
    }

    #[test]
    fn the_table_stays_bounded() {
        let t = table();
        let data = bytes(10);
        let mut first = None;
        for _ in 0..MAX_KEPT + 10 {
            let id = BlobId::random();
            let mut writing = t.begin(&id, 0);
            let mut h = writing.take_hasher().expect("hasher");
            h.update(&data);
            writing.finish(Some(h), 10);
            first.get_or_insert(id);
        }
        assert_eq!(t.kept(), MAX_KEPT);
        // The least recently used went first.
        let first = first.expect("one upload");
        assert_eq!(t.complete(&first, 10), None);
    }
}
