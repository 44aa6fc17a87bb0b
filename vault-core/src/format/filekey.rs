//! Per-version file keys and their wrapping (docs/FORMAT.md §7.3).
//!
//! Every file version gets a fresh 32-byte file key `FK` ([`generate_file_key`]). It is
//! stored on the server sealed (a [`mod@crate::crypto::seal`] blob, 61 bytes) under
//!
//! ```text
//! personal: HKDF(AK,   "vault/v1/filekeys")
//! group:    HKDF(GK_g, "vault/v1/filekeys")   (g = the generation the version records)
//! ```
//!
//! with associated data that names exactly what is sealed:
//!
//! ```text
//! vault/v1/ad/file-key;ns=user:<username>;file=<file_id>;version=<n>
//! vault/v1/ad/file-key;ns=group:<group_id>;file=<file_id>;version=<n>;gen=<g>
//! ```
//!
//! `<username>` is the case-folded username; `<group_id>` and `<file_id>` are the
//! server-assigned `i64` ids and `<n>` the version number (`u64`), all in decimal. A
//! wrapped key moved to another file, version, namespace or generation fails to open.

use zeroize::Zeroizing;

use super::error::{FormatError, Result};
use crate::crypto::kdf::LABEL_FILEKEYS;
use crate::crypto::seal::{self, NONCE_LEN};
use crate::crypto::{Key32, derive_subkey};

/// Length of a wrapped file key: a sealed 32-byte key.
pub const WRAPPED_FILE_KEY_LEN: usize = seal::SEAL_OVERHEAD + Key32::LEN;

/// Whose space a file lives in, as named in the associated data of its wrapped keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// A user's personal space; `user` is the case-folded username.
    Personal {
        /// The case-folded username (see `proto::names::normalize_username`).
        user: String,
    },
    /// A group's space, with the generation of the group key that wraps the file key.
    Group {
        /// The server-assigned group id (stable across renames).
        group_id: i64,
        /// The generation `g` of the group key `GK_g` that wraps this version's key.
        generation: u32,
    },
}

/// The associated data of one wrapped file key: which namespace, file and version it
/// belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKeyAd {
    /// The namespace (and, for groups, the key generation).
    pub namespace: Namespace,
    /// The server-assigned file id.
    pub file_id: i64,
    /// The version number of the file.
    pub version: u64,
}

impl FileKeyAd {
    /// The associated-data bytes (see the module documentation). Refuses a username that is
    /// empty or contains `;`, `=` or control characters, which could make two different
    /// slots share associated data.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let (ns, generation) = match &self.namespace {
            Namespace::Personal { user } => {
                if user.is_empty() || user.chars().any(|c| c == ';' || c == '=' || c.is_control()) {
                    return Err(FormatError::InvalidNamespace(user.clone()));
                }
                (format!("user:{user}"), None)
            }
            Namespace::Group {
                group_id,
                generation,
            } => (format!("group:{group_id}"), Some(*generation)),
        };
        let mut ad = format!(
            "vault/v1/ad/file-key;ns={ns};file={};version={}",
            self.file_id, self.version
        );
        if let Some(g) = generation {
            ad.push_str(&format!(";gen={g}"));
        }
        Ok(ad.into_bytes())
    }
}

/// A fresh random file key for a new file version.
pub fn generate_file_key() -> Result<Key32> {
    Ok(Key32::generate()?)
}

/// The key that wraps file keys: `HKDF(AK or GK_g, "vault/v1/filekeys")`.
pub fn wrapping_key_for(account_or_group_key: &Key32) -> Result<Key32> {
    Ok(derive_subkey(account_or_group_key, LABEL_FILEKEYS)?)
}

/// Seals `file_key` under `wrapping_key` (from [`wrapping_key_for`]) bound to `ad`.
/// The result is [`WRAPPED_FILE_KEY_LEN`] bytes.
pub fn wrap_file_key(wrapping_key: &Key32, ad: &FileKeyAd, file_key: &Key32) -> Result<Vec<u8>> {
    let ad = ad.to_bytes()?;
    Ok(seal::seal(
        wrapping_key,
        &ad,
        file_key.dangerously_leak_secret(),
    )?)
}

/// [`wrap_file_key`] with a caller-chosen nonce. Only for golden test vectors: a nonce must
/// never repeat under one wrapping key.
#[doc(hidden)]
pub fn wrap_file_key_with_nonce(
    wrapping_key: &Key32,
    nonce: [u8; NONCE_LEN],
    ad: &FileKeyAd,
    file_key: &Key32,
) -> Result<Vec<u8>> {
    let ad = ad.to_bytes()?;
    Ok(seal::seal_with_nonce(
        wrapping_key,
        nonce,
        &ad,
        file_key.dangerously_leak_secret(),
    )?)
}

/// Opens a wrapped file key. Fails with [`FormatError::FileKeyDecrypt`] for a wrong
/// wrapping key, a key wrapped for another namespace, file, version or generation, or
/// altered bytes.
pub fn unwrap_file_key(wrapping_key: &Key32, ad: &FileKeyAd, wrapped: &[u8]) -> Result<Key32> {
    let opener = seal::Opener::new(wrapping_key).map_err(|_| FormatError::FileKeyDecrypt)?;
    unwrap_file_key_with(&opener, ad, wrapped)
}

