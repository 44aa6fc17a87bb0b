//! The BLAKE3 of each version's blob, recorded at commit: from the bytes as they arrive,
//! across a resumed upload, from disk after a restart, and for every blob of a batch.

use std::io;
use std::sync::Arc;

use diesel::prelude::*;
use vault_proto::proto::{ErrorCode, OpenedUpload};
use vault_proto::sizes::SEALED_CHUNK_LEN;

use super::{Broken, FileCalls, fixture_with, put_file};
use crate::blobs::{BlobId, BlobReader, BlobStore, FsBlobStore, PartialWriter, StoredBlob};
use crate::db::schema::entries;
use crate::files::upload;
use crate::testing::{Fixture, R, code, sealed_bytes};

/// A blob store that counts how often a sealed blob is opened for reading.
#[derive(Debug)]
struct CountingOpens {
    inner: FsBlobStore,
    opens: Arc<std::sync::atomic::AtomicUsize>,
}

impl BlobStore for CountingOpens {
    fn write_partial(&self, id: &BlobId, offset: u64) -> io::Result<Box<dyn PartialWriter>> {
        self.inner.write_partial(id, offset)
    }
    fn partial_len(&self, id: &BlobId) -> io::Result<Option<u64>> {
        self.inner.partial_len(id)
    }
    fn truncate_partial(&self, id: &BlobId, len: u64) -> io::Result<()> {
        self.inner.truncate_partial(id, len)
    }
    fn seal_partial(&self, id: &BlobId) -> io::Result<u64> {
        self.inner.seal_partial(id)
    }
    fn remove_partial(&self, id: &BlobId) -> io::Result<()> {
        self.inner.remove_partial(id)
    }
    fn open(&self, id: &BlobId) -> io::Result<Box<dyn BlobReader>> {
        self.opens.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.open(id)
    }
    fn size(&self, id: &BlobId) -> io::Result<Option<u64>> {
        self.inner.size(id)
    }
    fn remove(&self, id: &BlobId) -> io::Result<()> {
        self.inner.remove(id)
    }
    fn list(&self) -> io::Result<Vec<StoredBlob>> {
        self.inner.list()
    }
    fn list_partials(&self) -> io::Result<Vec<StoredBlob>> {
        self.inner.list_partials()
    }
    fn copy_to(&self, id: &BlobId, dest_root: &std::path::Path) -> io::Result<()> {
        self.inner.copy_to(id, dest_root)
    }
}

/// A fixture whose blob store counts the blobs it opens.
fn counting_fixture() -> R<(Fixture, Arc<std::sync::atomic::AtomicUsize>)> {
    let opens = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&opens);
    let f = fixture_with(
        |_| {},
        move |inner| {
            Arc::new(CountingOpens {
                inner,
                opens: counter,
            })
        },
    )?;
    Ok((f, opens))
}

/// (recorded BLAKE3, BLAKE3 of the blob as stored) of the current version of `path`.
fn recorded_and_stored(f: &Fixture, path: &str) -> R<(Option<Vec<u8>>, Vec<u8>)> {
    use crate::db::schema::versions;
    let mut c = f.state.db.conn()?;
    let (blob, recorded): (String, Option<Vec<u8>>) = versions::table
        .inner_join(
            entries::table.on(entries::id
                .eq(versions::entry_id)
                .and(entries::current_version.eq(versions::version.nullable()))),
        )
        .filter(entries::path.eq(path))
        .select((versions::blob_id, versions::blob_blake3))
        .get_result(&mut *c)?;
    let id = BlobId::parse(&blob).ok_or("bad blob id")?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut f.state.blobs.open(&id)?, &mut bytes)?;
    Ok((recorded, blake3::hash(&bytes).as_bytes().to_vec()))
}

