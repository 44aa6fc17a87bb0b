//! Queries of the file tables: `namespaces`, `entries`, `versions`, `trash`, `uploads`,
//! `chunks`, `version_chunks`, `abandoned_batches` and `deleted_blobs` (migration `2026-11-22-000002_files` and
//! later). One code path for both backends.
//!
//! Rules every caller keeps: a mutating transaction starts with
//! [`namespaces::lock`] (which takes SQLite's write lock, and PostgreSQL's row lock on the
//! namespace, before anything is read), then bumps the revision once with
//! [`namespaces::bump`] and stamps every row it changes with that revision. Blob files are
//! never removed here: a deleted version's blob id goes to `deleted_blobs` for `gc`.

/// Visible `entries` rows: directories, and files with a current version. (A macro: the
/// boxed and unboxed queries that use it need the expression, not a function's type.)
macro_rules! visible {
    () => {
        entries::kind
            .eq(KIND_DIR)
            .or(entries::current_version.is_not_null())
    };
}

pub mod batches;
pub mod chunks;
pub mod entries;
pub mod listing;
pub mod namespaces;
pub mod trash;
pub mod uploads;
pub mod versions;

/// `entries.kind` of a file.
pub const KIND_FILE: &str = "file";
/// `entries.kind` of a directory.
pub const KIND_DIR: &str = "dir";

/// The `LIKE` pattern of every path strictly under `prefix`. Encrypted paths are only
/// `a-z`, `2-7` and `/` (checked on the way in), so they hold no `LIKE` wildcard; and
/// `LIKE` does not depend on the database's collation, as a range of strings would on
/// PostgreSQL.
pub fn subtree_pattern(prefix: &str) -> String {
    format!("{prefix}/%")
}
