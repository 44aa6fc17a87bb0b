//! Message types of the file requests (docs/PROTOCOL.md §6.2): namespaces, entries, versions,
//! trash, uploads, downloads and the change feed.
//!
//! Paths on the wire are *encrypted* paths: the client's AES-SIV segments
//! (`vault_core::format::names`) joined by `/`, with `""` for the root. The server checks only
//! their shape ([`check_encrypted_path`]) and never builds a filesystem path from them.
//!
//! Bulk data travels outside CBOR, as raw bytes on the request's stream:
//! - `upload_data {upload_id, offset}` is followed by sealed bytes until the client
//!   finishes its send side; the answer is an `upload_status`.
//! - `download {…}` is answered by a `download` header frame followed by the sealed bytes
//!   from the requested chunk to the end of the version, then the end of the stream.
//!
//! - `chunk_put {ns, id, sealed_size}` is followed by exactly `sealed_size` bytes, one
//!   sealed chunk of format version 2 (docs/FORMAT.md §7.10); `chunk_get {ns, id}` is
//!   answered by a `chunk` header frame followed by the chunk's sealed bytes.
//!
//! Small files go up in batches instead, each file's bytes inside the CBOR frame:
//! `upload_open_many` reserves uploads for up to [`BATCH_MAX_FILES`] paths in one round
//! trip (the client needs each file's id and version before it can wrap the file key), and
//! `upload_put_many` carries the sealed contents, wrapped keys and metadata of those uploads
//! and commits every file that is in order in one transaction. Both answer one
//! [`BatchResult`] per file, in request order: a refused file does not stop the others.
//! A file goes in a batch only when its sealed size is at most [`SMALL_FILE_MAX`], and a
//! batch stays within [`BATCH_MAX_SEALED`] and [`BATCH_MAX_PATH_BYTES`] so its frames stay
//! under the 1 MiB limit; the server refuses a batch over any limit as a whole.

use serde::{Deserialize, Serialize};

use super::{ApiError, ByteBuf};
use crate::sizes::MAX_ENCRYPTED_NAME_LEN;

/// At most this many segments in a path.
pub const MAX_PATH_DEPTH: usize = 64;

/// The largest sealed size of a file that may go in a batch (`upload_open_many`).
pub const SMALL_FILE_MAX: u64 = 64 * 1024;
/// At most this many files in one `upload_open_many` or `upload_put_many`.
pub const BATCH_MAX_FILES: usize = 256;
/// At most this many sealed bytes in one batch (in both requests: declared sizes in
/// `upload_open_many`, carried bytes in `upload_put_many`). With the wrapped keys and
/// metadata of [`BATCH_MAX_FILES`] files, `upload_put_many` stays well under the 1 MiB
/// frame limit.
pub const BATCH_MAX_SEALED: u64 = 768 * 1024;
/// At most this many bytes of encrypted paths in one `upload_open_many`.
pub const BATCH_MAX_PATH_BYTES: usize = 512 * 1024;

/// At most this many chunk ids in one `chunks_missing` (about 140 KiB of frame).
pub const CHUNKS_PER_QUERY: usize = 4096;
/// At most this many chunk ids in one `upload_commit` (about 560 KiB of frame): a version
/// of some 19 GB at the chunker's mean chunk, at least 4 GiB at its smallest. A larger
/// file is uploaded in format version 1.
pub const MAX_COMMIT_CHUNKS: usize = 16384;

/// Hex digits of the token a client names an `upload_open_many` with (16 random bytes).
pub const BATCH_TOKEN_LEN: usize = 32;

/// Whether `token` has the shape of a batch token: [`BATCH_TOKEN_LEN`] lowercase hex
/// digits.
pub fn is_batch_token(token: &str) -> bool {
    token.len() == BATCH_TOKEN_LEN
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

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

/// One version of a file, with what the client needs to open it. On the wire a CBOR array
/// of its fields in this order (see [`EntryInfo`]).
#[derive(Clone, Debug, PartialEq)]
pub struct VersionInfo {
    /// The version number (1, 2, …), bound into the wrapped key's associated data.
    pub version: u64,
    /// Ciphertext bytes of the contents (what quotas count).
    pub sealed_size: u64,
    /// The file key, wrapped as docs/FORMAT.md §7.3 says.
    pub wrapped_key: ByteBuf,
    /// Size, mtime, mode and BLAKE3 of the plaintext, sealed as docs/FORMAT.md §7.4 says.
    pub sealed_meta: ByteBuf,
    /// The group key generation the key is wrapped under (0 for personal files).
    pub generation: u32,
    /// Unix seconds when the version was committed.
    pub created_at: i64,
    /// Ciphertext bytes of the distinct chunks a version of format 2 uses, stored once per
    /// space and possibly shared (0 for format 1). With `sealed_size`, what the version
    /// would take stored whole.
    pub chunk_bytes: u64,
}

/// A live entry of a namespace. On the wire a CBOR array of its fields in this order, not
/// a map: a listing carries thousands of them, and the field names were a third of its
/// bytes and most of the work of decoding it. A new field needs a new protocol version.
#[derive(Clone, Debug, PartialEq)]
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

impl Serialize for VersionInfo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (
            self.version,
            self.sealed_size,
            &self.wrapped_key,
            &self.sealed_meta,
            self.generation,
            self.created_at,
            self.chunk_bytes,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for VersionInfo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (version, sealed_size, wrapped_key, sealed_meta, generation, created_at, chunk_bytes) =
            Deserialize::deserialize(d)?;
        Ok(VersionInfo {
            version,
            sealed_size,
            wrapped_key,
            sealed_meta,
            generation,
            created_at,
            chunk_bytes,
        })
    }
}

