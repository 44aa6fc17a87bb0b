//! Counts of the file store and of chat messages for `vault-admin stats` and `user show`.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{entries, namespaces, trash, uploads, versions};
use crate::db::{DbConn, DbResult};

/// What the file store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileStats {
    /// Live files with a committed version.
    pub files: i64,
    /// Live directories.
    pub directories: i64,
    /// Kept versions (live and trashed files).
    pub versions: i64,
    /// Ciphertext bytes of all versions (what quotas count).
    pub stored_bytes: i64,
    pub trash_items: i64,
    /// Uploads opened and not yet committed, aborted or expired.
    pub uploads_in_progress: i64,
}

/// Counts over every namespace at time `now`.
pub fn file_stats(conn: &mut DbConn, now: i64) -> DbResult<FileStats> {
    let live = entries::table.filter(entries::trash_id.is_null());
    Ok(FileStats {
        files: live
            .filter(entries::kind.eq("file"))
            .filter(entries::current_version.is_not_null())
            .count()
            .get_result(conn)?,
        directories: live
            .filter(entries::kind.eq("dir"))
            .count()
            .get_result(conn)?,
        versions: versions::table.count().get_result(conn)?,
        stored_bytes: namespaces::table
            .select(namespaces::used_bytes)
            .load::<i64>(conn)?
            .into_iter()
            .sum(),
        trash_items: trash::table.count().get_result(conn)?,
        uploads_in_progress: uploads::table
            .filter(uploads::expires_at.ge(now))
            .count()
            .get_result(conn)?,
    })
}

/// How many chat messages are stored (never what they say).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MessageStats {
    pub total: i64,
    /// Those that arrived in the 24 hours before `now`.
    pub last_24h: i64,
}

/// Message counts at time `now` (Unix seconds).
pub fn message_stats(conn: &mut DbConn, now: i64) -> DbResult<MessageStats> {
    let (total, last_24h) = crate::db::chat::count_messages(conn, (now - 24 * 3600) * 1000)?;
    Ok(MessageStats { total, last_24h })
}

/// Ciphertext bytes a user's personal space holds (0 before its first upload).
pub fn used_bytes_of_user(conn: &mut DbConn, user_id: i64) -> DbResult<i64> {
    Ok(namespaces::table
        .filter(namespaces::owner_user_id.eq(user_id))
        .select(namespaces::used_bytes)
        .first::<i64>(conn)
        .optional()?
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn counts_files_dirs_versions_bytes_trash_and_uploads() -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.namespace(c, 42)?;
        t.dir_entry(c, ns, "d")?;
        let f = t.entry(c, ns, "d/f", Some(2))?;
        t.version(c, f, 1, 10)?;
        t.version(c, f, 2, 20)?;
        let pending = t.entry(c, ns, "p", None)?;
        t.upload(c, ns, pending, NOW + 10, b"x")?;
        t.upload(c, ns, pending, NOW - 10, b"y")?;
        t.trashed_file(c, ns, "gone", NOW, 5)?;
        t.set_used(c, ns, 35)?;
        let s = file_stats(c, NOW)?;
        assert_eq!(
            s,
            FileStats {
                files: 1,
                directories: 1,
                versions: 3,
                stored_bytes: 35,
                trash_items: 1,
                uploads_in_progress: 1,
            }
        );
        assert_eq!(used_bytes_of_user(c, 42)?, 35);
        assert_eq!(used_bytes_of_user(c, 7)?, 0);
        Ok(())
    }
}
