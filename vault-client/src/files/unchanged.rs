//! Whether a local file already is a remote file's current version: the same size and the
//! same BLAKE3 of the plaintext as the version's sealed metadata states (docs/FORMAT.md
//! §7.4). `put` then makes no new version and `get` writes nothing; both report the file
//! as unchanged. The local file is hashed only when the sizes agree.

use std::io::Read;
use std::path::Path;

use vault_core::format::{CHUNK_LEN, ContentHasher};
use zeroize::Zeroizing;

use super::FilesError;
use super::remote::Entry;
use super::upload::LocalFile;

/// What a file's current version holds, from its opened metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrentVersion {
    pub file_id: i64,
    pub version: u64,
    /// Plaintext size.
    pub size: u64,
    /// BLAKE3 of the plaintext.
    pub blake3: [u8; 32],
}

impl CurrentVersion {
    /// The current version of `entry`, if it is a file whose version was opened.
    pub fn of(entry: &Entry) -> Option<Self> {
        let (version, meta) = entry.current.as_ref()?;
        Some(CurrentVersion {
            file_id: entry.id,
            version: version.version,
            size: meta.size,
            blake3: meta.blake3,
        })
    }

    /// Whether a plaintext of `size` bytes hashing to `blake3` is this version's.
    pub fn matches(&self, size: u64, blake3: &[u8; 32]) -> bool {
        size == self.size && *blake3 == self.blake3
    }
}

/// Whether the regular file at `local` holds what `current` holds. It is read and hashed
/// on a blocking thread, only when its size is `current`'s; a file that changes while it
/// is read does not match. No file at `local` does not match either.
pub async fn file_matches(local: &Path, current: &CurrentVersion) -> Result<bool, FilesError> {
    let before = match std::fs::metadata(local) {
        Ok(m) if m.is_file() && m.len() == current.size => LocalFile::stat(local)?,
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(FilesError::io("read", local, e)),
    };
    let path = local.to_path_buf();
    let hash = tokio::task::spawn_blocking(move || hash_file(&path))
        .await
        .map_err(|e| FilesError::Usage(format!("hashing {} failed: {e}", local.display())))??;
    Ok(current.matches(before.size, &hash) && LocalFile::stat(local)? == before)
}

/// The BLAKE3 of the file at `path`.
fn hash_file(path: &Path) -> Result<[u8; 32], FilesError> {
    let mut file = std::fs::File::open(path).map_err(|e| FilesError::io("read", path, e))?;
    let mut hasher = ContentHasher::new();
    let mut buf = Zeroizing::new(vec![0u8; CHUNK_LEN]);
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| FilesError::io("read", path, e))?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vault_core::format::content_hash;

    fn current_of(data: &[u8]) -> CurrentVersion {
        CurrentVersion {
            file_id: 1,
            version: 2,
            size: data.len() as u64,
            blake3: content_hash(data),
        }
    }

    #[tokio::test]
    async fn files_match_only_with_the_same_contents() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("f");
        let data: Vec<u8> = (0..CHUNK_LEN * 2 + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        assert!(file_matches(&path, &current_of(&data)).await.expect("hash"));
        let mut other = data.clone();
        other[CHUNK_LEN + 3] ^= 1;
        assert!(
            !file_matches(&path, &current_of(&other))
                .await
                .expect("hash")
        );
        assert!(
            !file_matches(&path, &current_of(&data[1..]))
                .await
                .expect("size")
        );
        assert!(
            !file_matches(&tmp.path().join("none"), &current_of(&data))
                .await
                .expect("missing")
        );
        assert!(
            !file_matches(tmp.path(), &current_of(&data))
                .await
                .expect("dir")
        );
    }
}
