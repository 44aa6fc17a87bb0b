//! Listing pages: visible entries with their current version and their number of kept
//! versions, in one query per page (per entry: a seek for the current version and a
//! count over the versions index, no second query with an `IN` list); or, for a listing
//! of names, the entries alone.

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::{KIND_DIR, subtree_pattern};
use crate::db::schema::{entries, versions};
use crate::db::{DbConn, DbResult};

/// The columns of an entry a listing shows.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = entries)]
pub struct ListedEntry {
    pub id: i64,
    pub path: String,
    pub kind: String,
    pub revision: i64,
    pub updated_at: i64,
}

/// The columns of a current version a listing shows.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = versions)]
pub struct ListedVersion {
    pub version: i64,
    pub sealed_size: i64,
    pub wrapped_key: Vec<u8>,
    pub sealed_meta: Vec<u8>,
    pub generation: i64,
    pub created_at: i64,
    pub chunk_bytes: i64,
}

/// A listed entry: its columns, its current version (files only), and how many versions
/// of it are kept. Only what the listing shows is read (no parent, no blob id).
pub type Listed = (ListedEntry, Option<ListedVersion>, i64);

/// Which entries a page is taken from.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// The direct children of a directory (`""` is the root).
    Children(&'a str),
    /// Everything under a directory (everything for the root).
    Subtree(&'a str),
}

/// Which page of a listing to read: up to `limit` visible entries of `scope` whose paths
/// sort strictly between `after` and `before` (either may be open), by path.
#[derive(Clone, Copy, Debug)]
pub struct PageQuery<'a> {
    pub ns: i64,
    pub scope: Scope<'a>,
    pub after: Option<&'a str>,
    pub before: Option<&'a str>,
    pub limit: i64,
}

/// `$from` (`entries` or a join of it) narrowed to the rows of the [`PageQuery`] `$page`,
/// boxed, in path order. (A macro: the joined and the plain queries are different types.)
macro_rules! page_of {
    ($from:expr, $page:expr) => {{
        let page: &PageQuery<'_> = $page;
        let mut query = $from
            .filter(entries::namespace_id.eq(page.ns))
            .filter(entries::trash_id.is_null())
            .filter(visible!())
            .into_boxed();
        match page.scope {
            Scope::Children(dir) => query = query.filter(entries::parent.eq(dir.to_owned())),
            Scope::Subtree("") => {}
            Scope::Subtree(dir) => query = query.filter(entries::path.like(subtree_pattern(dir))),
        }
        if let Some(after) = page.after {
            query = query.filter(entries::path.gt(after.to_owned()));
        }
        if let Some(before) = page.before {
            query = query.filter(entries::path.lt(before.to_owned()));
        }
        query.order(entries::path.asc()).limit(page.limit)
    }};
}

/// The entries of a page with their current versions and version counts.
pub fn page(conn: &mut DbConn, page: &PageQuery<'_>) -> DbResult<Vec<Listed>> {
    let version_count =
        sql::<BigInt>("(SELECT COUNT(*) FROM versions AS kept WHERE kept.entry_id = entries.id)");
    let current = versions::entry_id
        .eq(entries::id)
        .and(versions::version.nullable().eq(entries::current_version));
    let from = entries::table.left_join(versions::table.on(current));
    Ok(page_of!(from, page)
        .select((
            ListedEntry::as_select(),
            Option::<ListedVersion>::as_select(),
            version_count,
        ))
        .load(conn)?)
}

/// [`page`] without the versions: the entries alone, read from the listing index (for
/// children) without a look at the versions table.
pub fn names_page(conn: &mut DbConn, page: &PageQuery<'_>) -> DbResult<Vec<ListedEntry>> {
    Ok(page_of!(entries::table, page)
        .select(ListedEntry::as_select())
        .load(conn)?)
}
