//! `vault-admin migrate-blobs`: copies every sealed blob of one store into another (the
//! local directory into a bucket, or back), so a deployment can change `storage.kind`
//! with no downtime beyond a restart. Sealed blobs never change, so a copy taken while the
//! server runs stays right; a second run after the server stopped copies only what arrived
//! meanwhile (a blob the target already holds at the same size is skipped). Partial blobs
//! (uploads in progress) are not copied: after the switch such an upload starts again from
//! its first byte. Large blobs stream through a partial of the target, small ones go in
//! batches, so memory stays bounded whatever the blob sizes.

use std::io::{self, Read, Write};

use serde::Serialize;

use crate::blobs::{BlobId, BlobStore, PART_LEN};

/// Blobs at most this large are read whole and stored in batches.
const SMALL: u64 = 1 << 20;
/// At most this many bytes of small blobs are held for one batch.
const BATCH_BYTES: usize = 16 << 20;

/// What a copy did.
#[derive(Debug, Default, Serialize)]
pub struct MoveReport {
    /// Blobs in the source.
    pub blobs: u64,
    /// Blobs copied by this run, and their bytes.
    pub copied: u64,
    pub copied_bytes: u64,
    /// Blobs the target already held at the same size.
    pub present: u64,
    /// Blobs that vanished from the source while copying (gc removed them).
    pub vanished: u64,
}

/// Copies every sealed blob of `from` that `to` lacks; `progress` hears each one copied.
pub fn copy_blobs(
    from: &dyn BlobStore,
    to: &dyn BlobStore,
    progress: &mut dyn FnMut(&MoveReport),
) -> io::Result<MoveReport> {
    let mut report = MoveReport::default();
    let mut batch: Vec<(BlobId, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0;
    for blob in from.list()? {
        report.blobs += 1;
        if to.size(&blob.id)? == Some(blob.size) {
            report.present += 1;
            continue;
        }
        let reader = match from.open(&blob.id) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                report.vanished += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        if blob.size <= SMALL {
            let mut bytes = Vec::with_capacity(blob.size as usize);
            reader.take(SMALL + 1).read_to_end(&mut bytes)?;
            batch_bytes += bytes.len();
            batch.push((blob.id, bytes));
            if batch_bytes >= BATCH_BYTES {
                store_batch(to, &mut batch, &mut report)?;
                batch_bytes = 0;
                progress(&report);
            }
        } else {
            stream(reader, to, &blob.id)?;
            report.copied += 1;
            report.copied_bytes += blob.size;
            progress(&report);
        }
    }
    store_batch(to, &mut batch, &mut report)?;
    progress(&report);
    Ok(report)
}

fn store_batch(
    to: &dyn BlobStore,
    batch: &mut Vec<(BlobId, Vec<u8>)>,
    report: &mut MoveReport,
) -> io::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    // A blob the target holds with other bytes (a copy cut short) is replaced.
    for (id, _) in batch.iter() {
        if to.size(id)?.is_some() {
            to.remove(id)?;
        }
    }
    let refs: Vec<(BlobId, &[u8])> = batch.iter().map(|(id, b)| (id.clone(), &b[..])).collect();
    to.put_many(&refs)?;
    report.copied += batch.len() as u64;
    report.copied_bytes += batch.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
    batch.clear();
    Ok(())
}

/// Streams one blob into a partial of `to` and seals it.
fn stream(
    mut reader: Box<dyn crate::blobs::BlobReader>,
    to: &dyn BlobStore,
    id: &BlobId,
) -> io::Result<()> {
    if to.size(id)?.is_some() {
        to.remove(id)?;
    }
    let mut out = to.write_partial(id, 0)?;
    let mut buf = vec![0u8; PART_LEN.min(4 << 20)];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    out.flush()?;
    out.sync()?;
    drop(out);
    to.seal_partial(id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::FsBlobStore;
    use crate::testing::R;

    fn read_all(store: &dyn BlobStore, id: &BlobId) -> R<Vec<u8>> {
        let mut out = Vec::new();
        store.open(id)?.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Into another local store here; into a bucket when `VAULT_TEST_S3_*` names one.
    #[test]
    fn every_sealed_blob_is_copied_once_and_a_second_run_copies_only_the_new() -> R<()> {
        let dir = tempfile::tempdir()?;
        let from = FsBlobStore::open(dir.path().join("from"))?;
        let to: Box<dyn BlobStore> = match crate::testing::s3_settings() {
            Some(s3) => Box::new(crate::blobs::S3BlobStore::open(&s3)?),
            None => Box::new(FsBlobStore::open(dir.path().join("to"))?),
        };
        let large: Vec<u8> = (0..3 * SMALL as usize).map(|i| (i % 251) as u8).collect();
        let (a, b, c) = (BlobId::random(), BlobId::random(), BlobId::random());
        from.put_many(&[(a.clone(), &b"small"[..]), (b.clone(), &large[..])])?;
        // A partial (an upload in progress) is not copied.
        let mut w = from.write_partial(&BlobId::random(), 0)?;
        w.write_all(b"half")?;
        w.sync()?;
        drop(w);

        let mut heard = 0;
        let first = copy_blobs(&from, to.as_ref(), &mut |_| heard += 1)?;
        assert_eq!((first.blobs, first.copied, first.present), (2, 2, 0));
        assert_eq!(first.copied_bytes, 5 + large.len() as u64);
        assert!(heard >= 2);
        assert_eq!(read_all(to.as_ref(), &a)?, b"small");
        assert!(read_all(to.as_ref(), &b)? == large);
        assert!(to.list_partials()?.is_empty());

        from.put_many(&[(c.clone(), &b"arrived later"[..])])?;
        let second = copy_blobs(&from, to.as_ref(), &mut |_| {})?;
        assert_eq!((second.blobs, second.copied, second.present), (3, 1, 2));
        assert_eq!(read_all(to.as_ref(), &c)?, b"arrived later");
        for id in [a, b, c] {
            to.remove(&id)?;
        }
        Ok(())
    }
}
