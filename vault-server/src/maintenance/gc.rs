//! `gc`: removes what is past its time, in this order: expired uploads (rows, partial
//! blobs and the invisible entries they leave) and given-up batch tokens, trash items older than `trash_retention`
//! days, versions beyond `version_retention`, chunks no kept version uses (unused for the
//! grace period), queued deleted blobs older than the grace period, then orphan blob files
//! and partials (referenced by nothing, older than the
//! grace). Each database step is its own transaction; files go after the commit.

use std::collections::HashSet;
use vault_proto::units::plural;

use diesel::dsl::count_star;
use diesel::prelude::*;
use serde::Serialize;

use super::purge::{self, Purged};
use super::rows::{self, CHUNK};
use super::{MaintenanceResult, Policy};
use crate::blobs::{BlobId, BlobStore, StoredBlob};
use crate::db::files::chunks;
use crate::db::schema::{deleted_blobs, trash, uploads, versions};
use crate::db::{self, DbConn, DbError};

/// What a gc run removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub expired_uploads: u64,
    /// Invisible file entries whose only (first) upload expired.
    pub abandoned_entries: u64,
    pub trash_items: u64,
    pub trash_entries: u64,
    pub trash_bytes: i64,
    pub pruned_versions: u64,
    pub pruned_bytes: i64,
    /// Chunks (format 2) that no kept version uses, unused for the grace period; their
    /// blobs are queued like a deleted version's.
    pub unused_chunks: u64,
    pub unused_chunk_bytes: i64,
    /// Queued blobs removed after the grace period.
    pub deleted_blobs: u64,
    pub deleted_blob_bytes: u64,
    pub orphan_blobs: u64,
    pub orphan_blob_bytes: u64,
    pub orphan_partials: u64,
    pub orphan_partial_bytes: u64,
    /// Files that could not be removed (tried again at the next run).
    pub errors: Vec<String>,
}

impl GcReport {
    /// Whether the run changed nothing.
    pub fn is_empty(&self) -> bool {
        *self
            == GcReport {
                errors: self.errors.clone(),
                ..GcReport::default()
            }
    }

    /// One line for logs and the audit log.
    pub fn summary(&self) -> String {
        format!(
            "{}, {}, {} ({}, {} bytes), {} ({} bytes), {} ({} bytes), {} ({} bytes), {} ({} \
             bytes){}{}",
            plural(self.expired_uploads, "expired upload", "expired uploads"),
            plural(
                self.abandoned_entries,
                "abandoned entry",
                "abandoned entries"
            ),
            plural(self.trash_items, "trash item", "trash items"),
            plural(self.trash_entries, "entry", "entries"),
            self.trash_bytes,
            plural(self.pruned_versions, "old version", "old versions"),
            self.pruned_bytes,
            plural(self.deleted_blobs, "deleted blob", "deleted blobs"),
            self.deleted_blob_bytes,
            plural(self.orphan_blobs, "orphan blob", "orphan blobs"),
            self.orphan_blob_bytes,
            plural(self.orphan_partials, "orphan partial", "orphan partials"),
            self.orphan_partial_bytes,
            if self.unused_chunks == 0 {
                String::new()
            } else {
                format!(
                    ", {} ({} bytes)",
                    plural(self.unused_chunks, "unused chunk", "unused chunks"),
                    self.unused_chunk_bytes
                )
            },
            if self.errors.is_empty() {
                String::new()
            } else {
                format!(", {}", plural(self.errors.len(), "error", "errors"))
            }
        )
    }
}

/// Runs every gc step once, at time `now` (Unix seconds).
pub fn gc(
    conn: &mut DbConn,
    store: &dyn BlobStore,
    policy: &Policy,
    now: i64,
) -> MaintenanceResult<GcReport> {
    let mut report = GcReport::default();
    expire_uploads(conn, store, now, &mut report)?;
    crate::db::files::batches::purge_expired(conn, now)?;
    expire_trash(conn, store, policy, now, &mut report)?;
    prune_versions(conn, policy, now, &mut report)?;
    sweep_chunks(conn, policy, now, &mut report)?;
    remove_deleted_blobs(conn, store, policy, now, &mut report)?;
    remove_orphans(conn, store, policy, &mut report)?;
    Ok(report)
}

