//! The `entries` table: one row per file or directory, keyed by namespace and encrypted
//! path. A row is *live* while `trash_id` is NULL; a live file is *visible* once it has a
//! `current_version` (a new file's row exists, invisible, from `upload_open` on).

use diesel::dsl::count_star;
use diesel::prelude::*;

use super::{KIND_DIR, KIND_FILE, subtree_pattern};
use crate::db::schema::entries;
use crate::db::{DbConn, DbError, DbResult};

/// One entry row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = entries)]
pub struct Entry {
    pub id: i64,
    pub namespace_id: i64,
    pub path: String,
    pub parent: String,
    pub kind: String,
    pub current_version: Option<i64>,
    pub next_version: i64,
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub trash_id: Option<i64>,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.kind == KIND_DIR
    }

    /// Listed, stat-able and in the change feed: a directory, or a file with a version.
    pub fn is_visible(&self) -> bool {
        self.is_dir() || self.current_version.is_some()
    }
}

pub fn by_id(conn: &mut DbConn, id: i64) -> DbResult<Option<Entry>> {
    Ok(entries::table
        .find(id)
        .select(Entry::as_select())
        .get_result(conn)
        .optional()?)
}

/// The live row at `path` (visible or not).
pub fn live_at(conn: &mut DbConn, ns: i64, path: &str) -> DbResult<Option<Entry>> {
    Ok(entries::table
        .filter(entries::namespace_id.eq(ns))
        .filter(entries::path.eq(path))
        .filter(entries::trash_id.is_null())
        .select(Entry::as_select())
        .get_result(conn)
        .optional()?)
}

/// The visible row at `path`.
pub fn visible_at(conn: &mut DbConn, ns: i64, path: &str) -> DbResult<Option<Entry>> {
    Ok(live_at(conn, ns, path)?.filter(Entry::is_visible))
}

/// Inserts a live row and returns it. `current_version` starts NULL.
pub fn insert(
    conn: &mut DbConn,
    ns: i64,
    path: &str,
    kind: &str,
    revision: i64,
    now: i64,
) -> DbResult<Entry> {
    diesel::insert_into(entries::table)
        .values((
            entries::namespace_id.eq(ns),
            entries::path.eq(path),
            entries::parent.eq(vault_proto::proto::parent_of(path)),
            entries::kind.eq(kind),
            entries::revision.eq(revision),
            entries::created_at.eq(now),
            entries::updated_at.eq(now),
        ))
        .execute(conn)?;
    live_at(conn, ns, path)?.ok_or(DbError::Query(diesel::result::Error::NotFound))
}

