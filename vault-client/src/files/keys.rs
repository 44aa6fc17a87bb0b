//! The keys of one namespace as a file command uses them: the name key that encrypts path
//! segments and the wrapping key that wraps per-version file keys (SPEC 6.2–6.4). Everything
//! the server returns is checked here: a name that does not decrypt, a key that does not
//! unwrap, metadata that does not open or does not match the sealed size is an error.

use vault_core::crypto::Key32;
use vault_core::format::{
    self, FileKeyAd, FileMeta, NameKey, Namespace, unwrap_file_key, wrap_file_key, wrapping_key_for,
};
use vault_core::proto::VersionInfo;

use super::FilesError;

/// Keys of the personal space of `user`.
#[derive(Debug)]
pub struct SpaceKeys {
    user: String,
    names: NameKey,
    wrapping: Key32,
}

impl SpaceKeys {
    /// Derives the keys of `user`'s personal space from the account key.
    pub fn personal(user: &str, account_key: &Key32) -> Result<Self, FilesError> {
        Ok(SpaceKeys {
            user: user.to_owned(),
            names: NameKey::derive(account_key)?,
            wrapping: wrapping_key_for(account_key)?,
        })
    }

    /// The encrypted path of plaintext `segments` (`""` for the root).
    pub fn encrypt_path(&self, segments: &[String]) -> Result<String, FilesError> {
        let mut parent = String::new();
        for segment in segments {
            let enc = self.names.encrypt_segment(&parent, segment)?;
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(&enc);
        }
        Ok(parent)
    }

    /// The plaintext segments of an encrypted path the server returned.
    pub fn decrypt_path(&self, encrypted: &str) -> Result<Vec<String>, FilesError> {
        if encrypted.is_empty() {
            return Ok(Vec::new());
        }
        let parts: Vec<&str> = encrypted.split('/').collect();
        let plain = self.names.decrypt_path(&parts).map_err(|e| {
            FilesError::Integrity(format!(
                "the server returned a name that does not decrypt ({e}); it may have been altered"
            ))
        })?;
        Ok(plain.split('/').map(str::to_owned).collect())
    }

    /// The plaintext of one encrypted segment the server returned under the folder whose
    /// encrypted path is `parent_encrypted` (`""` at the root).
    pub fn decrypt_segment(
        &self,
        parent_encrypted: &str,
        encrypted: &str,
    ) -> Result<String, FilesError> {
        self.names
            .decrypt_segment(parent_encrypted, encrypted)
            .map_err(|e| {
                FilesError::Integrity(format!(
                    "the server returned a name that does not decrypt ({e}); it may have been altered"
                ))
            })
    }

    fn ad(&self, file_id: i64, version: u64) -> FileKeyAd {
        FileKeyAd {
            namespace: Namespace::Personal {
                user: self.user.clone(),
            },
            file_id,
            version,
        }
    }

    /// Wraps a fresh version's file key for `file_id` and `version`.
    pub fn wrap(
        &self,
        file_id: i64,
        version: u64,
        file_key: &Key32,
    ) -> Result<Vec<u8>, FilesError> {
        Ok(wrap_file_key(
            &self.wrapping,
            &self.ad(file_id, version),
            file_key,
        )?)
    }

    /// Unwraps a file key that was wrapped for `file_id` and `version`.
    pub fn unwrap(&self, file_id: i64, version: u64, wrapped: &[u8]) -> Result<Key32, FilesError> {
        unwrap_file_key(&self.wrapping, &self.ad(file_id, version), wrapped).map_err(|e| {
            FilesError::Integrity(format!(
                "version {version} of file {file_id}: {e}; the server may have returned another file's key"
            ))
        })
    }

    /// Unwraps a version's key and opens its metadata, checking that the metadata's size
    /// matches the sealed size.
    pub fn open_version(
        &self,
        file_id: i64,
        version: &VersionInfo,
    ) -> Result<(Key32, FileMeta), FilesError> {
        if version.generation != 0 {
            return Err(FilesError::Integrity(format!(
                "version {} of a personal file claims key generation {}",
                version.version, version.generation
            )));
        }
        let key = self.unwrap(file_id, version.version, &version.wrapped_key)?;
        let meta = format::open_meta(&key, &version.sealed_meta)
            .map_err(|e| FilesError::Integrity(format!("version {}: {e}", version.version)))?;
        if format::plaintext_len(version.sealed_size) != Some(meta.size) {
            return Err(FilesError::Integrity(format!(
                "version {}: the server reports {} sealed bytes, which does not fit the file's size of {} bytes",
                version.version, version.sealed_size, meta.size
            )));
        }
        Ok((key, meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vault_core::proto::ByteBuf;

    fn keys(user: &str, b: u8) -> SpaceKeys {
        SpaceKeys::personal(user, &Key32::from_bytes([b; 32])).expect("keys")
    }

    #[test]
    fn paths_round_trip_and_depend_on_parents() {
        let k = keys("alice", 1);
        let segs = vec!["a".to_string(), "b c".to_string(), "d.txt".to_string()];
        let enc = k.encrypt_path(&segs).expect("enc");
        assert_eq!(enc.split('/').count(), 3);
        assert!(!enc.contains("d.txt"));
        assert_eq!(k.decrypt_path(&enc).expect("dec"), segs);
        assert_eq!(k.encrypt_path(&[]).expect("root"), "");
        // The last segment moved under another parent does not decrypt.
        let other = k.encrypt_path(&["x".to_string()]).expect("x");
        let last = enc.rsplit('/').next().expect("last");
        assert!(k.decrypt_path(&format!("{other}/{last}")).is_err());
        // Another user's key does not decrypt.
        assert!(keys("alice", 2).decrypt_path(&enc).is_err());
    }

    #[test]
    fn versions_open_only_for_their_slot() {
        let k = keys("alice", 1);
        let fk = format::generate_file_key().expect("fk");
        let meta = FileMeta {
            size: 5,
            mtime_s: 1,
            mtime_ns: 2,
            mode: 0o100644,
            blake3: format::content_hash(b"hello"),
        };
        let v = VersionInfo {
            version: 3,
            sealed_size: format::sealed_len(5),
            wrapped_key: ByteBuf::from(k.wrap(7, 3, &fk).expect("wrap")),
            sealed_meta: ByteBuf::from(format::seal_meta(&fk, &meta).expect("meta")),
            generation: 0,
            created_at: 0,
        };
        let (_, opened) = k.open_version(7, &v).expect("open");
        assert_eq!(opened, meta);
        assert!(k.open_version(8, &v).is_err(), "another file id");
        let mut moved = v.clone();
        moved.version = 4;
        assert!(k.open_version(7, &moved).is_err(), "another version");
        let mut resized = v.clone();
        resized.sealed_size += 1;
        assert!(k.open_version(7, &resized).is_err(), "size mismatch");
        assert!(keys("bob", 1).open_version(7, &v).is_err(), "another user");
    }
}
