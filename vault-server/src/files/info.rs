//! Database rows to the wire's `EntryInfo` and `VersionInfo`, in batches (one versions
//! query per page of entries).

use std::collections::HashMap;

use vault_proto::proto::{EntryInfo, EntryKind, VersionInfo};

use crate::db::DbConn;
use crate::db::files::KIND_DIR;
use crate::db::files::entries::Entry;
use crate::db::files::listing::{Listed, ListedEntry, ListedVersion};
use crate::db::files::versions::{self, Version};
use crate::error::Failure;

/// At most how many bytes one `EntryInfo` takes in CBOR besides its path (the widest
/// numbers, a wrapped key and sealed metadata; a test holds it to that).
pub const ENTRY_OVERHEAD: usize = 360;

/// At most this many bytes of entries in one response (well under the 1 MiB frame).
pub const PAGE_BUDGET: usize = 768 * 1024;

/// At most this many entries in one page ([`PAGE_BUDGET`] may make it fewer). Pages of 2000
/// measured no faster for a 10,000-entry folder: the client decrypts one page while the
/// server reads the next, and a bigger first page is a longer wait.
pub const PAGE_ENTRIES: usize = 1000;

pub fn version_info(v: &Version) -> VersionInfo {
    wire_version(ListedVersion {
        version: v.version,
        sealed_size: v.sealed_size,
        wrapped_key: v.wrapped_key.clone(),
        sealed_meta: v.sealed_meta.clone(),
        generation: v.generation,
        created_at: v.created_at,
        chunk_bytes: v.chunk_bytes,
    })
}

/// The `VersionInfo` of the columns of a version that the wire carries.
fn wire_version(v: ListedVersion) -> VersionInfo {
    VersionInfo {
        version: v.version.max(0) as u64,
        sealed_size: v.sealed_size.max(0) as u64,
        wrapped_key: v.wrapped_key.into(),
        sealed_meta: v.sealed_meta.into(),
        generation: u32::try_from(v.generation).unwrap_or(0),
        created_at: v.created_at,
        chunk_bytes: v.chunk_bytes.max(0) as u64,
    }
}

pub fn kind(entry: &Entry) -> EntryKind {
    kind_of(&entry.kind)
}

/// The wire kind of an `entries.kind` value.
fn kind_of(kind: &str) -> EntryKind {
    if kind == KIND_DIR {
        EntryKind::Dir
    } else {
        EntryKind::File
    }
}

/// The `EntryInfo` of each row, in order.
pub fn entry_infos(conn: &mut DbConn, rows: &[Entry]) -> Result<Vec<EntryInfo>, Failure> {
    let file_ids: Vec<i64> = rows.iter().filter(|e| !e.is_dir()).map(|e| e.id).collect();
    let mut by_entry: HashMap<i64, Vec<Version>> = HashMap::new();
    if !file_ids.is_empty() {
        for v in versions::for_entries(conn, &file_ids)? {
            by_entry.entry(v.entry_id).or_default().push(v);
        }
    }
    Ok(rows
        .iter()
        .map(|e| {
            let kept = by_entry.get(&e.id).map(Vec::as_slice).unwrap_or(&[]);
            let current = e
                .current_version
                .and_then(|n| kept.iter().find(|v| v.version == n))
                .map(version_info);
            EntryInfo {
                id: e.id,
                path: e.path.clone(),
                kind: kind(e),
                current,
                version_count: kept.len() as u64,
                revision: e.revision.max(0) as u64,
                updated_at: e.updated_at,
            }
        })
        .collect())
}

/// The `EntryInfo` of a listed row (see [`crate::db::files::listing::page`]).
pub fn listed_info((entry, current, version_count): Listed) -> EntryInfo {
    EntryInfo {
        current: current.map(wire_version),
        version_count: version_count.max(0) as u64,
        ..named_info(entry)
    }
}

/// The `EntryInfo` of a row of a listing of names (see
/// [`crate::db::files::listing::names_page`]): no version, and a version count of 0.
pub fn named_info(entry: ListedEntry) -> EntryInfo {
    EntryInfo {
        id: entry.id,
        kind: kind_of(&entry.kind),
        current: None,
        version_count: 0,
        revision: entry.revision.max(0) as u64,
        updated_at: entry.updated_at,
        path: entry.path,
    }
}

/// One entry's `EntryInfo`.
pub fn entry_info(conn: &mut DbConn, row: &Entry) -> Result<EntryInfo, Failure> {
    let mut infos = entry_infos(conn, std::slice::from_ref(row))?;
    infos
        .pop()
        .ok_or_else(|| Failure::Api(vault_proto::proto::ApiError::internal()))
}

/// How many of `rows` fit in one page: at most [`PAGE_ENTRIES`] and [`PAGE_BUDGET`] bytes
/// (always at least one).
pub fn page_len<'a>(paths: impl Iterator<Item = &'a str>) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for path in paths.take(PAGE_ENTRIES) {
        bytes += path.len() + ENTRY_OVERHEAD;
        if n > 0 && bytes > PAGE_BUDGET {
            break;
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use vault_proto::proto::{MAX_FRAME_LEN, Response, encode_frame};
    use vault_proto::sizes::SEALED_META_LEN;
    use vault_proto::sizes::WRAPPED_FILE_KEY_LEN;

    use super::*;

    /// The largest `EntryInfo` of a file whose encrypted path is `path`: every number at
    /// its widest.
    fn widest_file(path: String) -> EntryInfo {
        EntryInfo {
            id: i64::MAX,
            path,
            kind: EntryKind::File,
            current: Some(VersionInfo {
                version: u64::MAX,
                sealed_size: u64::MAX,
                wrapped_key: vec![0xff; WRAPPED_FILE_KEY_LEN].into(),
                sealed_meta: vec![0xff; SEALED_META_LEN].into(),
                generation: u32::MAX,
                created_at: i64::MAX,
                chunk_bytes: u64::MAX,
            }),
            version_count: u64::MAX,
            revision: u64::MAX,
            updated_at: i64::MAX,
        }
    }

    #[test]
    fn the_overhead_estimate_covers_the_widest_entry_and_a_full_page_fits_a_frame() {
        let path = "a".repeat(120);
        let one = encode_frame(&widest_file(path.clone())).expect("encode");
        assert!(
            one.len() <= path.len() + ENTRY_OVERHEAD,
            "an entry takes {} bytes, the estimate {}",
            one.len(),
            path.len() + ENTRY_OVERHEAD
        );
        // As many of the widest entries as a page takes, with the longest cursor.
        let n = page_len(std::iter::repeat_n(path.as_str(), PAGE_ENTRIES + 1));
        let page = Response::Listing {
            entries: (0..n).map(|_| widest_file(path.clone())).collect(),
            next: Some("a".repeat(4096)),
        };
        let frame = encode_frame(&page).expect("a full page encodes under the frame limit");
        assert!(frame.len() <= MAX_FRAME_LEN, "{} bytes", frame.len());
    }
}