/// [`unwrap_file_key`] with the wrapping key made ready once for many unwraps.
pub fn unwrap_file_key_with(
    wrapping_key: &seal::Opener,
    ad: &FileKeyAd,
    wrapped: &[u8],
) -> Result<Key32> {
    let ad = ad.to_bytes()?;
    let plain: Zeroizing<Vec<u8>> = wrapping_key
        .open(&ad, wrapped)
        .map_err(|_| FormatError::FileKeyDecrypt)?;
    Key32::from_slice(&plain).map_err(|_| FormatError::FileKeyDecrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn personal(user: &str, file_id: i64, version: u64) -> FileKeyAd {
        FileKeyAd {
            namespace: Namespace::Personal { user: user.into() },
            file_id,
            version,
        }
    }

    fn group(group_id: i64, generation: u32, file_id: i64, version: u64) -> FileKeyAd {
        FileKeyAd {
            namespace: Namespace::Group {
                group_id,
                generation,
            },
            file_id,
            version,
        }
    }

    #[test]
    fn ad_bytes() -> Result<()> {
        assert_eq!(
            personal("alice", 42, 3).to_bytes()?,
            b"vault/v1/ad/file-key;ns=user:alice;file=42;version=3"
        );
        assert_eq!(
            group(7, 2, -1, 1).to_bytes()?,
            b"vault/v1/ad/file-key;ns=group:7;file=-1;version=1;gen=2"
        );
        for bad in ["", "a;b", "a=b", "a\nb", "a\0b"] {
            assert_eq!(
                personal(bad, 1, 1).to_bytes(),
                Err(FormatError::InvalidNamespace(bad.into()))
            );
        }
        Ok(())
    }

    #[test]
    fn round_trip_personal_and_group() -> Result<()> {
        let ak = Key32::from_bytes([1; 32]);
        let gk = Key32::from_bytes([2; 32]);
        let fk = generate_file_key()?;
        for (parent, ad) in [(&ak, personal("alice", 1, 1)), (&gk, group(9, 0, 1, 1))] {
            let wk = wrapping_key_for(parent)?;
            let wrapped = wrap_file_key(&wk, &ad, &fk)?;
            assert_eq!(wrapped.len(), WRAPPED_FILE_KEY_LEN);
            let back = unwrap_file_key(&wk, &ad, &wrapped)?;
            assert_eq!(back.dangerously_leak_secret(), fk.dangerously_leak_secret());
            // The wrapping key is a subkey, not the parent key itself.
            assert!(unwrap_file_key(parent, &ad, &wrapped).is_err());
        }
        Ok(())
    }

    #[test]
    fn swapped_between_slots_is_rejected() -> Result<()> {
        let wk = wrapping_key_for(&Key32::from_bytes([3; 32]))?;
        let fk = generate_file_key()?;
        let wrapped = wrap_file_key(&wk, &personal("alice", 10, 2), &fk)?;
        for other in [
            personal("alice", 11, 2), // another file
            personal("alice", 10, 1), // another version
            personal("bob", 10, 2),   // another namespace
            group(10, 0, 10, 2),      // a group space
        ] {
            assert_eq!(
                unwrap_file_key(&wk, &other, &wrapped).err(),
                Some(FormatError::FileKeyDecrypt),
                "{other:?}"
            );
        }
        let gwrapped = wrap_file_key(&wk, &group(5, 1, 10, 2), &fk)?;
        for other in [group(5, 2, 10, 2), group(6, 1, 10, 2), group(5, 1, 10, 3)] {
            assert_eq!(
                unwrap_file_key(&wk, &other, &gwrapped).err(),
                Some(FormatError::FileKeyDecrypt),
                "{other:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn wrong_key_or_tamper_is_rejected() -> Result<()> {
        let wk = wrapping_key_for(&Key32::from_bytes([4; 32]))?;
        let other = wrapping_key_for(&Key32::from_bytes([5; 32]))?;
        let ad = personal("carol", 1, 1);
        let wrapped = wrap_file_key(&wk, &ad, &generate_file_key()?)?;
        assert_eq!(
            unwrap_file_key(&other, &ad, &wrapped).err(),
            Some(FormatError::FileKeyDecrypt)
        );
        for i in 0..wrapped.len() {
            let mut bad = wrapped.clone();
            bad[i] ^= 0x04;
            assert!(unwrap_file_key(&wk, &ad, &bad).is_err(), "byte {i}");
        }
        assert!(unwrap_file_key(&wk, &ad, &wrapped[..60]).is_err());
        Ok(())
    }

    #[test]
    fn sealed_non_key_is_rejected() -> Result<()> {
        // A blob of the wrong length sealed under the right key and AD is still refused.
        let wk = wrapping_key_for(&Key32::from_bytes([6; 32]))?;
        let ad = personal("dave", 1, 1);
        let blob = seal::seal(&wk, &ad.to_bytes()?, &[0u8; 31])?;
        assert_eq!(
            unwrap_file_key(&wk, &ad, &blob).err(),
            Some(FormatError::FileKeyDecrypt)
        );
        Ok(())
    }
}
