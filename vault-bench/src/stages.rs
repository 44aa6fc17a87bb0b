//! The work a large transfer does besides moving bytes over QUIC, measured on its own:
//! one thread, no network, the primitives the binaries use (`vault-core`'s STREAM sealer
//! and BLAKE3 hasher, `vault-fsio`'s write-behind and drop-behind files), each stage timed
//! in CPU time of the thread. For `put`: the client reads, hashes and seals the file; the
//! server writes the sealed blob and syncs it. For `get`: the server reads the blob; the
//! client opens each chunk as if it had just arrived (it is sealed again for that,
//! untimed), hashes it and writes the file, then syncs it.
//! Together with the raw quinn ceiling's CPU, these say how close to the ceiling a
//! transfer can come on this machine at best.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use vault_core::format::stream::SEALED_CHUNK_LEN;
use vault_core::format::{
    CHUNK_LEN, ContentHasher, StreamOpener, StreamSealer, chunk_count, generate_file_key,
};
use vault_fsio::{DropBehind, WriteBehind};

use crate::cpu;

/// CPU time of each stage for one file.
#[derive(Clone, Copy, Debug)]
pub struct Stages {
    /// `put`, client: read, BLAKE3, AES-256-GCM seal.
    pub put_client: Duration,
    /// `put`, server: write behind, sync.
    pub put_server: Duration,
    /// `get`, server: read with drop-behind.
    pub get_server: Duration,
    /// `get`, client: AES-256-GCM open, BLAKE3, write behind, sync.
    pub get_client: Duration,
}

/// Measures every stage on `source`, writing the sealed blob and the opened copy into
/// `work` (both removed after).
pub fn measure(source: &Path, work: &Path) -> anyhow::Result<Stages> {
    let blob = work.join("stages.blob");
    let copy = work.join("stages.out");
    let result = measure_into(source, &blob, &copy);
    let _ = std::fs::remove_file(&blob);
    let _ = std::fs::remove_file(&copy);
    result
}

fn measure_into(source: &Path, blob_path: &Path, copy_path: &Path) -> anyhow::Result<Stages> {
    let size = std::fs::metadata(source)
        .with_context(|| format!("cannot read {}", source.display()))?
        .len();
    let chunks = chunk_count(size);
    let key = generate_file_key()?;
    let mut clock = Clock::start();

    // put
    let mut input =
        File::open(source).with_context(|| format!("cannot read {}", source.display()))?;
    let mut blob = WriteBehind::new(File::create(blob_path)?, 0);
    let (mut sealer, mut hasher) = (StreamSealer::new(&key), ContentHasher::new());
    let (mut put_client, mut put_server) = (Duration::ZERO, Duration::ZERO);
    let mut buf = Vec::with_capacity(SEALED_CHUNK_LEN);
    for index in 0..chunks {
        let last = index + 1 == chunks;
        let len = chunk_len(size, index);
        buf.clear();
        let got = (&mut input).take(len as u64).read_to_end(&mut buf)?;
        ensure!(got == len, "{} changed while it was read", source.display());
        hasher.update(&buf);
        sealer.seal_chunk_in_place(&mut buf, last)?;
        put_client += clock.lap();
        blob.write_all(&buf)?;
        put_server += clock.lap();
    }
    let written = hasher.finalize();
    put_client += clock.lap();
    blob.flush()?;
    blob.into_inner().sync_data()?;
    put_server += clock.lap();

    // get, server: the blob read front to back.
    let mut blob = DropBehind::new(File::open(blob_path)?);
    buf.resize(SEALED_CHUNK_LEN, 0);
    clock.lap();
    for index in 0..chunks {
        blob.read_exact(&mut buf[..sealed_len(size, index)])?;
    }
    let get_server = clock.lap();

    // get, client: each chunk as the network hands it over (sealed again here, untimed:
    // a chunk read out of a blob whose pages were just dropped is not what a client
    // receives), opened, hashed and written behind.
    let mut input = File::open(source)?;
    let mut copy = WriteBehind::new(File::create(copy_path)?, 0);
    let mut sealer = StreamSealer::new(&key);
    let (mut opener, mut hasher) = (StreamOpener::new(&key), ContentHasher::new());
    let mut get_client = Duration::ZERO;
    for index in 0..chunks {
        let last = index + 1 == chunks;
        buf.clear();
        (&mut input)
            .take(chunk_len(size, index) as u64)
            .read_to_end(&mut buf)?;
        sealer.seal_chunk_in_place(&mut buf, last)?;
        clock.lap();
        let n = opener.open_chunk_in_place(index, &mut buf, last)?;
        hasher.update(&buf[..n]);
        copy.write_all(&buf[..n])?;
        get_client += clock.lap();
    }
    opener.finish()?;
    ensure!(
        hasher.finalize() == written,
        "the opened copy does not hash as the file did"
    );
    copy.flush()?;
    copy.into_inner().sync_all()?;
    get_client += clock.lap();
    Ok(Stages {
        put_client,
        put_server,
        get_server,
        get_client,
    })
}

/// Plaintext length of chunk `index` of a `size`-byte file.
fn chunk_len(size: u64, index: u64) -> usize {
    (size - index * CHUNK_LEN as u64).min(CHUNK_LEN as u64) as usize
}

/// Sealed length of chunk `index` of a `size`-byte file.
fn sealed_len(size: u64, index: u64) -> usize {
    chunk_len(size, index) + (SEALED_CHUNK_LEN - CHUNK_LEN)
}

/// The calling thread's CPU time between laps.
struct Clock {
    last: Duration,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            last: cpu::of_this_thread(),
        }
    }

    /// CPU time since the previous lap.
    fn lap(&mut self) -> Duration {
        let now = cpu::of_this_thread();
        let spent = now.saturating_sub(self.last);
        self.last = now;
        spent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_of_a_file_of_two_and_a_half_chunks_takes_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = dir.path().join("source");
        let data: Vec<u8> = (0..CHUNK_LEN * 5 / 2).map(|i| (i % 251) as u8).collect();
        std::fs::write(&source, &data).expect("write");
        let stages = measure(&source, dir.path()).expect("measure");
        for (stage, spent) in [
            ("put client", stages.put_client),
            ("put server", stages.put_server),
            ("get server", stages.get_server),
            ("get client", stages.get_client),
        ] {
            assert!(spent > Duration::ZERO, "{stage} took no time");
        }
        assert!(!dir.path().join("stages.blob").exists());
        assert!(!dir.path().join("stages.out").exists());
    }
}