fn opened(opens: &std::sync::atomic::AtomicUsize) -> usize {
    opens.load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn an_upload_records_the_blake3_of_its_blob_without_reading_it_again() -> R<()> {
    let (f, opens) = counting_fixture()?;
    let bytes = sealed_bytes(2 * (1 << 20) + 77, 3);
    f.put("aaaa", &bytes).await?;
    assert_eq!(opened(&opens), 0, "the commit read the blob again");
    let (recorded, stored) = recorded_and_stored(&f, "aaaa")?;
    assert_eq!(recorded, Some(stored));
    assert_eq!(
        recorded.as_deref(),
        Some(blake3::hash(&bytes).as_bytes().as_slice())
    );
    Ok(())
}

#[tokio::test]
async fn a_resumed_upload_is_hashed_from_where_it_broke() -> R<()> {
    let (f, opens) = counting_fixture()?;
    let bytes = sealed_bytes(3 * (1 << 20) + 5, 4);
    let (id, _) = f.open("aaaa", bytes.len() as u64).await?;
    // 1.5 chunks arrive, then the stream breaks; the resume sends from the whole chunk.
    let mut broken = Broken {
        data: &bytes[..SEALED_CHUNK_LEN + SEALED_CHUNK_LEN / 2],
    };
    assert!(
        upload::receive(&f.state, f.alice(), id, 0, &mut broken)
            .await
            .is_err()
    );
    let received = f.status(id).await?;
    // More than declared: refused, cut back to whole chunks.
    let mut over = bytes[received as usize..].to_vec();
    over.push(0);
    assert_eq!(code(f.data(id, received, &over).await), ErrorCode::TooLarge);
    let received = f.status(id).await?;
    f.data(id, received, &bytes[received as usize..]).await?;
    f.commit(id).await?;
    assert_eq!(opened(&opens), 0, "the commit read the blob again");
    let (recorded, stored) = recorded_and_stored(&f, "aaaa")?;
    assert_eq!(recorded, Some(stored));
    assert_eq!(f.get("aaaa", None, 0).await?, bytes);
    Ok(())
}

#[tokio::test]
async fn after_a_restart_the_commit_hashes_the_blob_from_disk() -> R<()> {
    let (mut f, opens) = counting_fixture()?;
    let bytes = sealed_bytes(2 * (1 << 20), 5);
    let (id, _) = f.open("aaaa", bytes.len() as u64).await?;
    f.data(id, 0, &bytes[..SEALED_CHUNK_LEN]).await?;
    // A restarted server has no hash state of the upload.
    Arc::get_mut(&mut f.state)
        .ok_or("the server state is shared")?
        .upload_hashes = Arc::new(crate::files::upload_hash::UploadHashes::new(
        std::time::Duration::from_secs(3600),
    ));
    f.data(id, SEALED_CHUNK_LEN as u64, &bytes[SEALED_CHUNK_LEN..])
        .await?;
    f.commit(id).await?;
    assert_eq!(opened(&opens), 1);
    let (recorded, stored) = recorded_and_stored(&f, "aaaa")?;
    assert_eq!(recorded, Some(stored));
    Ok(())
}

#[tokio::test]
async fn a_batch_records_the_blake3_of_every_blob() -> R<()> {
    let (f, opens) = counting_fixture()?;
    let names = ["aaaa", "bbbb", "cccc"];
    let contents: Vec<Vec<u8>> = (0..3u8)
        .map(|i| sealed_bytes(500 * u64::from(i) + 3, i))
        .collect();
    let request: Vec<(&str, u64)> = names
        .iter()
        .zip(&contents)
        .map(|(n, c)| (*n, c.len() as u64))
        .collect();
    let uploads: Vec<OpenedUpload> = f
        .open_many(&request)
        .await?
        .into_iter()
        .collect::<Result<_, _>>()?;
    let files = uploads
        .iter()
        .zip(&contents)
        .map(|(o, c)| put_file(o.upload_id, c.clone()))
        .collect();
    for result in f.put_many(files).await? {
        result?;
    }
    assert_eq!(opened(&opens), 0);
    for (name, content) in names.iter().zip(&contents) {
        let (recorded, stored) = recorded_and_stored(&f, name)?;
        assert_eq!(recorded, Some(stored));
        assert_eq!(
            recorded.as_deref(),
            Some(blake3::hash(content).as_bytes().as_slice())
        );
    }
    Ok(())
}
