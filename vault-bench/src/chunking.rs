//! The keyed content-defined chunker of format version 2 (docs/FORMAT.md §7.10) on one
//! core: finding the cut points and computing each chunk's keyed id, which a delta upload
//! must do over the whole file before it knows what changed.

use std::time::Instant;

use anyhow::Context;
use vault_core::crypto::Key32;
use vault_core::format::chunks::ChunkKeys;

use crate::ceiling::rate;

/// The window of random data the chunker runs over again and again (64 MiB).
const WINDOW: usize = 64 << 20;

/// Cuts and identifies `total` bytes of random data on this thread; returns bytes per
/// second.
pub fn cut_and_identify(total: u64) -> anyhow::Result<f64> {
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).context("no system randomness")?;
    let keys = ChunkKeys::derive(&Key32::from_slice(&key)?)?;
    let mut data = vec![0u8; WINDOW];
    aws_lc_rs::rand::fill(&mut data).context("no system randomness")?;
    let (mut done, start) = (0u64, Instant::now());
    while done < total {
        let mut rest = &data[..];
        while !rest.is_empty() {
            let len = keys.cut(rest);
            std::hint::black_box(keys.id(&rest[..len]));
            rest = &rest[len..];
        }
        done += WINDOW as u64;
    }
    Ok(rate(done, start.elapsed()))
}
