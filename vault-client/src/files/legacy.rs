//! `import-legacy` (docs/FORMAT.md §7.6): a file of the legacy DES netdisk is decrypted on this
//! machine (streaming, `format::LegacyDecryptor`) into a private temporary file (0600, in the state
//! directory, removed when dropped), which is then uploaded as any new file. The legacy ciphertext
//! never leaves the machine and DES never encrypts anything.

use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use vault_core::format::{LegacyDecryptor, LegacyMode};

use super::FilesError;
use crate::state::StateDir;

/// Decrypts `source` into a temporary file that carries the source's mtime. A wrong key,
/// mode or a file that is not legacy ciphertext fails, and the temporary file is removed.
pub fn decrypt_to_temp(
    state: &StateDir,
    source: &Path,
    key: &[u8; 8],
    mode: LegacyMode,
) -> Result<tempfile::NamedTempFile, FilesError> {
    let meta = std::fs::metadata(source).map_err(|e| FilesError::io("read", source, e))?;
    if !meta.is_file() {
        return Err(FilesError::Usage(format!(
            "{} is not a regular file",
            source.display()
        )));
    }
    let dir = state.path().join("tmp");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| FilesError::io("create", &dir, e))?;
    let mut out = tempfile::Builder::new()
        .prefix(".legacy-")
        .tempfile_in(&dir)
        .map_err(|e| FilesError::io("create a temporary file in", &dir, e))?;
    let mut input = std::fs::File::open(source).map_err(|e| FilesError::io("read", source, e))?;
    let mut decryptor = LegacyDecryptor::new(key, mode);
    let mut buf = zeroize::Zeroizing::new(vec![0u8; 1 << 20]);
    let temp_path = out.path().to_path_buf();
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| FilesError::io("read", source, e))?;
        if n == 0 {
            break;
        }
        let plain = decryptor.update(&buf[..n]);
        out.write_all(&plain)
            .map_err(|e| FilesError::io("write", &temp_path, e))?;
    }
    let tail = decryptor
        .finish()
        .map_err(|e| FilesError::Usage(format!("{}: {e}", source.display())))?;
    out.write_all(&tail)
        .map_err(|e| FilesError::io("write", &temp_path, e))?;
    let file = out.as_file();
    if let Ok(mtime) = meta.modified() {
        file.set_modified(mtime)
            .map_err(|e| FilesError::io("write", &temp_path, e))?;
    }
    file.sync_all()
        .map_err(|e| FilesError::io("write", &temp_path, e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bad length, and a block that decrypts to "Now is t" (FIPS 81: 3fa40e8a984d4815
    /// under 0123456789abcdef in ECB), whose last byte is not PKCS#5 padding, are refused
    /// and leave no temporary file.
    #[test]
    fn bad_input_leaves_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let state = StateDir::at(tmp.path().join("state"));
        let src = tmp.path().join("x.des");
        std::fs::write(&src, b"12345").expect("write");
        let key = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        let e = decrypt_to_temp(&state, &src, &key, LegacyMode::Cbc).expect_err("length");
        assert!(e.to_string().contains("legacy file"), "{e}");
        std::fs::write(&src, [0x3f, 0xa4, 0x0e, 0x8a, 0x98, 0x4d, 0x48, 0x15]).expect("write");
        let e = decrypt_to_temp(&state, &src, &key, LegacyMode::Ecb).expect_err("padding");
        assert!(e.to_string().contains("padding"), "{e}");
        let left = std::fs::read_dir(state.path().join("tmp"))
            .expect("tmp dir")
            .count();
        assert_eq!(left, 0);
    }
}
