//! Listing pages: visible entries with their current version and their number of kept
//! versions, in one query per page (per entry: a seek for the current version and a
//! count over the versions index, no second query with an `IN` list).

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::entries::Entry;
use super::versions::Version;
use super::{KIND_DIR, subtree_pattern};
use crate::db::schema::{entries, versions};
use crate::db::{DbConn, DbResult};

/// A listed entry: its row, its current version (files only), and how many versions of it
/// are kept.
pub type Listed = (Entry, Option<Version>, i64);

/// Which entries a page is taken from.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// The direct children of a directory (`""` is the root).
    Children(&'a str),
    /// Everything under a directory (everything for the root).
    Subtree(&'a str),
}

/// Up to `limit` visible entries of `scope` whose paths sort strictly between `after` and
/// `before` (either may be open), by path.
pub fn page(
    conn: &mut DbConn,
    ns: i64,
    scope: Scope<'_>,
    (after, before): (Option<&str>, Option<&str>),
    limit: i64,
) -> DbResult<Vec<Listed>> {
    let version_count =
        sql::<BigInt>("(SELECT COUNT(*) FROM versions AS kept WHERE kept.entry_id = entries.id)");
    let current = versions::entry_id
        .eq(entries::id)
        .and(versions::version.nullable().eq(entries::current_version));
    let mut query = entries::table
        .left_join(versions::table.on(current))
        .filter(entries::namespace_id.eq(ns))
        .filter(entries::trash_id.is_null())
        .filter(
            entries::kind
                .eq(KIND_DIR)
                .or(entries::current_version.is_not_null()),
        )
        .into_boxed();
    match scope {
        Scope::Children(dir) => query = query.filter(entries::parent.eq(dir.to_owned())),
        Scope::Subtree("") => {}
        Scope::Subtree(dir) => query = query.filter(entries::path.like(subtree_pattern(dir))),
    }
    if let Some(after) = after {
        query = query.filter(entries::path.gt(after.to_owned()));
    }
    if let Some(before) = before {
        query = query.filter(entries::path.lt(before.to_owned()));
    }
    Ok(query
        .order(entries::path.asc())
        .limit(limit)
        .select((
            Entry::as_select(),
            Option::<Version>::as_select(),
            version_count,
        ))
        .load(conn)?)
}
