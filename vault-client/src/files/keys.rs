//! The keys of one namespace as a file command uses them: the name key that encrypts path
//! segments and the wrapping keys that wrap per-version file keys (docs/FORMAT.md §7.1–7.5). A
//! personal space has one wrapping key (`HKDF(AK, "vault/v1/filekeys")`, generation 0);
//! a group space has one per key generation it holds (`HKDF(GK_g, "vault/v1/filekeys")`)
//! and names under `HKDF(GK_0, "vault/v1/names")`. Everything the server returns is
//! checked here: a name that does not decrypt, a key that does not unwrap, metadata that
//! does not open or does not match the sealed size is an error, and so is a request to
//! wrap under a generation other than the newest one held.

use std::collections::BTreeMap;

use vault_core::crypto::Key32;
use vault_core::crypto::seal::Opener;
use vault_core::format::chunks::ChunkKeys;
use vault_core::format::meta::Contents;
use vault_core::format::{
    self, FileKeyAd, FileMeta, NameKey, Namespace, unwrap_file_key_with, wrap_file_key,
    wrapping_key_for,
};
use vault_core::proto::VersionInfo;

use super::FilesError;

/// Whose space the keys are for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Space {
    Personal { user: String },
    Group { name: String, group_id: i64 },
}

/// Keys of one space: a user's personal space, or the generations of a group key that the
/// user holds.
#[derive(Debug)]
pub struct SpaceKeys {
    space: Space,
    names: NameKey,
    /// Wrapping key per key generation (only generation 0 in a personal space).
    wrapping: BTreeMap<u32, WrappingKey>,
    /// The chunk keys (format 2: chunker, ids, seals) per key generation.
    chunks: BTreeMap<u32, ChunkKeys>,
}

/// A wrapping key, and the same key made ready for the many unwraps of a listing.
#[derive(Debug)]
struct WrappingKey {
    key: Key32,
    unwrapper: Opener,
}

impl WrappingKey {
    /// `HKDF(account or group key, "vault/v1/filekeys")`.
    fn derive(account_or_group_key: &Key32) -> Result<Self, FilesError> {
        let key = wrapping_key_for(account_or_group_key)?;
        let unwrapper = Opener::new(&key).map_err(format::FormatError::from)?;
        Ok(WrappingKey { key, unwrapper })
    }
}

/// The error for a group member who holds none (or not enough) of the group's key.
pub fn no_group_key(group: &str) -> FilesError {
    FilesError::Usage(format!(
        "you are a member of @{group} but do not hold its key yet; it arrives when another \
         member's vault client next connects"
    ))
}

impl SpaceKeys {
    /// Derives the keys of `user`'s personal space from the account key.
    pub fn personal(user: &str, account_key: &Key32) -> Result<Self, FilesError> {
        Ok(SpaceKeys {
            space: Space::Personal {
                user: user.to_owned(),
            },
            names: NameKey::derive(account_key)?,
            wrapping: BTreeMap::from([(0, WrappingKey::derive(account_key)?)]),
            chunks: BTreeMap::from([(0, ChunkKeys::derive(account_key)?)]),
        })
    }

    /// Derives the keys of group `name` (id `group_id`) from the generations of its key
    /// that the user holds (opened and checked by `crate::groups::keyring`). Names need
    /// generation 0.
    pub fn group(
        name: &str,
        group_id: i64,
        generations: &BTreeMap<u32, Key32>,
    ) -> Result<Self, FilesError> {
        let first = generations.get(&0).ok_or_else(|| no_group_key(name))?;
        let wrapping = generations
            .iter()
            .map(|(g, gk)| Ok((*g, WrappingKey::derive(gk)?)))
            .collect::<Result<_, FilesError>>()?;
        let chunks = generations
            .iter()
            .map(|(g, gk)| Ok((*g, ChunkKeys::derive(gk)?)))
            .collect::<Result<_, FilesError>>()?;
        Ok(SpaceKeys {
            space: Space::Group {
                name: name.to_owned(),
                group_id,
            },
            names: NameKey::derive(first)?,
            wrapping,
            chunks,
        })
    }

    /// The group's id, for a group space.
    pub fn group_id(&self) -> Option<i64> {
        match &self.space {
            Space::Personal { .. } => None,
            Space::Group { group_id, .. } => Some(*group_id),
        }
    }

    /// Whether these keys open versions wrapped under `generation`.
    pub fn holds(&self, generation: u32) -> bool {
        self.wrapping.contains_key(&generation)
    }

    /// The newest key generation held: new versions are wrapped under it.
    pub fn newest_generation(&self) -> u32 {
        self.wrapping.keys().next_back().copied().unwrap_or(0)
    }