/// Inserts the invisible row of a new file with its version 1 reserved at once
/// (`next_version` 2: what [`insert`] then [`reserve_version`] would do, in one statement)
/// and returns its id.
pub fn insert_new_file(
    conn: &mut DbConn,
    ns: i64,
    path: &str,
    revision: i64,
    now: i64,
) -> DbResult<i64> {
    diesel::insert_into(entries::table)
        .values((
            entries::namespace_id.eq(ns),
            entries::path.eq(path),
            entries::parent.eq(vault_proto::proto::parent_of(path)),
            entries::kind.eq(KIND_FILE),
            entries::next_version.eq(2),
            entries::revision.eq(revision),
            entries::created_at.eq(now),
            entries::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(entries::table
        .filter(entries::namespace_id.eq(ns))
        .filter(entries::path.eq(path))
        .filter(entries::trash_id.is_null())
        .select(entries::id)
        .get_result(conn)?)
}

/// The live rows at these paths (visible or not; in no particular order).
pub fn live_at_many(conn: &mut DbConn, ns: i64, paths: &[&str]) -> DbResult<Vec<Entry>> {
    let mut found = Vec::new();
    for batch in paths.chunks(500) {
        found.extend(
            entries::table
                .filter(entries::namespace_id.eq(ns))
                .filter(entries::path.eq_any(batch))
                .filter(entries::trash_id.is_null())
                .select(Entry::as_select())
                .load(conn)?,
        );
    }
    Ok(found)
}

/// Points files at versions and stamps them with `revision`, one statement per version
/// number (a batch of new files all become version 1 at once).
pub fn set_current_many(
    conn: &mut DbConn,
    current: &[(i64, i64)],
    revision: i64,
    now: i64,
) -> DbResult<()> {
    let mut by_version: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (id, version) in current {
        by_version.entry(*version).or_default().push(*id);
    }
    for (version, ids) in by_version {
        for batch in ids.chunks(500) {
            diesel::update(entries::table.filter(entries::id.eq_any(batch)))
                .set((
                    entries::current_version.eq(Some(version)),
                    entries::revision.eq(revision),
                    entries::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// The rows with these ids that exist (in no particular order).
pub fn by_ids(conn: &mut DbConn, ids: &[i64]) -> DbResult<Vec<Entry>> {
    let mut found = Vec::with_capacity(ids.len());
    for batch in ids.chunks(500) {
        found.extend(
            entries::table
                .filter(entries::id.eq_any(batch))
                .select(Entry::as_select())
                .load(conn)?,
        );
    }
    Ok(found)
}

/// Reserves the next version number of a file and returns it.
pub fn reserve_version(conn: &mut DbConn, entry: &Entry) -> DbResult<i64> {
    diesel::update(entries::table.find(entry.id))
        .set(entries::next_version.eq(entries::next_version + 1))
        .execute(conn)?;
    Ok(entry.next_version)
}

/// Points a file at `version` and stamps it with `revision`.
pub fn set_current(
    conn: &mut DbConn,
    id: i64,
    version: i64,
    revision: i64,
    now: i64,
) -> DbResult<()> {
    diesel::update(entries::table.find(id))
        .set((
            entries::current_version.eq(Some(version)),
            entries::revision.eq(revision),
            entries::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Whether `dir` has any visible child.
pub fn has_visible_children(conn: &mut DbConn, ns: i64, dir: &str) -> DbResult<bool> {
    let child = entries::table
        .filter(entries::namespace_id.eq(ns))
        .filter(entries::parent.eq(dir))
        .filter(entries::trash_id.is_null())
        .filter(visible!())
        .select(entries::id)
        .first::<i64>(conn)
        .optional()?;
    Ok(child.is_some())
}

/// Every live row (visible or not) strictly under `prefix`.
pub fn live_under(conn: &mut DbConn, ns: i64, prefix: &str) -> DbResult<Vec<Entry>> {
    Ok(entries::table
        .filter(entries::namespace_id.eq(ns))
        .filter(entries::trash_id.is_null())
        .filter(entries::path.like(subtree_pattern(prefix)))
        .order(entries::path.asc())
        .select(Entry::as_select())
        .load(conn)?)
}

/// Whether any live row is at `path` or under it.
pub fn any_live_at_or_under(conn: &mut DbConn, ns: i64, path: &str) -> DbResult<bool> {
    let n: i64 = entries::table
        .filter(entries::namespace_id.eq(ns))
        .filter(entries::trash_id.is_null())
        .filter(
            entries::path
                .eq(path)
                .or(entries::path.like(subtree_pattern(path))),
        )
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Renames one row (its path and parent) and stamps it.
pub fn rename(conn: &mut DbConn, id: i64, to: &str, revision: i64, now: i64) -> DbResult<()> {
    diesel::update(entries::table.find(id))
        .set((
            entries::path.eq(to),
            entries::parent.eq(vault_proto::proto::parent_of(to)),
            entries::revision.eq(revision),
            entries::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Moves the live rows with these ids to trash `trash_id`.
pub fn set_trashed(
    conn: &mut DbConn,
    ids: &[i64],
    trash_id: i64,
    revision: i64,
    now: i64,
) -> DbResult<()> {
    for batch in ids.chunks(500) {
        diesel::update(entries::table.filter(entries::id.eq_any(batch)))
            .set((
                entries::trash_id.eq(Some(trash_id)),
                entries::revision.eq(revision),
                entries::updated_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Makes the rows of trash `trash_id` live again; returns how many.
pub fn untrash(conn: &mut DbConn, trash_id: i64, revision: i64, now: i64) -> DbResult<usize> {
    Ok(
        diesel::update(entries::table.filter(entries::trash_id.eq(trash_id)))
            .set((
                entries::trash_id.eq(None::<i64>),
                entries::revision.eq(revision),
                entries::updated_at.eq(now),
            ))
            .execute(conn)?,
    )
}

/// Ids of the rows in trash `trash_id`.
pub fn ids_in_trash(conn: &mut DbConn, trash_id: i64) -> DbResult<Vec<i64>> {
    Ok(entries::table
        .filter(entries::trash_id.eq(trash_id))
        .select(entries::id)
        .load(conn)?)
}

/// Hard-deletes rows.
pub fn delete(conn: &mut DbConn, ids: &[i64]) -> DbResult<()> {
    for batch in ids.chunks(500) {
        diesel::delete(entries::table.filter(entries::id.eq_any(batch))).execute(conn)?;
    }
    Ok(())
}

/// One page of the change feed: rows changed after `(revision, id)` (visible or in the
/// trash; invisible unfinished uploads are left out), in (revision, id) order.
pub fn changes_page(
    conn: &mut DbConn,
    ns: i64,
    after_revision: i64,
    after_id: i64,
    limit: i64,
) -> DbResult<Vec<Entry>> {
    Ok(entries::table
        .filter(entries::namespace_id.eq(ns))
        .filter(
            entries::revision.gt(after_revision).or(entries::revision
                .eq(after_revision)
                .and(entries::id.gt(after_id))),
        )
        .filter(visible!())
        .order((entries::revision.asc(), entries::id.asc()))
        .limit(limit)
        .select(Entry::as_select())
        .load(conn)?)
}

/// Visible live (file, directory) counts of a namespace.
pub fn live_counts(conn: &mut DbConn, ns: i64) -> DbResult<(u64, u64)> {
    let rows: Vec<(String, i64)> = entries::table
        .filter(entries::namespace_id.eq(ns))
        .filter(entries::trash_id.is_null())
        .filter(visible!())
        .group_by(entries::kind)
        .select((entries::kind, count_star()))
        .load(conn)?;
    let mut files = 0;
    let mut dirs = 0;
    for (kind, n) in rows {
        if kind == KIND_FILE {
            files += n.max(0) as u64;
        } else {
            dirs += n.max(0) as u64;
        }
    }
    Ok((files, dirs))
}