impl Serialize for EntryInfo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (
            self.id,
            &self.path,
            self.kind,
            &self.current,
            self.version_count,
            self.revision,
            self.updated_at,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for EntryInfo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (id, path, kind, current, version_count, revision, updated_at) =
            Deserialize::deserialize(d)?;
        Ok(EntryInfo {
            id,
            path,
            kind,
            current,
            version_count,
            revision,
            updated_at,
        })
    }
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
    /// Ciphertext bytes stored: every version's own blob (its contents in format 1, its
    /// chunk list in format 2), and each chunk once, in trash or not.
    pub used_bytes: u64,
    /// What the versions would take stored whole: each version's `sealed_size` plus its
    /// `chunk_bytes`, shared chunks counted in every version that uses them.
    #[serde(default)]
    pub logical_bytes: u64,
    /// The limit on `used_bytes`.
    pub quota_bytes: u64,
    pub files: u64,
    pub dirs: u64,
    pub versions: u64,
    pub trash_items: u64,
    pub revision: u64,
}

/// One file of `upload_open_many`: what `upload_open` takes for one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    /// The encrypted path.
    pub path: String,
    /// Ciphertext bytes the file will have (at most [`SMALL_FILE_MAX`]).
    pub sealed_size: u64,
    /// As `upload_open`'s: commit only while the file's current version is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_current: Option<u64>,
}

/// One upload reserved by `upload_open_many`: the fields of `upload_opened`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenedUpload {
    pub upload_id: i64,
    /// The file's id and the reserved version: both go into the wrapped key's associated
    /// data.
    pub file_id: i64,
    pub version: u64,
    pub generation: u32,
    /// Unix seconds after which an unfinished upload may be collected.
    pub expires_at: i64,
}

/// One file of `upload_put_many`: the whole sealed contents of an upload reserved by
/// `upload_open_many`, with what `upload_commit` takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutFile {
    pub upload_id: i64,
    /// Exactly the `sealed_size` the upload was opened with.
    pub sealed: ByteBuf,
    pub wrapped_key: ByteBuf,
    pub sealed_meta: ByteBuf,
}

/// What one file of `upload_put_many` became: its current version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedFile {
    pub file_id: i64,
    pub version: u64,
    /// The namespace revision the commit was stamped with (one for the whole batch).
    pub revision: u64,
}

/// One file's answer in a batch: what it became, or why it was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchResult<T> {
    Ok(T),
    Error(ApiError),
}

impl<T> BatchResult<T> {
    pub fn into_result(self) -> Result<T, ApiError> {
        match self {
            BatchResult::Ok(v) => Ok(v),
            BatchResult::Error(e) => Err(e),
        }
    }
}

impl<T> From<Result<T, ApiError>> for BatchResult<T> {
    fn from(r: Result<T, ApiError>) -> Self {
        match r {
            Ok(v) => BatchResult::Ok(v),
            Err(e) => BatchResult::Error(e),
        }
    }
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
    fn the_largest_batches_fit_in_a_frame() {
        use crate::proto::{MAX_FRAME_LEN, Request, encode_frame};
        use crate::sizes::{SEALED_META_LEN, WRAPPED_FILE_KEY_LEN};

        let per_file = (BATCH_MAX_SEALED / BATCH_MAX_FILES as u64) as usize;
        let put = Request::UploadPutMany {
            files: (0..BATCH_MAX_FILES)
                .map(|_| PutFile {
                    upload_id: i64::MAX,
                    sealed: ByteBuf::from(vec![0xAB; per_file]),
                    wrapped_key: ByteBuf::from(vec![1; WRAPPED_FILE_KEY_LEN]),
                    sealed_meta: ByteBuf::from(vec![2; SEALED_META_LEN]),
                })
                .collect(),
        };
        let frame = encode_frame(&put).expect("encode");
        assert!(frame.len() <= MAX_FRAME_LEN, "{} bytes", frame.len());
        // One file of all the sealed bytes.
        let one = Request::UploadPutMany {
            files: vec![PutFile {
                upload_id: i64::MAX,
                sealed: ByteBuf::from(vec![0xAB; BATCH_MAX_SEALED as usize]),
                wrapped_key: ByteBuf::from(vec![1; WRAPPED_FILE_KEY_LEN]),
                sealed_meta: ByteBuf::from(vec![2; SEALED_META_LEN]),
            }],
        };
        assert!(encode_frame(&one).expect("encode").len() <= MAX_FRAME_LEN);

        let path_len = BATCH_MAX_PATH_BYTES / BATCH_MAX_FILES;
        let open = Request::UploadOpenMany {
            ns: NsRef::Group {
                name: "g".repeat(64),
            },
            files: (0..BATCH_MAX_FILES)
                .map(|_| OpenFile {
                    path: "a".repeat(path_len),
                    sealed_size: u64::MAX,
                    if_current: Some(u64::MAX),
                })
                .collect(),
            batch: Some("f".repeat(BATCH_TOKEN_LEN)),
        };
        let frame = encode_frame(&open).expect("encode");
        assert!(frame.len() <= MAX_FRAME_LEN, "{} bytes", frame.len());
    }

    #[test]
    fn parents() {
        assert_eq!(parent_of("a"), "");
        assert_eq!(parent_of("a/b/c"), "a/b");
    }
}