fn expire_uploads(
    conn: &mut DbConn,
    store: &dyn BlobStore,
    now: i64,
    report: &mut GcReport,
) -> MaintenanceResult<()> {
    let expired: Vec<(i64, i64)> = uploads::table
        .filter(uploads::expires_at.lt(now))
        .select((uploads::id, uploads::entry_id))
        .load(conn)?;
    for batch in expired.chunks(CHUNK) {
        let (purged, abandoned) = db::transaction(conn, |c| {
            let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
            let purged = purge::drop_uploads(c, &ids)?;
            let mut abandoned = 0;
            let entries: HashSet<i64> = batch.iter().map(|(_, e)| *e).collect();
            for entry in entries {
                abandoned += u64::from(purge::delete_if_abandoned(c, entry)?);
            }
            Ok::<_, DbError>((purged, abandoned))
        })?;
        report.expired_uploads += purged.uploads;
        report.abandoned_entries += abandoned;
        report.errors.extend(purged.remove_partials(store));
    }
    Ok(())
}

fn expire_trash(
    conn: &mut DbConn,
    store: &dyn BlobStore,
    policy: &Policy,
    now: i64,
    report: &mut GcReport,
) -> MaintenanceResult<()> {
    let cutoff = now - i64::from(policy.trash_retention_days) * 86_400;
    let items: Vec<i64> = trash::table
        .filter(trash::trashed_at.lt(cutoff))
        .select(trash::id)
        .load(conn)?;
    for item in items {
        let purged: Option<Purged> =
            db::transaction(conn, |c| purge::purge_trash_item(c, item, now))?;
        if let Some(purged) = purged {
            report.trash_items += 1;
            report.trash_entries += purged.entries;
            report.trash_bytes += purged.bytes;
            report.errors.extend(purged.remove_partials(store));
        }
    }
    Ok(())
}

fn prune_versions(
    conn: &mut DbConn,
    policy: &Policy,
    now: i64,
    report: &mut GcReport,
) -> MaintenanceResult<()> {
    let keep = i64::from(policy.version_retention.max(1));
    let crowded: Vec<i64> = versions::table
        .group_by(versions::entry_id)
        .having(count_star().gt(keep))
        .select(versions::entry_id)
        .load(conn)?;
    for entry_id in crowded {
        let (count, bytes) = db::transaction(conn, |c| prune_entry(c, entry_id, keep, now))?;
        report.pruned_versions += count;
        report.pruned_bytes += bytes;
    }
    Ok(())
}

/// Removes the chunks no kept version uses and nothing used for the grace period (a chunk
/// an upload reported missing, stored or was told is held counts as used then), one
/// namespace per transaction, under the namespace's lock so that no commit can attach one
/// meanwhile. Their blobs go to `deleted_blobs`, their bytes off the namespace's count.
fn sweep_chunks(
    conn: &mut DbConn,
    policy: &Policy,
    now: i64,
    report: &mut GcReport,
) -> MaintenanceResult<()> {
    chunks::drop_stale_links(conn)?;
    let before = now.saturating_sub(i64::try_from(policy.blob_grace_s).unwrap_or(i64::MAX));
    for ns in chunks::namespaces_with_unused(conn, before)? {
        let doomed = db::transaction(conn, |c| {
            match db::files::namespaces::lock(c, ns) {
                // Deleted meanwhile, with its chunks.
                Err(DbError::Query(diesel::result::Error::NotFound)) => return Ok(Vec::new()),
                locked => locked?,
            };
            let doomed = chunks::delete_unused(c, ns, before)?;
            let blobs: Vec<String> = doomed.iter().map(|ch| ch.blob_id.clone()).collect();
            rows::queue_deleted(c, &blobs, now)?;
            let bytes: i64 = doomed.iter().map(|ch| ch.sealed_size).sum();
            db::files::namespaces::add_used(c, ns, -bytes)?;
            Ok::<_, DbError>(doomed)
        })?;
        report.unused_chunks += doomed.len() as u64;
        report.unused_chunk_bytes += doomed.iter().map(|ch| ch.sealed_size).sum::<i64>();
    }
    Ok(())
}

