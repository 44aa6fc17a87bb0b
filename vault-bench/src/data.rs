//! The data the benchmark moves: one large file of random bytes, and a tree of small files
//! of 1–16 KiB spread over subdirectories of at most 1,000 entries — except the flat tree
//! for the listing, whose one directory holds every file.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Writes `size` random bytes to `path`.
pub fn big_file(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64))?;
        aws_lc_rs::rand::fill(&mut chunk[..n]).context("no system randomness")?;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

/// The size of small file `index`: 1 to 16 KiB, spread evenly.
pub fn small_size(index: usize) -> usize {
    1024 + (index * 7919) % (15 * 1024 + 1)
}

/// The relative path of small file `index`: flat (`f00042.bin`) or in directories of
/// 1,000 (`d003/f03042.bin`).
pub fn small_path(index: usize, flat: bool) -> String {
    if flat {
        format!("f{index:05}.bin")
    } else {
        format!("d{:03}/f{index:05}.bin", index / 1000)
    }
}

/// Writes `count` small random files under `dir`. Returns their total size.
pub fn small_tree(dir: &Path, count: usize, flat: bool) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut buffer = vec![0u8; 16 * 1024];
    for index in 0..count {
        let path = dir.join(small_path(index, flat));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let size = small_size(index);
        aws_lc_rs::rand::fill(&mut buffer[..size]).context("no system randomness")?;
        std::fs::write(&path, &buffer[..size])
            .with_context(|| format!("cannot write {}", path.display()))?;
        total += size as u64;
    }
    Ok(total)
}

/// Rewrites `changes` of the `count` files of a tree made by [`small_tree`] with new
/// contents, spread over the whole tree.
pub fn change_some(dir: &Path, count: usize, changes: usize, flat: bool) -> anyhow::Result<()> {
    let step = (count / changes.max(1)).max(1);
    let mut buffer = vec![0u8; 16 * 1024];
    for index in (0..count).step_by(step).take(changes) {
        let path = dir.join(small_path(index, flat));
        let size = small_size(index + 1);
        aws_lc_rs::rand::fill(&mut buffer[..size]).context("no system randomness")?;
        std::fs::write(&path, &buffer[..size])
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sizes_stay_within_1_to_16_kib() {
        for index in 0..20_000 {
            let size = small_size(index);
            assert!((1024..=16 * 1024).contains(&size), "{index}: {size}");
        }
        assert_eq!(small_size(0), 1024);
    }

    #[test]
    fn change_some_rewrites_exactly_that_many_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        small_tree(dir.path(), 250, false).expect("tree");
        let before: Vec<Vec<u8>> = (0..250)
            .map(|i| std::fs::read(dir.path().join(small_path(i, false))).expect("read"))
            .collect();
        change_some(dir.path(), 250, 100, false).expect("change");
        let changed = (0..250)
            .filter(|&i| {
                std::fs::read(dir.path().join(small_path(i, false))).expect("read") != before[i]
            })
            .count();
        assert_eq!(changed, 100);
    }
}
