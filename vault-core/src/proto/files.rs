//! Message types of the file requests (SPEC §7, §8): namespaces, entries, versions, trash,
//! uploads, downloads and the change feed.
//!
//! Paths on the wire are *encrypted* paths: the client's AES-SIV segments
//! ([`crate::format::names`]) joined by `/`, with `""` for the root. The server checks only
//! their shape ([`check_encrypted_path`]) and never builds a filesystem path from them.
//!
//! Bulk data travels outside CBOR, as raw bytes on the request's stream:
//! - `upload_data {upload_id, offset}` is followed by sealed bytes until the client
//!   finishes its send side; the answer is an `upload_status`.
//! - `download {…}` is answered by a `download` header frame followed by the sealed bytes
//!   from the requested chunk to the end of the version, then the end of the stream.

use serde::{Deserialize, Serialize};

use super::ByteBuf;
use crate::format::names::MAX_ENCRYPTED_NAME_LEN;

/// At most this many segments in a path.
pub const MAX_PATH_DEPTH: usize = 64;

/// Whose space a path is in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NsRef {
    /// The logged-in user's personal space (`/a/b.txt`).
    Personal,
    /// A group's space (`@team/a/b.txt`), by group name.
    Group { name: String },
}

/// A file or a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
}

/// One version of a file, with what the client needs to open it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The version number (1, 2, …), bound into the wrapped key's associated data.
    pub version: u64,
    /// Ciphertext bytes of the contents (what quotas count).
    pub sealed_size: u64,
    /// The file key, wrapped per SPEC 6.3.
    pub wrapped_key: ByteBuf,
    /// Size, mtime, mode and BLAKE3 of the plaintext, sealed per SPEC 6.2.
    pub sealed_meta: ByteBuf,
    /// The group key generation the key is wrapped under (0 for personal files).
    pub generation: u32,
    /// Unix seconds when the version was committed.
    pub created_at: i64,
}

/// A live entry of a namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryInfo {
    /// Server-assigned, stable across renames; bound into wrapped file keys.
    pub id: i64,
    /// The encrypted path.
    pub path: String,
    pub kind: EntryKind,
    /// The current version (files only).
    pub current: Option<VersionInfo>,
    /// How many versions are kept (files only).
    pub version_count: u64,
    /// Namespace revision of the entry's last change.
    pub revision: u64,
    /// Unix seconds of the entry's last change.
    pub updated_at: i64,
}

/// One deletion that can be undone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrashItem {
    /// Names this deletion in `trash_restore`.
    pub trash_id: i64,
    /// The encrypted path the entry had (the root of a deleted tree).
    pub path: String,
    pub kind: EntryKind,
    /// Entries in the deleted tree (1 for a file).
    pub entries: u64,
    /// Ciphertext bytes of every version in the deleted tree.
    pub sealed_bytes: u64,
    pub trashed_at: i64,
}

/// One entry in the change feed: an entry's state at `revision`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub entry: EntryInfo,
    /// The entry is now in the trash or gone.
    pub deleted: bool,
}

/// A rename of one entry (the client re-encrypts every name under a moved directory).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rename {
    pub from: String,
    pub to: String,
}

/// Space used and allowed in a namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Ciphertext bytes of all versions, in trash or not.
    pub used_bytes: u64,
    /// The limit on `used_bytes`.
    pub quota_bytes: u64,
    pub files: u64,
    pub dirs: u64,
    pub versions: u64,
    pub trash_items: u64,
    pub revision: u64,
}

/// Why an encrypted path is refused.
pub fn check_encrypted_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Ok(());
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() > MAX_PATH_DEPTH {
        return Err(format!(
            "a path has at most {MAX_PATH_DEPTH} segments; this one has {}",
            segments.len()
        ));
    }
    for segment in segments {
        if segment.is_empty() {
            return Err("a path must not have empty segments".into());
        }
        if segment.len() > MAX_ENCRYPTED_NAME_LEN {
            return Err("a path segment is longer than any encrypted name".into());
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        {
            return Err("a path segment is not an encrypted name (lowercase base32)".into());
        }
    }
    Ok(())
}

/// The parent of an encrypted path (`""` for a top-level entry).
pub fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_paths_are_checked() {
        assert!(check_encrypted_path("").is_ok());
        assert!(check_encrypted_path("abc234/xyz7").is_ok());
        for bad in [
            "/abc", "abc/", "a//b", "ABC", "a.b", "a/../b", "a\0b", "a 1",
        ] {
            assert!(check_encrypted_path(bad).is_err(), "{bad:?} accepted");
        }
        let deep = vec!["a"; MAX_PATH_DEPTH + 1].join("/");
        assert!(check_encrypted_path(&deep).is_err());
        let long = "a".repeat(MAX_ENCRYPTED_NAME_LEN + 1);
        assert!(check_encrypted_path(&long).is_err());
    }

    #[test]
    fn parents() {
        assert_eq!(parent_of("a"), "");
        assert_eq!(parent_of("a/b/c"), "a/b");
    }
}