/// Deletes the versions of one entry beyond the newest `keep`, never the current one.
fn prune_entry(
    conn: &mut DbConn,
    entry_id: i64,
    keep: i64,
    now: i64,
) -> Result<(u64, i64), DbError> {
    let Some(entry) = rows::entry(conn, entry_id)? else {
        return Ok((0, 0));
    };
    let all = rows::versions_of(conn, entry_id)?;
    let doomed: Vec<&rows::VersionRow> = all
        .iter()
        .skip(usize::try_from(keep).unwrap_or(usize::MAX))
        .filter(|v| Some(v.version) != entry.current_version)
        .collect();
    if doomed.is_empty() {
        return Ok((0, 0));
    }
    let ids: Vec<i64> = doomed.iter().map(|v| v.id).collect();
    let blobs: Vec<String> = doomed.iter().map(|v| v.blob_id.clone()).collect();
    let bytes: i64 = doomed.iter().map(|v| v.sealed_size).sum();
    rows::queue_deleted(conn, &blobs, now)?;
    diesel::delete(versions::table.filter(versions::id.eq_any(&ids))).execute(conn)?;
    let revision = rows::release(conn, entry.namespace_id, bytes, false)?;
    rows::touch_entry(conn, entry_id, revision, now)?;
    if let Some(item) = entry.trash_id {
        diesel::update(trash::table.find(item))
            .set(trash::sealed_bytes.eq(trash::sealed_bytes - bytes))
            .execute(conn)?;
    }
    Ok((ids.len() as u64, bytes))
}

fn remove_deleted_blobs(
    conn: &mut DbConn,
    store: &dyn BlobStore,
    policy: &Policy,
    now: i64,
    report: &mut GcReport,
) -> MaintenanceResult<()> {
    let cutoff = now.saturating_sub(i64::try_from(policy.blob_grace_s).unwrap_or(i64::MAX));
    let due: Vec<String> = deleted_blobs::table
        .filter(deleted_blobs::deleted_at.le(cutoff))
        .select(deleted_blobs::blob_id)
        .load(conn)?;
    for batch in due.chunks(CHUNK) {
        let removable = db::transaction(conn, |c| {
            // A queued id that something still refers to (never expected) keeps its file.
            let mut live: HashSet<String> = versions::table
                .filter(versions::blob_id.eq_any(batch))
                .select(versions::blob_id)
                .load::<String>(c)?
                .into_iter()
                .collect();
            live.extend(
                uploads::table
                    .filter(uploads::blob_id.eq_any(batch))
                    .select(uploads::blob_id)
                    .load::<String>(c)?,
            );
            diesel::delete(deleted_blobs::table.filter(deleted_blobs::blob_id.eq_any(batch)))
                .execute(c)?;
            Ok::<_, DbError>(
                batch
                    .iter()
                    .filter(|b| !live.contains(*b))
                    .filter_map(|b| rows::blob_id(b))
                    .collect::<Vec<BlobId>>(),
            )
        })?;
        for id in removable {
            let size = store.size(&id).ok().flatten().unwrap_or(0);
            match store.remove(&id) {
                Ok(()) => {
                    report.deleted_blobs += 1;
                    report.deleted_blob_bytes += size;
                }
                Err(e) => report.errors.push(format!("cannot remove blob {id}: {e}")),
            }
        }
    }
    Ok(())
}