    /// The chunk keys of `generation` (format 2, docs/FORMAT.md §7.10), or an error that
    /// says why it is not held.
    pub fn chunk_keys(&self, generation: u32) -> Result<&ChunkKeys, FilesError> {
        self.wrapping(generation)?;
        self.chunks.get(&generation).ok_or_else(|| {
            FilesError::Integrity(format!("no chunk keys for generation {generation}"))
        })
    }

    /// The space as people write it (`@team` or `your personal space`).
    fn describe(&self) -> String {
        match &self.space {
            Space::Personal { .. } => "your personal space".into(),
            Space::Group { name, .. } => format!("@{name}"),
        }
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

    fn ad(&self, generation: u32, file_id: i64, version: u64) -> FileKeyAd {
        let namespace = match &self.space {
            Space::Personal { user } => Namespace::Personal { user: user.clone() },
            Space::Group { group_id, .. } => Namespace::Group {
                group_id: *group_id,
                generation,
            },
        };
        FileKeyAd {
            namespace,
            file_id,
            version,
        }
    }

    /// The wrapping key of `generation`, or an error that says why it is not held.
    fn wrapping(&self, generation: u32) -> Result<&WrappingKey, FilesError> {
        if let Some(key) = self.wrapping.get(&generation) {
            return Ok(key);
        }
        Err(match &self.space {
            Space::Personal { .. } => FilesError::Integrity(format!(
                "the server named key generation {generation} in your personal space, which has \
                 only generation 0"
            )),
            Space::Group { name, .. } if generation > self.newest_generation() => {
                FilesError::Usage(format!(
                    "@{name} is at key generation {generation}, which you do not hold yet; it \
                     arrives when another member's vault client next connects"
                ))
            }
            Space::Group { name, .. } => FilesError::Usage(format!(
                "you do not hold generation {generation} of the key of @{name} yet; it arrives \
                 when another member's vault client next connects"
            )),
        })
    }

    /// Wraps a fresh version's file key for `file_id` and `version` under `generation`,
    /// the generation the server named when the upload was opened. It must be the newest
    /// generation held: a server that asks for an older one (which a removed member may
    /// hold) is refused.
    pub fn wrap(
        &self,
        generation: u32,
        file_id: i64,
        version: u64,
        file_key: &Key32,
    ) -> Result<Vec<u8>, FilesError> {
        let key = self.wrapping(generation)?;
        let newest = self.newest_generation();
        if generation != newest {
            return Err(FilesError::Integrity(format!(
                "the server asked to wrap a new file key in {} under key generation \
                 {generation}, older than generation {newest}; refusing (a removed member may \
                 hold the older key)",
                self.describe()
            )));
        }
        Ok(wrap_file_key(
            &key.key,
            &self.ad(generation, file_id, version),
            file_key,
        )?)
    }

    /// Unwraps a file key that was wrapped for `file_id` and `version` under `generation`.
    pub fn unwrap(
        &self,
        generation: u32,
        file_id: i64,
        version: u64,
        wrapped: &[u8],
    ) -> Result<Key32, FilesError> {
        let key = self.wrapping(generation)?;
        let ad = self.ad(generation, file_id, version);
        unwrap_file_key_with(&key.unwrapper, &ad, wrapped).map_err(|e| {
            FilesError::Integrity(format!(
                "version {version} of file {file_id} in {}: {e}; the server may have returned \
                 another file's key",
                self.describe()
            ))
        })
    }

    /// Unwraps a version's key (under the generation the version records) and opens its
    /// metadata, checking that the metadata's size matches the sealed size.
    pub fn open_version(
        &self,
        file_id: i64,
        version: &VersionInfo,
    ) -> Result<(Key32, FileMeta), FilesError> {
        let key = self.unwrap(
            version.generation,
            file_id,
            version.version,
            &version.wrapped_key,
        )?;
        let meta = format::open_meta(&key, &version.sealed_meta)
            .map_err(|e| FilesError::Integrity(format!("version {}: {e}", version.version)))?;
        let fits = match meta.contents {
            Contents::Stream => format::plaintext_len(version.sealed_size) == Some(meta.size),
            // The sealed chunk list: its total is checked against the size once opened.
            Contents::Chunks => format::chunklist::is_sealed_len(version.sealed_size),
        };
        if !fits {
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
            contents: format::meta::Contents::Stream,
        };
        let v = VersionInfo {
            version: 3,
            sealed_size: format::sealed_len(5),
            wrapped_key: ByteBuf::from(k.wrap(0, 7, 3, &fk).expect("wrap")),
            sealed_meta: ByteBuf::from(format::seal_meta(&fk, &meta).expect("meta")),
            generation: 0,
            created_at: 0,
            chunk_bytes: 0,
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

    fn group_keys(name: &str, group_id: i64, generations: &[(u32, u8)]) -> SpaceKeys {
        let held: BTreeMap<u32, Key32> = generations
            .iter()
            .map(|(g, b)| (*g, Key32::from_bytes([*b; 32])))
            .collect();
        SpaceKeys::group(name, group_id, &held).expect("group keys")
    }

    fn version(keys: &SpaceKeys, generation: u32, file_id: i64, n: u64) -> VersionInfo {
        let fk = format::generate_file_key().expect("fk");
        let meta = FileMeta {
            size: 2,
            mtime_s: 1,
            mtime_ns: 0,
            mode: 0o100644,
            blake3: format::content_hash(b"hi"),
            contents: format::meta::Contents::Stream,
        };
        VersionInfo {
            version: n,
            sealed_size: format::sealed_len(2),
            wrapped_key: ByteBuf::from(keys.wrap(generation, file_id, n, &fk).expect("wrap")),
            sealed_meta: ByteBuf::from(format::seal_meta(&fk, &meta).expect("meta")),
            generation,
            created_at: 0,
            chunk_bytes: 0,
        }
    }

    #[test]
    fn group_names_use_generation_0_and_differ_from_personal_ones() {
        let before = group_keys("team", 3, &[(0, 10)]);
        let after = group_keys("team", 3, &[(0, 10), (1, 11)]);
        let segs = vec!["docs".to_string(), "a.txt".to_string()];
        let enc = before.encrypt_path(&segs).expect("enc");
        // A rotation does not change names: they stay under GK_0.
        assert_eq!(after.encrypt_path(&segs).expect("enc"), enc);
        assert_eq!(after.decrypt_path(&enc).expect("dec"), segs);
        // Another group's GK_0 encrypts differently and does not decrypt these names.
        let other = group_keys("other", 4, &[(0, 12)]);
        assert_ne!(other.encrypt_path(&segs).expect("enc"), enc);
        assert!(other.decrypt_path(&enc).is_err());
        // Without generation 0 there are no names: the member is told the key is missing.
        let held = BTreeMap::from([(1, Key32::from_bytes([11; 32]))]);
        let err = SpaceKeys::group("team", 3, &held).expect_err("no GK_0");
        assert!(err.to_string().contains("do not hold its key yet"), "{err}");
        assert_eq!(after.group_id(), Some(3));
        assert_eq!(before.group_id(), Some(3));
        assert_eq!(keys("alice", 1).group_id(), None);
    }

    #[test]
    fn old_versions_open_under_old_generations_and_new_ones_wrap_under_the_newest() {
        let before = group_keys("team", 3, &[(0, 10)]);
        let old = version(&before, 0, 7, 1);
        let after = group_keys("team", 3, &[(0, 10), (1, 11)]);
        assert_eq!(after.newest_generation(), 1);
        after
            .open_version(7, &old)
            .expect("an old version opens after the rotation");
        let new = version(&after, 1, 7, 2);
        after.open_version(7, &new).expect("the new version opens");
        // A member who only holds the old generation cannot open the new version, and is
        // told why.
        let err = before
            .open_version(7, &new)
            .expect_err("generation 1 not held");
        assert!(err.to_string().contains("generation 1"), "{err}");
        // The server may not have a new version wrapped under an older generation (one a
        // removed member holds).
        let fk = format::generate_file_key().expect("fk");
        let err = after.wrap(0, 7, 3, &fk).expect_err("older generation");
        assert!(err.to_string().contains("older than generation 1"), "{err}");
        // Nor under a generation the member does not hold.
        let err = after.wrap(2, 7, 3, &fk).expect_err("unknown generation");
        assert!(err.to_string().contains("generation 2"), "{err}");
        // A personal space has only generation 0.
        let err = keys("alice", 1).wrap(1, 7, 3, &fk).expect_err("personal");
        assert!(err.to_string().contains("personal space"), "{err}");
    }

    #[test]
    fn a_group_file_key_moved_to_another_file_group_or_generation_is_refused() {
        let team = group_keys("team", 3, &[(0, 10), (1, 11)]);
        let v = version(&team, 1, 7, 2);
        team.open_version(7, &v).expect("in place");
        for (what, file_id, changed) in [
            ("another file", 8, v.clone()),
            (
                "another version",
                7,
                VersionInfo {
                    version: 3,
                    ..v.clone()
                },
            ),
            (
                "another generation",
                7,
                VersionInfo {
                    generation: 0,
                    ..v.clone()
                },
            ),
        ] {
            let err = team.open_version(file_id, &changed).expect_err(what);
            assert!(matches!(err, FilesError::Integrity(_)), "{what}: {err}");
        }
        // The same key bytes as another group's (id 4) do not open it either: the group id
        // is in the associated data.
        let other = group_keys("other", 4, &[(0, 10), (1, 11)]);
        let err = other.open_version(7, &v).expect_err("another group");
        assert!(err.to_string().contains("another file's key"), "{err}");
        // Nor does a personal file's key moved into the group.
        let personal = keys("alice", 11);
        let mine = version(&personal, 0, 7, 2);
        assert!(team.open_version(7, &mine).is_err(), "a personal key");
    }
}