fn remove_orphans(
    conn: &mut DbConn,
    store: &dyn BlobStore,
    policy: &Policy,
    report: &mut GcReport,
) -> MaintenanceResult<()> {
    let old = |age: u64| age >= policy.blob_grace_s;
    let blobs = store
        .list()
        .map_err(|e| super::MaintenanceError::io("cannot list the blob store", e))?;
    let partials = store
        .list_partials()
        .map_err(|e| super::MaintenanceError::io("cannot list partial blobs", e))?;
    // Read after listing: a blob listed above and committed since is referenced now.
    let referenced = rows::referenced_blobs(conn)?;
    let uploading = rows::upload_blobs(conn)?;
    let (count, bytes, errors) =
        remove_unreferenced(&blobs, old, &referenced, "blob", |id| store.remove(id));
    report.orphan_blobs += count;
    report.orphan_blob_bytes += bytes;
    report.errors.extend(errors);
    let (count, bytes, errors) = remove_unreferenced(&partials, old, &uploading, "partial", |id| {
        store.remove_partial(id)
    });
    report.orphan_partials += count;
    report.orphan_partial_bytes += bytes;
    report.errors.extend(errors);
    Ok(())
}

/// Removes, with `remove`, each of `found` that is old enough and not in `keep`; returns
/// how many went, their bytes, and an error line (naming the `kind`) for each that did not.
fn remove_unreferenced(
    found: &[StoredBlob],
    old_enough: impl Fn(u64) -> bool,
    keep: &HashSet<String>,
    kind: &str,
    remove: impl Fn(&BlobId) -> std::io::Result<()>,
) -> (u64, u64, Vec<String>) {
    let (mut count, mut bytes, mut errors) = (0, 0, Vec::new());
    for blob in found.iter().filter(|b| old_enough(b.age_s)) {
        if keep.contains(blob.id.as_str()) {
            continue;
        }
        match remove(&blob.id) {
            Ok(()) => {
                count += 1;
                bytes += blob.size;
            }
            Err(e) => errors.push(format!("cannot remove orphan {kind} {}: {e}", blob.id)),
        }
    }
    (count, bytes, errors)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::db::schema::{entries, namespaces};

    #[test]
    fn expired_uploads_go_with_their_partials_and_abandoned_entries() -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.namespace(c, 0)?;
        let pending = t.entry(c, ns, "a", None)?;
        let old = t.upload(c, ns, pending, NOW - 10, b"partial")?;
        // A live file with a fresh upload of its next version: untouched.
        let live = t.entry(c, ns, "b", Some(1))?;
        t.version(c, live, 1, 100)?;
        let fresh = t.upload(c, ns, live, NOW + 3600, b"fresh")?;

        let report = gc(c, &t.store, &t.policy(), NOW)?;
        assert_eq!(report.expired_uploads, 1);
        assert_eq!(report.abandoned_entries, 1);
        assert_eq!(t.store.partial_len(&old)?, None);
        assert_eq!(t.store.partial_len(&fresh)?, Some(5));
        assert!(rows::entry(c, pending)?.is_none());
        assert!(rows::entry(c, live)?.is_some());
        Ok(())
    }

    #[test]
    fn old_trash_is_purged_with_bytes_released_and_a_purged_revision() -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.namespace(c, 0)?;
        let old_item = t.trashed_file(c, ns, "old", NOW - 31 * 86_400, 300)?;
        let new_item = t.trashed_file(c, ns, "new", NOW - 86_400, 200)?;
        let kept = t.entry(c, ns, "kept", Some(1))?;
        t.version(c, kept, 1, 50)?;
        t.set_used(c, ns, 550)?;
        let before = t.revision(c, ns)?;

        let report = gc(c, &t.store, &t.policy(), NOW)?;
        assert_eq!(report.trash_items, 1);
        assert_eq!(report.trash_entries, 1);
        assert_eq!(report.trash_bytes, 300);
        assert_eq!(t.used(c, ns)?, 250);
        let (rev, purged): (i64, i64) = namespaces::table
            .find(ns)
            .select((namespaces::revision, namespaces::purged_revision))
            .first(c)?;
        assert!(rev > before);
        assert_eq!(purged, rev);
        assert_eq!(
            trash::table.find(old_item.0).count().get_result::<i64>(c)?,
            0
        );
        assert_eq!(
            trash::table.find(new_item.0).count().get_result::<i64>(c)?,
            1
        );
        // The old item's blob is queued, not removed yet (grace period).
        let queued: i64 = deleted_blobs::table.count().get_result(c)?;
        assert_eq!(queued, 1);
        assert!(t.store.size(&old_item.1)?.is_some());
        Ok(())
    }

    #[test]
    fn versions_beyond_retention_are_pruned_but_never_the_current_one() -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.namespace(c, 0)?;
        // Five versions, version 1 restored as current; retention 2.
        let e = t.entry(c, ns, "f", Some(1))?;
        for v in 1..=5 {
            t.version(c, e, v, 10)?;
        }
        t.set_used(c, ns, 50)?;
        let mut policy = t.policy();
        policy.version_retention = 2;
        let report = gc(c, &t.store, &policy, NOW)?;
        assert_eq!(report.pruned_versions, 2);
        assert_eq!(report.pruned_bytes, 20);
        let left: Vec<i64> = rows::versions_of(c, e)?.iter().map(|v| v.version).collect();
        assert_eq!(left, vec![5, 4, 1]);
        assert_eq!(t.used(c, ns)?, 30);
        // A second run finds nothing more.
        assert!(gc(c, &t.store, &policy, NOW)?.is_empty());
        Ok(())
    }

    #[test]
    fn queued_blobs_and_orphans_go_after_the_grace_period_only() -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.namespace(c, 0)?;
        let e = t.entry(c, ns, "f", Some(1))?;
        let (_, referenced) = t.version(c, e, 1, 10)?;
        let queued_old = t.blob(b"old")?;
        let queued_new = t.blob(b"new")?;
        rows::queue_deleted(c, &[queued_old.to_string()], NOW - 7200)?;
        rows::queue_deleted(c, &[queued_new.to_string()], NOW - 10)?;
        let orphan = t.blob(b"orphan")?;
        let partial = t.partial(b"stray")?;

        // Fresh files are younger than the grace: nothing but the old queued blob goes.
        let report = gc(c, &t.store, &t.policy(), NOW)?;
        assert_eq!((report.deleted_blobs, report.deleted_blob_bytes), (1, 3));
        assert_eq!(report.orphan_blobs, 0);
        assert_eq!(report.orphan_partials, 0);
        assert_eq!(t.store.size(&queued_old)?, None);
        assert!(t.store.size(&orphan)?.is_some());

        // With no grace, the orphans go too; referenced blobs never do.
        let mut policy = t.policy();
        policy.blob_grace_s = 0;
        let report = gc(c, &t.store, &policy, NOW)?;
        assert_eq!(report.deleted_blobs, 1);
        assert_eq!((report.orphan_blobs, report.orphan_blob_bytes), (1, 6));
        assert_eq!(
            (report.orphan_partials, report.orphan_partial_bytes),
            (1, 5)
        );
        assert_eq!(t.store.size(&orphan)?, None);
        assert_eq!(t.store.size(&queued_new)?, None);
        assert_eq!(t.store.partial_len(&partial)?, None);
        assert_eq!(t.store.size(&referenced)?, Some(10));
        Ok(())
    }

    #[test]
    fn a_partial_of_a_live_upload_is_not_an_orphan() -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.namespace(c, 0)?;
        let e = t.entry(c, ns, "f", None)?;
        let id = t.upload(c, ns, e, NOW + 60, b"abc")?;
        let mut policy = t.policy();
        policy.blob_grace_s = 0;
        let report = gc(c, &t.store, &policy, NOW)?;
        assert!(report.is_empty(), "{report:?}");
        assert_eq!(t.store.partial_len(&id)?, Some(3));
        assert!(rows::entry(c, e)?.is_some());
        let n: i64 = entries::table.count().get_result(c)?;
        assert_eq!(n, 1);
        Ok(())
    }
}
