//! `fsck`: do the database and the blob store agree? It reports versions and chunks
//! (format 2) whose blob is missing or has the wrong size, orphan blobs and partials,
//! dangling uploads (whose file entry is gone, or whose partial holds more than the upload
//! declared), namespaces whose `used_bytes` is not the sum of their versions and chunks,
//! live entries whose parent is not a live directory, and entries whose `current_version`
//! names no version. With `repair` it fixes what needs no guessing: versions that cannot
//! be read are deleted (the file falls back to its newest readable version, or goes if
//! none is left; [`FsckReport::lost`] says which files lost data), orphan blobs are queued
//! for gc, orphan partials removed, dangling uploads dropped, missing parent directories
//! created and `used_bytes` recomputed. A damaged chunk (format 2) takes the versions that use it
//! with it, and is then deleted itself, so that the next upload of its bytes stores it
//! again (a space that still held it would never be sent it).
//!
//! With `read_data` it also reads every version's blob and compares it with the BLAKE3
//! recorded when it was stored ([`super::scrub::check_blob`]): a version whose bytes
//! changed is damaged, and the repair treats it exactly as one whose blob is missing. A
//! version stored before hashes were recorded is reported as having none; the repair
//! records the hash of its bytes as they are now (from then on a change is caught; whether
//! they were already damaged, no hash can tell). A blob that cannot be read (an I/O error
//! other than its absence) is reported and left alone: the cause may be the disk or the
//! permissions of whoever runs the check.
//!
//! An upload without a partial is not a problem: the server creates the partial with the
//! first bytes, so it is an upload at byte 0 (`upload_status` answers 0 and the client
//! sends everything).
//!
//! The server may be running: every suspicion is checked again before it is reported.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use vault_proto::units::plural;

use diesel::prelude::*;
use serde::Serialize;

use super::purge;
use super::rows::{self, EntryRow, UploadRow, VersionRow};
use super::scrub::{self, Verdict};
use super::{MaintenanceError, MaintenanceResult};
use crate::blobs::{BlobId, BlobStore, hash};
use crate::db::schema::{chunks, entries, namespaces, trash, uploads, version_chunks, versions};
use crate::db::{self, DbConn, DbError};

/// One disagreement between the database and the blob store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    MissingBlob {
        owner: String,
        entry_id: i64,
        path: String,
        version: i64,
        blob_id: String,
    },
    SizeMismatch {
        owner: String,
        entry_id: i64,
        path: String,
        version: i64,
        blob_id: String,
        expected: i64,
        actual: u64,
    },
    /// The blob has the right size but not the bytes stored (`read_data`).
    HashMismatch {
        owner: String,
        entry_id: i64,
        path: String,
        version: i64,
        blob_id: String,
    },
    /// The blob could not be read (`read_data`).
    UnreadableBlob {
        owner: String,
        entry_id: i64,
        path: String,
        version: i64,
        blob_id: String,
        error: String,
    },
    /// The version was stored before blob hashes were recorded (`read_data`).
    NoRecordedHash {
        owner: String,
        entry_id: i64,
        path: String,
        version: i64,
        blob_id: String,
    },
    /// A chunk (format 2) whose blob is missing, of the wrong size or (`read_data`) not the
    /// bytes stored; `used_by` are the versions that cannot be read without it. The
    /// repair deletes those versions (as for a damaged version's blob) and then the chunk,
    /// so that the next upload of the same bytes stores it again.
    DamagedChunk {
        owner: String,
        blob_id: String,
        reason: String,
        used_by: Vec<VersionRef>,
    },
    OrphanBlob {
        blob_id: String,
        size: u64,
    },
    OrphanPartial {
        blob_id: String,
        size: u64,
    },
    DanglingUpload {
        owner: String,
        upload_id: i64,
        blob_id: String,
        reason: String,
    },
    UsedBytes {
        owner: String,
        namespace_id: i64,
        recorded: i64,
        actual: i64,
    },
    MissingParent {
        owner: String,
        entry_id: i64,
        path: String,
        parent: String,
    },
    MissingCurrentVersion {
        owner: String,
        entry_id: i64,
        path: String,
        current_version: i64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingBlob {
                owner,
                entry_id,
                version,
                blob_id,
                ..
            } => write!(
                f,
                "{owner}: file #{entry_id} version {version}: blob {blob_id} is missing"
            ),
            Problem::SizeMismatch {
                owner,
                entry_id,
                version,
                blob_id,
                expected,
                actual,
                ..
            } => write!(
                f,
                "{owner}: file #{entry_id} version {version}: blob {blob_id} holds {actual} \
                 bytes, the database says {expected}"
            ),
            Problem::HashMismatch {
                owner,
                entry_id,
                version,
                blob_id,
                ..
            } => write!(
                f,
                "{owner}: file #{entry_id} version {version}: blob {blob_id} does not hold the \
                 bytes stored (its BLAKE3 differs)"
            ),
            Problem::UnreadableBlob {
                owner,
                entry_id,
                version,
                blob_id,
                error,
                ..
            } => write!(
                f,
                "{owner}: file #{entry_id} version {version}: blob {blob_id} cannot be read: \
                 {error}"
            ),
            Problem::NoRecordedHash {
                owner,
                entry_id,
                version,
                blob_id,
                ..
            } => write!(
                f,
                "{owner}: file #{entry_id} version {version}: blob {blob_id} has no recorded \
                 hash (stored before hashes were recorded)"
            ),
            Problem::DamagedChunk {
                owner,
                blob_id,
                reason,
                used_by,
            } => {
                write!(f, "{owner}: chunk blob {blob_id} {reason}; ")?;
                if used_by.is_empty() {
                    return write!(f, "no version uses it");
                }
                let named: Vec<String> = used_by
                    .iter()
                    .map(|v| format!("file #{} version {}", v.entry_id, v.version))
                    .collect();
                write!(f, "it is part of {}", named.join(", "))
            }
            Problem::OrphanBlob { blob_id, size } => {
                write!(f, "blob {blob_id} ({size} bytes) belongs to no version")
            }
            Problem::OrphanPartial { blob_id, size } => {
                write!(
                    f,
                    "partial blob {blob_id} ({size} bytes) belongs to no upload"
                )
            }
            Problem::DanglingUpload {
                owner,
                upload_id,
                reason,
                ..
            } => write!(f, "{owner}: upload {upload_id}: {reason}"),
            Problem::UsedBytes {
                owner,
                recorded,
                actual,
                ..
            } => write!(
                f,
                "{owner}: used_bytes is {recorded} but its versions and chunks hold {actual} bytes"
            ),
            Problem::MissingParent {
                owner,
                entry_id,
                parent,
                ..
            } => write!(
                f,
                "{owner}: entry #{entry_id}: its parent {parent} is not a live directory"
            ),
            Problem::MissingCurrentVersion {
                owner,
                entry_id,
                current_version,
                ..
            } => write!(
                f,
                "{owner}: file #{entry_id}: its current version {current_version} does not exist"
            ),
        }
    }
}

/// A version named in a finding about something it depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionRef {
    pub entry_id: i64,
    /// The encrypted path, as in the other findings.
    pub path: String,
    pub version: i64,
}

/// A problem and, after a repair, what was done about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    #[serde(flatten)]
    pub problem: Problem,
    /// What the repair did; `None` when not repaired.
    pub repaired: Option<String>,
}

/// How much was looked at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Checked {
    pub namespaces: u64,
    pub entries: u64,
    pub versions: u64,
    pub uploads: u64,
    pub blobs: u64,
    pub partials: u64,
    /// Chunks of format 2 (each a blob of its own).
    pub chunks: u64,
    /// Blobs read back and compared with their recorded hash (`read_data`).
    pub blobs_read: u64,
    pub bytes_read: u64,
}

/// The result of a check (and repair).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FsckReport {
    pub checked: Checked,
    pub findings: Vec<Finding>,
    /// Plain sentences naming each file that lost data in the repair.
    pub lost: Vec<String>,
    /// Repairs that failed.
    pub errors: Vec<String>,
}

impl FsckReport {
    /// No problem found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Problems found and not repaired (all of them without `repair`), plus failures.
    pub fn unrepaired(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.repaired.is_none())
            .count()
            + self.errors.len()
    }
}

/// What an fsck run does besides its checks of sizes and rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsckOptions {
    /// Fix what can be fixed without guessing.
    pub repair: bool,
    /// Read every version's blob and compare it with its recorded BLAKE3.
    pub read_data: bool,
}

/// Checks the database against the blob store; with `repair`, fixes what it safely can.
pub fn fsck(
    conn: &mut DbConn,
    store: &dyn BlobStore,
    repair: bool,
    now: i64,
) -> MaintenanceResult<FsckReport> {
    let options = FsckOptions {
        repair,
        read_data: false,
    };
    fsck_with(conn, store, options, now)
}

/// [`fsck`] with the blobs' contents read too when `options.read_data`.
pub fn fsck_with(
    conn: &mut DbConn,
    store: &dyn BlobStore,
    options: FsckOptions,
    now: i64,
) -> MaintenanceResult<FsckReport> {
    let mut run = Run {
        conn,
        store,
        repair: options.repair,
        read_data: options.read_data,
        now,
        labels: HashMap::new(),
        report: FsckReport::default(),
    };
    run.labels = labels(run.conn)?;
    run.report.checked.namespaces = run.labels.len() as u64;
    run.check()?;
    Ok(run.report)
}

/// "user alice" for every namespace.
fn labels(conn: &mut DbConn) -> MaintenanceResult<HashMap<i64, String>> {
    let ids: Vec<i64> = namespaces::table.select(namespaces::id).load(conn)?;
    let mut out = HashMap::new();
    for ns in ids {
        out.insert(ns, rows::namespace_label(conn, ns)?);
    }
    Ok(out)
}

struct Run<'a> {
    conn: &'a mut DbConn,
    store: &'a dyn BlobStore,
    repair: bool,
    read_data: bool,
    now: i64,
    labels: HashMap<i64, String>,
    report: FsckReport,
}

impl Run<'_> {
    fn owner(&self, ns: i64) -> String {
        self.labels
            .get(&ns)
            .cloned()
            .unwrap_or_else(|| format!("namespace {ns}"))
    }

    fn push(&mut self, problem: Problem, repaired: Option<String>) {
        self.report.findings.push(Finding { problem, repaired });
    }

    fn check(&mut self) -> MaintenanceResult<()> {
        // Read order matters (see the module doc of `maintenance`): entries and versions
        // before the listing, references and uploads after it.
        let entries: HashMap<i64, EntryRow> = entries::table
            .select(EntryRow::as_select())
            .load(self.conn)?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        let versions: Vec<VersionRow> = versions::table
            .select(VersionRow::as_select())
            .load(self.conn)?;
        let chunks = db::files::chunks::all(self.conn)?;
        let blobs = self
            .store
            .list()
            .map_err(|e| MaintenanceError::io("cannot list the blob store", e))?;
        let partials = self
            .store
            .list_partials()
            .map_err(|e| MaintenanceError::io("cannot list partial blobs", e))?;
        let referenced = rows::referenced_blobs(self.conn)?;
        let uploads: Vec<UploadRow> = uploads::table
            .select(UploadRow::as_select())
            .load(self.conn)?;
        let checked = &mut self.report.checked;
        checked.entries = entries.len() as u64;
        checked.versions = versions.len() as u64;
        checked.blobs = blobs.len() as u64;
        checked.partials = partials.len() as u64;
        checked.uploads = uploads.len() as u64;

        let sizes: HashMap<&str, u64> = blobs.iter().map(|b| (b.id.as_str(), b.size)).collect();
        self.check_versions(&entries, &versions, &sizes)?;
        self.check_current_versions(&entries, &versions)?;
        self.check_chunks(&entries, &chunks, &sizes)?;
        self.check_uploads(&uploads)?;
        for blob in blobs.iter().filter(|b| !referenced.contains(b.id.as_str())) {
            let repaired = self.queue_orphan(&blob.id)?;
            self.push(
                Problem::OrphanBlob {
                    blob_id: blob.id.to_string(),
                    size: blob.size,
                },
                repaired,
            );
        }
        let uploading: HashSet<&str> = uploads.iter().map(|u| u.blob_id.as_str()).collect();
        for partial in partials
            .iter()
            .filter(|p| !uploading.contains(p.id.as_str()))
        {
            let repaired = if self.repair {
                match self.store.remove_partial(&partial.id) {
                    Ok(()) => Some("removed".to_string()),
                    Err(e) => {
                        self.report
                            .errors
                            .push(format!("cannot remove partial blob {}: {e}", partial.id));
                        None
                    }
                }
            } else {
                None
            };
            self.push(
                Problem::OrphanPartial {
                    blob_id: partial.id.to_string(),
                    size: partial.size,
                },
                repaired,
            );
        }
        self.check_parents(&entries)?;
        self.check_used_bytes()?;
        Ok(())
    }

    /// Versions whose blob is missing or of the wrong size, and with `read_data` those
    /// whose bytes changed; the repair deletes them. With `read_data` also versions
    /// without a recorded hash (the repair records it) and blobs that cannot be read.
    fn check_versions(
        &mut self,
        entries: &HashMap<i64, EntryRow>,
        versions: &[VersionRow],
        sizes: &HashMap<&str, u64>,
    ) -> MaintenanceResult<()> {
        let mut broken: BTreeMap<i64, Vec<(VersionRow, Verdict)>> = BTreeMap::new();
        let mut unhashed = Vec::new();
        let mut unreadable = Vec::new();
        for v in versions {
            let listed = sizes.get(v.blob_id.as_str()).copied();
            let verdict = if listed == u64::try_from(v.sealed_size).ok() {
                if !self.read_data {
                    continue;
                }
                match scrub::check_blob(self.store, v, &mut |_| Ok(())) {
                    Ok((verdict, read)) => {
                        self.report.checked.blobs_read += 1;
                        self.report.checked.bytes_read += read;
                        verdict
                    }
                    Err(e) => {
                        unreadable.push((v.clone(), e.to_string()));
                        continue;
                    }
                }
            } else {
                // Check again: the listing may have raced a change.
                let Some(id) = rows::blob_id(&v.blob_id) else {
                    broken
                        .entry(v.entry_id)
                        .or_default()
                        .push((v.clone(), Verdict::Missing));
                    continue;
                };
                let actual = self
                    .store
                    .size(&id)
                    .map_err(|e| MaintenanceError::io(format!("cannot stat blob {id}"), e))?;
                match actual {
                    None => Verdict::Missing,
                    Some(a) if Some(a) == u64::try_from(v.sealed_size).ok() => continue,
                    Some(a) => Verdict::Size(a),
                }
            };
            if verdict == Verdict::Intact {
                continue;
            }
            // Check again: the version may have gone meanwhile (a prune, trash empty).
            let still: i64 = versions::table.find(v.id).count().get_result(self.conn)?;
            if still == 0 {
                continue;
            }
            match verdict {
                Verdict::Unrecorded(hash) => unhashed.push((v.clone(), hash)),
                damage => broken
                    .entry(v.entry_id)
                    .or_default()
                    .push((v.clone(), damage)),
            }
        }
        let place = |entry_id: i64| {
            let entry = entries.get(&entry_id);
            (
                entry.map_or(0, |e| e.namespace_id),
                entry.map(|e| e.path.clone()).unwrap_or_default(),
            )
        };
        for (entry_id, bad) in broken {
            let (ns, path) = place(entry_id);
            let repaired = if self.repair {
                let doomed: Vec<VersionRow> = bad.iter().map(|(v, _)| v.clone()).collect();
                // A damaged blob stays on disk for the grace period, for inspection.
                let present: Vec<String> = bad
                    .iter()
                    .filter(|(_, verdict)| *verdict != Verdict::Missing)
                    .map(|(v, _)| v.blob_id.clone())
                    .collect();
                Some(self.drop_versions(entry_id, &doomed, &present)?)
            } else {
                None
            };
            for (v, verdict) in bad {
                let owner = self.owner(ns);
                let (path, version, blob_id) = (path.clone(), v.version, v.blob_id);
                let problem = match verdict {
                    Verdict::Size(actual) => Problem::SizeMismatch {
                        owner,
                        entry_id,
                        path,
                        version,
                        blob_id,
                        expected: v.sealed_size,
                        actual,
                    },
                    Verdict::Changed => Problem::HashMismatch {
                        owner,
                        entry_id,
                        path,
                        version,
                        blob_id,
                    },
                    _ => Problem::MissingBlob {
                        owner,
                        entry_id,
                        path,
                        version,
                        blob_id,
                    },
                };
                self.push(problem, repaired.clone());
            }
        }
        for (v, hash) in unhashed {
            let (ns, path) = place(v.entry_id);
            let repaired = if self.repair {
                rows::record_blob_hash(self.conn, v.id, &hash)?;
                Some("recorded the BLAKE3 of its bytes as they are now".to_string())
            } else {
                None
            };
            self.push(
                Problem::NoRecordedHash {
                    owner: self.owner(ns),
                    entry_id: v.entry_id,
                    path,
                    version: v.version,
                    blob_id: v.blob_id,
                },
                repaired,
            );
        }
        for (v, error) in unreadable {
            let (ns, path) = place(v.entry_id);
            self.push(
                Problem::UnreadableBlob {
                    owner: self.owner(ns),
                    entry_id: v.entry_id,
                    path,
                    version: v.version,
                    blob_id: v.blob_id,
                    error,
                },
                None,
            );
        }
        Ok(())
    }

    /// Deletes unreadable versions of one entry and moves its current version to the
    /// newest readable one (or deletes the entry when none is left).
    /// Deletes the versions `doomed` of one entry, queueing the blobs of theirs that are
    /// `present` for gc; the file falls back to its newest remaining version, or goes.
    fn drop_versions(
        &mut self,
        entry_id: i64,
        doomed: &[VersionRow],
        present: &[String],
    ) -> MaintenanceResult<String> {
        let now = self.now;
        let ids: Vec<i64> = doomed.iter().map(|v| v.id).collect();
        let numbers: Vec<String> = doomed.iter().map(|v| v.version.to_string()).collect();
        let outcome = db::transaction(self.conn, |c| {
            let bytes: i64 = versions::table
                .filter(versions::id.eq_any(&ids))
                .select(versions::sealed_size)
                .load::<i64>(c)?
                .into_iter()
                .sum();
            rows::queue_deleted(c, present, now)?;
            diesel::delete(versions::table.filter(versions::id.eq_any(&ids))).execute(c)?;
            settle_entry(c, entry_id, bytes, now)
        })?;
        let versions = if numbers.len() == 1 {
            "version"
        } else {
            "versions"
        };
        let what = format!("{versions} {} deleted", numbers.join(", "));
        Ok(self.lost_sentence(
            entry_id,
            &outcome,
            &format!("lost {versions} {}", numbers.join(", ")),
            what,
        ))
    }

    fn lost_sentence(
        &mut self,
        entry_id: i64,
        outcome: &Settled,
        lost: &str,
        what: String,
    ) -> String {
        let owner = self.owner(outcome.namespace_id);
        let tail = match outcome.current {
            Some(v) => format!("now at version {v}"),
            None => "no readable version was left, so the file was removed".to_string(),
        };
        self.report.lost.push(format!(
            "{owner}: file #{entry_id} (encrypted path {}) {lost}; {tail}",
            outcome.path
        ));
        format!("{what}; {tail}")
    }

    /// Entries whose current version names no version row.
    fn check_current_versions(
        &mut self,
        entries: &HashMap<i64, EntryRow>,
        versions: &[VersionRow],
    ) -> MaintenanceResult<()> {
        let present: HashSet<(i64, i64)> =
            versions.iter().map(|v| (v.entry_id, v.version)).collect();
        let mut suspects: Vec<&EntryRow> = entries
            .values()
            .filter(|e| {
                e.current_version
                    .is_some_and(|v| !present.contains(&(e.id, v)))
            })
            .collect();
        suspects.sort_by_key(|e| e.id);
        for e in suspects {
            // Check again: trash empty or a repair above may have changed it.
            let Some(now_entry) = rows::entry(self.conn, e.id)? else {
                continue;
            };
            let Some(current) = now_entry.current_version else {
                continue;
            };
            let exists: i64 = versions::table
                .filter(versions::entry_id.eq(e.id))
                .filter(versions::version.eq(current))
                .count()
                .get_result(self.conn)?;
            if exists > 0 {
                continue;
            }
            let repaired = if self.repair {
                let now = self.now;
                let outcome = db::transaction(self.conn, |c| settle_entry(c, e.id, 0, now))?;
                let lost = format!("had version {current} as its current one, which did not exist");
                Some(self.lost_sentence(e.id, &outcome, &lost, "current version moved".into()))
            } else {
                None
            };
            self.push(
                Problem::MissingCurrentVersion {
                    owner: self.owner(e.namespace_id),
                    entry_id: e.id,
                    path: e.path.clone(),
                    current_version: current,
                },
                repaired,
            );
        }
        Ok(())
    }

    /// Uploads that can never commit: their file entry is gone, or their partial holds
    /// more than the declared size.
    fn check_uploads(&mut self, uploads: &[UploadRow]) -> MaintenanceResult<()> {
        for u in uploads {
            let Some(id) = rows::blob_id(&u.blob_id) else {
                continue;
            };
            let held = self
                .store
                .partial_len(&id)
                .map_err(|e| MaintenanceError::io(format!("cannot stat partial blob {id}"), e))?;
            let reason = if rows::entry(self.conn, u.entry_id)?.is_none() {
                format!("its file entry #{} does not exist", u.entry_id)
            } else if let Some(len) = held.filter(|len| *len > u.sealed_size.max(0) as u64) {
                format!(
                    "its partial blob {id} holds {len} bytes, more than the {} declared",
                    u.sealed_size
                )
            } else {
                continue;
            };
            let still: i64 = uploads::table.find(u.id).count().get_result(self.conn)?;
            if still == 0 {
                continue;
            }
            let repaired = if self.repair {
                let purged = db::transaction(self.conn, |c| {
                    let purged = purge::drop_uploads(c, &[u.id])?;
                    purge::delete_if_abandoned(c, u.entry_id)?;
                    Ok::<_, DbError>(purged)
                })?;
                self.report
                    .errors
                    .extend(purged.remove_partials(self.store));
                Some("upload dropped; the client starts it again".to_string())
            } else {
                None
            };
            self.push(
                Problem::DanglingUpload {
                    owner: self.owner(u.namespace_id),
                    upload_id: u.id,
                    blob_id: u.blob_id.clone(),
                    reason,
                },
                repaired,
            );
        }
        Ok(())
    }

    /// Queues an orphan blob for gc (repair only).
    fn queue_orphan(&mut self, id: &BlobId) -> MaintenanceResult<Option<String>> {
        if !self.repair {
            return Ok(None);
        }
        rows::queue_deleted(self.conn, &[id.to_string()], self.now)?;
        Ok(Some(
            "queued for removal by gc after the grace period".to_string(),
        ))
    }

    /// Live entries (other than unfinished first uploads) whose parent is not a live
    /// directory; the repair creates the missing directories.
    fn check_parents(&mut self, entries: &HashMap<i64, EntryRow>) -> MaintenanceResult<()> {
        let live = |e: &&EntryRow| e.trash_id.is_none();
        let dirs: HashSet<(i64, &str)> = entries
            .values()
            .filter(live)
            .filter(|e| e.kind == "dir")
            .map(|e| (e.namespace_id, e.path.as_str()))
            .collect();
        let mut orphans: Vec<&EntryRow> = entries
            .values()
            .filter(live)
            .filter(|e| !(e.kind == "file" && e.current_version.is_none()))
            .filter(|e| {
                !e.parent.is_empty() && !dirs.contains(&(e.namespace_id, e.parent.as_str()))
            })
            .collect();
        orphans.sort_by_key(|e| e.id);
        for e in orphans {
            let repaired = if self.repair {
                let now = self.now;
                let (ns, parent) = (e.namespace_id, e.parent.clone());
                match db::transaction(self.conn, |c| create_dirs(c, ns, &parent, now))? {
                    Ok(n) if n > 0 => Some(format!(
                        "created {}",
                        plural(n, "missing directory", "missing directories")
                    )),
                    Ok(_) => Some("created by an earlier repair".to_string()),
                    Err(blocker) => {
                        self.report.errors.push(format!(
                            "{}: entry #{}: cannot create its parent: {blocker} is a file",
                            self.owner(ns),
                            e.id
                        ));
                        None
                    }
                }
            } else {
                None
            };
            self.push(
                Problem::MissingParent {
                    owner: self.owner(e.namespace_id),
                    entry_id: e.id,
                    path: e.path.clone(),
                    parent: e.parent.clone(),
                },
                repaired,
            );
        }
        Ok(())
    }

    /// Chunks whose blob is missing or of the wrong size, and with `read_data` those whose
    /// bytes changed, each with the versions that use it; the repair deletes those
    /// versions and then the chunk ([`Run::drop_chunk`]).
    fn check_chunks(
        &mut self,
        entries: &HashMap<i64, EntryRow>,
        chunks: &[db::files::chunks::Chunk],
        sizes: &HashMap<&str, u64>,
    ) -> MaintenanceResult<()> {
        self.report.checked.chunks = chunks.len() as u64;
        for chunk in chunks {
            let mut unreadable = false;
            let expected = u64::try_from(chunk.sealed_size).unwrap_or(0);
            let id = rows::blob_id(&chunk.blob_id);
            let listed = match sizes.get(chunk.blob_id.as_str()) {
                Some(size) => Some(*size),
                // Check again: the listing may have raced a change.
                None => match &id {
                    Some(id) => self
                        .store
                        .size(id)
                        .map_err(|e| MaintenanceError::io(format!("cannot stat blob {id}"), e))?,
                    None => None,
                },
            };
            let reason = match (listed, &id) {
                (None, _) | (_, None) => Some("is missing".to_string()),
                (Some(size), _) if size != expected => {
                    Some(format!("holds {size} bytes, the database says {expected}"))
                }
                (Some(_), Some(id)) if self.read_data => {
                    match hash::of_blob(self.store, id, &mut |_| Ok(())) {
                        Ok(read) => {
                            self.report.checked.blobs_read += 1;
                            self.report.checked.bytes_read += read.len;
                            (read.hash.as_slice() != chunk.blob_blake3.as_slice()).then(|| {
                                "does not hold the bytes stored (its BLAKE3 differs)".to_string()
                            })
                        }
                        Err(e) => {
                            // Perhaps the disk, perhaps who runs the check: reported, and
                            // left alone (as an unreadable version's blob is).
                            unreadable = true;
                            Some(format!("cannot be read: {e}"))
                        }
                    }
                }
                _ => None,
            };
            let Some(reason) = reason else {
                continue;
            };
            // Check again: gc may have removed the chunk meanwhile.
            let Some(users) = self.versions_using(chunk.id)? else {
                continue;
            };
            let used_by = users
                .iter()
                .map(|v| VersionRef {
                    entry_id: v.entry_id,
                    path: entries
                        .get(&v.entry_id)
                        .map(|e| e.path.clone())
                        .unwrap_or_default(),
                    version: v.version,
                })
                .collect();
            let repaired = if self.repair && !unreadable {
                self.drop_chunk(chunk, &users, listed.is_some())?
            } else {
                None
            };
            self.push(
                Problem::DamagedChunk {
                    owner: self.owner(chunk.namespace_id),
                    blob_id: chunk.blob_id.clone(),
                    reason,
                    used_by,
                },
                repaired,
            );
        }
        Ok(())
    }

    /// The versions that use chunk row `chunk`, by file and version; `None` when the chunk
    /// is gone.
    fn versions_using(&mut self, chunk: i64) -> MaintenanceResult<Option<Vec<VersionRow>>> {
        let there: i64 = chunks::table.find(chunk).count().get_result(self.conn)?;
        if there == 0 {
            return Ok(None);
        }
        let ids: Vec<i64> = version_chunks::table
            .filter(version_chunks::chunk.eq(chunk))
            .select(version_chunks::version_id)
            .load(self.conn)?;
        let mut users: Vec<VersionRow> = Vec::with_capacity(ids.len());
        for batch in ids.chunks(rows::CHUNK) {
            users.extend(
                versions::table
                    .filter(versions::id.eq_any(batch))
                    .select(VersionRow::as_select())
                    .load(self.conn)?,
            );
        }
        users.sort_by_key(|v| (v.entry_id, v.version));
        Ok(Some(users))
    }

    /// Repairs a damaged chunk: deletes the versions in `users` (each file falls back to
    /// its newest remaining version, or goes, as for a damaged version's own blob), then,
    /// under the namespace's lock, the chunk itself, its blob queued for gc (kept for the
    /// grace period, for inspection, when `present`) and its bytes off the count. A
    /// version committed with the chunk meanwhile keeps it, and the next run repairs it.
    fn drop_chunk(
        &mut self,
        chunk: &db::files::chunks::Chunk,
        users: &[VersionRow],
        present: bool,
    ) -> MaintenanceResult<Option<String>> {
        let mut by_entry: BTreeMap<i64, Vec<VersionRow>> = BTreeMap::new();
        for v in users {
            by_entry.entry(v.entry_id).or_default().push(v.clone());
        }
        let mut done = Vec::new();
        for (entry_id, doomed) in by_entry {
            // Their own blobs (sealed chunk lists) are intact: they go to gc with them.
            let blobs: Vec<String> = doomed.iter().map(|v| v.blob_id.clone()).collect();
            let what = self.drop_versions(entry_id, &doomed, &blobs)?;
            done.push(format!("file #{entry_id}: {what}"));
        }
        let (row, ns, now) = (chunk.id, chunk.namespace_id, self.now);
        let blob = present.then(|| chunk.blob_id.clone());
        // Some(false): a version committed meanwhile uses it; None: gone meanwhile.
        let dropped = db::transaction(self.conn, |c| {
            match db::files::namespaces::lock(c, ns) {
                Err(DbError::Query(diesel::result::Error::NotFound)) => return Ok(None),
                locked => locked?,
            };
            let Some(sealed_size) = chunks::table
                .find(row)
                .select(chunks::sealed_size)
                .get_result::<i64>(c)
                .optional()?
            else {
                return Ok(None);
            };
            let live: i64 = version_chunks::table
                .inner_join(versions::table.on(versions::id.eq(version_chunks::version_id)))
                .filter(version_chunks::chunk.eq(row))
                .count()
                .get_result(c)?;
            if live > 0 {
                return Ok(Some(false));
            }
            diesel::delete(version_chunks::table.filter(version_chunks::chunk.eq(row)))
                .execute(c)?;
            diesel::delete(chunks::table.find(row)).execute(c)?;
            rows::queue_deleted(c, blob.as_slice(), now)?;
            db::files::namespaces::add_used(c, ns, -sealed_size)?;
            Ok::<_, DbError>(Some(true))
        })?;
        match dropped {
            Some(true) => {
                done.push("chunk deleted: the next upload of its bytes stores it again".into())
            }
            None => done.push("chunk deleted meanwhile".into()),
            Some(false) => {
                self.report.errors.push(format!(
                    "chunk blob {} was used by a new version while it was repaired; run the \
                     repair again",
                    chunk.blob_id
                ));
                return Ok(None);
            }
        }
        Ok(Some(done.join("; ")))
    }

    /// Compares each namespace's `used_bytes` with the sum of its versions, holding the
    /// namespace row so a concurrent commit cannot slip in between the two reads.
    fn check_used_bytes(&mut self) -> MaintenanceResult<()> {
        let ids: Vec<i64> = namespaces::table.select(namespaces::id).load(self.conn)?;
        for ns in ids {
            let repair = self.repair;
            let mismatch = db::transaction(self.conn, |c| {
                diesel::update(namespaces::table.find(ns))
                    .set(namespaces::used_bytes.eq(namespaces::used_bytes))
                    .execute(c)?;
                let recorded: i64 = namespaces::table
                    .find(ns)
                    .select(namespaces::used_bytes)
                    .first(c)?;
                let actual = sum_of_stored(c, ns)?;
                if recorded != actual && repair {
                    diesel::update(namespaces::table.find(ns))
                        .set(namespaces::used_bytes.eq(actual))
                        .execute(c)?;
                }
                Ok::<_, DbError>((recorded != actual).then_some((recorded, actual)))
            })?;
            if let Some((recorded, actual)) = mismatch {
                self.push(
                    Problem::UsedBytes {
                        owner: self.owner(ns),
                        namespace_id: ns,
                        recorded,
                        actual,
                    },
                    repair.then(|| format!("set to {actual}")),
                );
            }
        }
        Ok(())
    }
}

/// Ciphertext bytes of every version in a namespace (live and trashed entries) and of
/// every chunk it holds.
fn sum_of_stored(conn: &mut DbConn, ns: i64) -> Result<i64, DbError> {
    let in_ns = entries::table
        .filter(entries::namespace_id.eq(ns))
        .select(entries::id);
    let versions: i64 = versions::table
        .filter(versions::entry_id.eq_any(in_ns))
        .select(versions::sealed_size)
        .load::<i64>(conn)?
        .into_iter()
        .sum();
    let chunks: i64 = crate::db::schema::chunks::table
        .filter(crate::db::schema::chunks::namespace_id.eq(ns))
        .select(crate::db::schema::chunks::sealed_size)
        .load::<i64>(conn)?
        .into_iter()
        .sum();
    Ok(versions + chunks)
}

/// An entry after its versions changed.
struct Settled {
    namespace_id: i64,
    path: String,
    /// The current version now; `None` when the entry was removed.
    current: Option<i64>,
}

/// After versions of an entry were deleted (`bytes` of them): points `current_version` at
/// the newest remaining version, or hard-deletes the entry when none is left; releases
/// the bytes and bumps the revision.
fn settle_entry(
    conn: &mut DbConn,
    entry_id: i64,
    bytes: i64,
    now: i64,
) -> Result<Settled, DbError> {
    let Some(entry) = rows::entry(conn, entry_id)? else {
        return Ok(Settled {
            namespace_id: 0,
            path: String::new(),
            current: None,
        });
    };
    let newest = rows::versions_of(conn, entry_id)?
        .first()
        .map(|v| v.version);
    let ns = entry.namespace_id;
    if let Some(item) = entry.trash_id {
        diesel::update(trash::table.find(item))
            .set(trash::sealed_bytes.eq(trash::sealed_bytes - bytes))
            .execute(conn)?;
    }
    match newest {
        Some(v) => {
            diesel::update(entries::table.find(entry_id))
                .set(entries::current_version.eq(v))
                .execute(conn)?;
            let revision = rows::release(conn, ns, bytes, false)?;
            rows::touch_entry(conn, entry_id, revision, now)?;
        }
        None => {
            let purged = purge::purge_entries(conn, &[entry_id], now)?;
            rows::release(conn, ns, bytes + purged.bytes, true)?;
            if let Some(item) = entry.trash_id {
                diesel::update(trash::table.find(item))
                    .set(trash::entries.eq(trash::entries - 1))
                    .execute(conn)?;
                diesel::delete(trash::table.find(item).filter(trash::entries.le(0)))
                    .execute(conn)?;
            }
        }
    }
    Ok(Settled {
        namespace_id: ns,
        path: entry.path,
        current: newest,
    })
}

/// Creates `path` and its missing ancestors as live directories. `Err(path)` names an
/// ancestor that is a live file (nothing is created then); `Ok(n)` how many were made.
fn create_dirs(
    conn: &mut DbConn,
    ns: i64,
    path: &str,
    now: i64,
) -> Result<Result<u64, String>, DbError> {
    let mut missing = Vec::new();
    let mut at = path.to_string();
    while !at.is_empty() {
        let kind: Option<String> = entries::table
            .filter(entries::namespace_id.eq(ns))
            .filter(entries::path.eq(&at))
            .filter(entries::trash_id.is_null())
            .select(entries::kind)
            .first(conn)
            .optional()?;
        match kind.as_deref() {
            Some("dir") => break,
            Some(_) => return Ok(Err(at)),
            None => missing.push(at.clone()),
        }
        at = at.rsplit_once('/').map_or("", |(p, _)| p).to_string();
    }
    if missing.is_empty() {
        return Ok(Ok(0));
    }
    let revision = rows::bump_revision(conn, ns)?;
    for dir in &missing {
        let parent = dir.rsplit_once('/').map_or("", |(p, _)| p);
        diesel::insert_into(entries::table)
            .values((
                entries::namespace_id.eq(ns),
                entries::path.eq(dir),
                entries::parent.eq(parent),
                entries::kind.eq("dir"),
                entries::revision.eq(revision),
                entries::created_at.eq(now),
                entries::updated_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(Ok(missing.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn kinds(report: &FsckReport) -> Vec<&'static str> {
        let mut k: Vec<&'static str> = report
            .findings
            .iter()
            .map(|f| match f.problem {
                Problem::MissingBlob { .. } => "missing_blob",
                Problem::SizeMismatch { .. } => "size_mismatch",
                Problem::HashMismatch { .. } => "hash_mismatch",
                Problem::UnreadableBlob { .. } => "unreadable_blob",
                Problem::NoRecordedHash { .. } => "no_recorded_hash",
                Problem::DamagedChunk { .. } => "damaged_chunk",
                Problem::OrphanBlob { .. } => "orphan_blob",
                Problem::OrphanPartial { .. } => "orphan_partial",
                Problem::DanglingUpload { .. } => "dangling_upload",
                Problem::UsedBytes { .. } => "used_bytes",
                Problem::MissingParent { .. } => "missing_parent",
                Problem::MissingCurrentVersion { .. } => "missing_current_version",
            })
            .collect();
        k.sort_unstable();
        k
    }

    const READ_DATA: FsckOptions = FsckOptions {
        repair: false,
        read_data: true,
    };
    const REPAIR_DATA: FsckOptions = FsckOptions {
        repair: true,
        read_data: true,
    };

    /// Changes the bytes of blob `id` on disk behind the store's back.
    fn damage(t: &Fixture, id: &BlobId, change: impl FnOnce(&mut Vec<u8>)) -> TestResult {
        let path = t.blob_path(id);
        let mut bytes = std::fs::read(&path)?;
        change(&mut bytes);
        std::fs::write(&path, bytes)?;
        Ok(())
    }

    /// Swaps the files of two blobs.
    fn swap(t: &Fixture, a: &BlobId, b: &BlobId) -> TestResult {
        let (pa, pb) = (t.blob_path(a), t.blob_path(b));
        let aside = t.dir.path().join("aside");
        std::fs::rename(&pa, &aside)?;
        std::fs::rename(&pb, &pa)?;
        std::fs::rename(&aside, &pb)?;
        Ok(())
    }

    fn lost_of(report: &FsckReport, entry: i64) -> Option<&String> {
        report
            .lost
            .iter()
            .find(|l| l.contains(&format!("file #{entry} ")))
    }

    #[test]
    fn an_intact_store_read_back_is_clean() -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.namespace(c, 1)?;
        let f = t.entry(c, ns, "f", Some(2))?;
        t.version(c, f, 1, 1000)?;
        t.version(c, f, 2, 3000)?;
        let g = t.entry(c, ns, "g", Some(1))?;
        t.version(c, g, 1, 3000)?;
        let empty = t.entry(c, ns, "empty", Some(1))?;
        t.version(c, empty, 1, 0)?;
        t.trashed_file(c, ns, "old", NOW, 500)?;
        t.set_used(c, ns, 7500)?;
        let report = fsck_with(c, &t.store, READ_DATA, NOW)?;
        assert!(report.is_clean(), "{:#?}", report.findings);
        assert_eq!(report.checked.blobs_read, 5);
        assert_eq!(report.checked.bytes_read, 7500);
        // Without read_data nothing is read.
        assert_eq!(fsck(c, &t.store, false, NOW)?.checked.blobs_read, 0);
        Ok(())
    }

    #[test]
    fn read_data_finds_a_flipped_byte_a_truncation_and_a_swap_and_repair_treats_them_as_lost()
    -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.namespace(c, 1)?;
        // One byte of the current version flipped: the file falls back to version 1.
        let flipped = t.entry(c, ns, "flipped", Some(2))?;
        t.version(c, flipped, 1, 2000)?;
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let hash = Some(crate::blobs::hash::of_bytes(&bytes));
        let (_, flip) = t.version_of(c, flipped, 2, &bytes, hash)?;
        damage(&t, &flip, |b| b[4321] ^= 0x01)?;
        // A truncated blob: its only version goes, and the file with it.
        let short = t.entry(c, ns, "short", Some(1))?;
        let (_, cut) = t.version(c, short, 1, 4000)?;
        damage(&t, &cut, |b| b.truncate(3999))?;
        // Two blobs of equal size swapped: each holds the other's bytes.
        let a = t.entry(c, ns, "a", Some(1))?;
        let b = t.entry(c, ns, "b", Some(1))?;
        let of = crate::blobs::hash::of_bytes;
        let (_, blob_a) = t.version_of(c, a, 1, &[1; 700], Some(of(&[1; 700])))?;
        let (_, blob_b) = t.version_of(c, b, 1, &[2; 700], Some(of(&[2; 700])))?;
        swap(&t, &blob_a, &blob_b)?;
        // An intact file stays as it is.
        let intact = t.entry(c, ns, "intact", Some(1))?;
        t.version(c, intact, 1, 100)?;
        t.set_used(c, ns, 2000 + 5000 + 4000 + 1400 + 100)?;

        // Sizes alone see the truncation only.
        assert_eq!(
            kinds(&fsck(c, &t.store, false, NOW)?),
            vec!["size_mismatch"]
        );
        let report = fsck_with(c, &t.store, READ_DATA, NOW)?;
        assert_eq!(
            kinds(&report),
            vec![
                "hash_mismatch",
                "hash_mismatch",
                "hash_mismatch",
                "size_mismatch"
            ]
        );
        assert_eq!(report.unrepaired(), 4);
        let text: Vec<String> = report
            .findings
            .iter()
            .map(|f| f.problem.to_string())
            .collect();
        for (entry, version) in [(flipped, 2), (a, 1), (b, 1)] {
            let expected = format!("namespace {ns}: file #{entry} version {version}: blob");
            assert!(
                text.iter()
                    .any(|t| t.starts_with(&expected) && t.contains("BLAKE3 differs")),
                "{text:#?}"
            );
        }
        // A check changes nothing.
        assert_eq!(fsck_with(c, &t.store, READ_DATA, NOW)?.findings.len(), 4);

        let repaired = fsck_with(c, &t.store, REPAIR_DATA, NOW)?;
        assert_eq!(repaired.unrepaired(), 0, "{repaired:#?}");
        assert_eq!(repaired.lost.len(), 4, "{:#?}", repaired.lost);
        let lost = lost_of(&repaired, flipped).ok_or("flipped lost nothing")?;
        assert!(lost.contains("lost version 2; now at version 1"), "{lost}");
        for gone in [short, a, b] {
            let lost = lost_of(&repaired, gone).ok_or("a damaged file lost nothing")?;
            assert!(lost.contains("was removed"), "{lost}");
            assert!(rows::entry(c, gone)?.is_none());
        }
        assert_eq!(
            rows::entry(c, flipped)?.and_then(|e| e.current_version),
            Some(1)
        );
        assert!(rows::entry(c, intact)?.is_some());
        assert_eq!(t.used(c, ns)?, 2000 + 100);
        // The damaged blobs wait in deleted_blobs for gc, for inspection.
        let referenced = rows::referenced_blobs(c)?;
        for blob in [&flip, &cut, &blob_a, &blob_b] {
            assert!(t.store.size(blob)?.is_some());
            assert!(referenced.contains(blob.as_str()));
        }
        let after = fsck_with(c, &t.store, READ_DATA, NOW)?;
        assert!(after.is_clean(), "{:#?}", after.findings);
        Ok(())
    }

    #[test]
    fn a_damaged_chunk_takes_the_versions_that_use_it_and_is_stored_again_by_the_next_upload()
    -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.namespace(c, 1)?;
        // img: version 1 uses the shared chunk; version 2 the shared one and its own.
        let img = t.entry(c, ns, "img", Some(2))?;
        let (v1, _) = t.version(c, img, 1, 100)?;
        let (v2, _) = t.version(c, img, 2, 100)?;
        let (shared, _) = t.chunk(c, ns, &[1; 3000])?;
        let (own, own_blob) = t.chunk(c, ns, &[2; 2000])?;
        t.uses(c, v1, shared)?;
        t.uses(c, v2, shared)?;
        t.uses(c, v2, own)?;
        // other: one version, whose only chunk goes missing.
        let other = t.entry(c, ns, "other", Some(1))?;
        let (v3, _) = t.version(c, other, 1, 100)?;
        let (lost, lost_blob) = t.chunk(c, ns, &[3; 1000])?;
        t.uses(c, v3, lost)?;
        t.set_used(c, ns, 300 + 3000 + 2000 + 1000)?;
        assert!(fsck_with(c, &t.store, READ_DATA, NOW)?.is_clean());

        damage(&t, &own_blob, |b| b[1999] ^= 0x40)?;
        t.store.remove(&lost_blob)?;
        // Sizes alone see the missing one; reading sees both.
        assert_eq!(
            kinds(&fsck(c, &t.store, false, NOW)?),
            vec!["damaged_chunk"]
        );
        let report = fsck_with(c, &t.store, READ_DATA, NOW)?;
        assert_eq!(kinds(&report), vec!["damaged_chunk", "damaged_chunk"]);
        let text: Vec<String> = report
            .findings
            .iter()
            .map(|f| f.problem.to_string())
            .collect();
        assert!(
            text.contains(&format!(
                "namespace {ns}: chunk blob {own_blob} does not hold the bytes stored (its \
                 BLAKE3 differs); it is part of file #{img} version 2"
            )),
            "{text:#?}"
        );
        assert!(
            text.contains(&format!(
                "namespace {ns}: chunk blob {lost_blob} is missing; it is part of file \
                 #{other} version 1"
            )),
            "{text:#?}"
        );
        // A check changes nothing.
        assert_eq!(fsck_with(c, &t.store, READ_DATA, NOW)?.unrepaired(), 2);

        let repaired = fsck_with(c, &t.store, REPAIR_DATA, NOW)?;
        assert_eq!(repaired.unrepaired(), 0, "{repaired:#?}");
        let back = lost_of(&repaired, img).ok_or("img lost nothing")?;
        assert!(back.contains("lost version 2; now at version 1"), "{back}");
        let gone = lost_of(&repaired, other).ok_or("other lost nothing")?;
        assert!(gone.contains("was removed"), "{gone}");
        assert!(rows::entry(c, other)?.is_none());
        // The damaged chunks are gone (the shared one stays), their bytes off the count,
        // and the one still on disk waits for gc, for inspection.
        let left: Vec<i64> = chunks::table.select(chunks::id).load(c)?;
        assert_eq!(left, vec![shared]);
        assert_eq!(t.used(c, ns)?, 100 + 3000);
        assert!(rows::referenced_blobs(c)?.contains(own_blob.as_str()));
        assert!(fsck_with(c, &t.store, READ_DATA, NOW)?.is_clean());
        // The space no longer holds it: an upload of the same bytes is asked for them.
        let own_id = *blake3::hash(own_blob.as_str().as_bytes()).as_bytes();
        let held = db::files::chunks::held(c, ns, &[own_id.to_vec()], NOW)?;
        assert!(held.is_empty());
        Ok(())
    }

    #[test]
    fn a_version_without_a_recorded_hash_is_reported_and_recorded_only_by_repair() -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.namespace(c, 1)?;
        let old = t.entry(c, ns, "old", Some(1))?;
        let (_, blob) = t.version_of(c, old, 1, &[9; 300], None)?;
        t.set_used(c, ns, 300)?;
        assert!(fsck(c, &t.store, false, NOW)?.is_clean());
        let report = fsck_with(c, &t.store, READ_DATA, NOW)?;
        assert_eq!(kinds(&report), vec!["no_recorded_hash"]);
        assert_eq!(report.unrepaired(), 1);
        assert_eq!(fsck_with(c, &t.store, READ_DATA, NOW)?.unrepaired(), 1);

        let repaired = fsck_with(c, &t.store, REPAIR_DATA, NOW)?;
        assert_eq!(kinds(&repaired), vec!["no_recorded_hash"]);
        assert_eq!(repaired.unrepaired(), 0);
        assert!(repaired.lost.is_empty());
        assert!(rows::entry(c, old)?.is_some());
        assert!(fsck_with(c, &t.store, READ_DATA, NOW)?.is_clean());
        // From then on a change is caught.
        damage(&t, &blob, |b| b[0] = 0)?;
        assert_eq!(
            kinds(&fsck_with(c, &t.store, READ_DATA, NOW)?),
            vec!["hash_mismatch"]
        );
        Ok(())
    }

    /// A blob store whose sealed blobs cannot be read (a failing disk, or a check run by
    /// a user without the right to read them).
    #[derive(Debug)]
    struct Unreadable(crate::blobs::FsBlobStore);

    impl BlobStore for Unreadable {
        fn write_partial(
            &self,
            id: &BlobId,
            offset: u64,
        ) -> std::io::Result<Box<dyn crate::blobs::PartialWriter>> {
            self.0.write_partial(id, offset)
        }
        fn partial_len(&self, id: &BlobId) -> std::io::Result<Option<u64>> {
            self.0.partial_len(id)
        }
        fn truncate_partial(&self, id: &BlobId, len: u64) -> std::io::Result<()> {
            self.0.truncate_partial(id, len)
        }
        fn seal_partial(&self, id: &BlobId) -> std::io::Result<u64> {
            self.0.seal_partial(id)
        }
        fn remove_partial(&self, id: &BlobId) -> std::io::Result<()> {
            self.0.remove_partial(id)
        }
        fn open(&self, _: &BlobId) -> std::io::Result<Box<dyn crate::blobs::BlobReader>> {
            Err(std::io::ErrorKind::PermissionDenied.into())
        }
        fn size(&self, id: &BlobId) -> std::io::Result<Option<u64>> {
            self.0.size(id)
        }
        fn remove(&self, id: &BlobId) -> std::io::Result<()> {
            self.0.remove(id)
        }
        fn list(&self) -> std::io::Result<Vec<crate::blobs::StoredBlob>> {
            self.0.list()
        }
        fn list_partials(&self) -> std::io::Result<Vec<crate::blobs::StoredBlob>> {
            self.0.list_partials()
        }
        fn copy_to(&self, id: &BlobId, dest: &std::path::Path) -> std::io::Result<()> {
            self.0.copy_to(id, dest)
        }
    }

    #[test]
    fn a_blob_that_cannot_be_read_is_reported_and_never_repaired_away() -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.namespace(c, 1)?;
        let f = t.entry(c, ns, "f", Some(1))?;
        t.version(c, f, 1, 50)?;
        t.set_used(c, ns, 50)?;
        let store = Unreadable(t.store.clone());
        let report = fsck_with(c, &store, REPAIR_DATA, NOW)?;
        assert_eq!(kinds(&report), vec!["unreadable_blob"]);
        assert_eq!(report.unrepaired(), 1);
        assert!(report.lost.is_empty());
        assert_eq!(rows::entry(c, f)?.and_then(|e| e.current_version), Some(1));
        assert!(fsck_with(c, &t.store, READ_DATA, NOW)?.is_clean());
        Ok(())
    }

    #[test]
    fn damage_in_a_group_space_names_the_group() -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.group_namespace(c, "team")?;
        let f = t.entry(c, ns, "f", Some(1))?;
        let (_, blob) = t.version(c, f, 1, 64)?;
        t.set_used(c, ns, 64)?;
        damage(&t, &blob, |b| b[10] ^= 0x80)?;
        let report = fsck_with(c, &t.store, READ_DATA, NOW)?;
        let text = report.findings.first().map(|f| f.problem.to_string());
        let expected = format!("group team: file #{f} version 1: blob {blob} does not hold");
        assert!(
            text.as_deref().is_some_and(|t| t.starts_with(&expected)),
            "{text:?}"
        );
        Ok(())
    }

    #[test]
    fn a_consistent_store_is_clean() -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.namespace(c, 1)?;
        t.dir_entry(c, ns, "d")?;
        let f = t.entry(c, ns, "d/f", Some(2))?;
        t.version(c, f, 1, 10)?;
        t.version(c, f, 2, 20)?;
        let pending = t.entry(c, ns, "d/p", None)?;
        t.upload(c, ns, pending, NOW + 60, b"abc")?;
        t.trashed_file(c, ns, "old", NOW, 5)?;
        let queued = t.blob(b"queued")?;
        rows::queue_deleted(c, &[queued.to_string()], NOW)?;
        t.set_used(c, ns, 35)?;
        let report = fsck(c, &t.store, false, NOW)?;
        assert!(report.is_clean(), "{:#?}", report.findings);
        assert_eq!(report.checked.versions, 3);
        assert_eq!(report.checked.blobs, 4);
        Ok(())
    }

    #[test]
    fn every_kind_of_problem_is_found_then_repaired() -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.namespace(c, 1)?;
        t.dir_entry(c, ns, "d")?;
        // Version 2 (current) loses its blob: the file falls back to version 1.
        let f = t.entry(c, ns, "d/f", Some(2))?;
        t.version(c, f, 1, 10)?;
        let (_, lost) = t.version(c, f, 2, 20)?;
        t.store.remove(&lost)?;
        // A single-version file whose blob was truncated: removed entirely.
        let g = t.entry(c, ns, "d/g", Some(1))?;
        let (_, short) = t.version(c, g, 1, 30)?;
        t.store.remove(&short)?;
        let id = t.blob(&[7u8; 29])?;
        std::fs::rename(
            t.dir
                .path()
                .join("blobs")
                .join(&id.as_str()[..2])
                .join(id.as_str()),
            t.dir
                .path()
                .join("blobs")
                .join(&short.as_str()[..2])
                .join(short.as_str()),
        )?;
        // Current version 5 does not exist; version 3 does.
        let h = t.entry(c, ns, "h", Some(5))?;
        t.version(c, h, 3, 7)?;
        // A file under a directory that does not exist.
        let deep = t.entry(c, ns, "x/y/z", Some(1))?;
        t.version(c, deep, 1, 1)?;
        // Orphans, an upload without its entry and one holding too much; an upload
        // without a partial is fine (nothing arrived yet).
        let orphan = t.blob(b"orphan")?;
        let stray = t.partial(b"stray")?;
        let pending = t.entry(c, ns, "p", None)?;
        let waiting = t.upload(c, ns, pending, NOW + 60, b"x")?;
        t.store.remove_partial(&waiting)?;
        let lost_entry = t.upload(c, ns, 9999, NOW + 60, b"y")?;
        let too_much = t.upload(c, ns, pending, NOW + 60, &vec![0u8; (1 << 20) + 1])?;
        t.set_used(c, ns, 999)?;

        let report = fsck(c, &t.store, false, NOW)?;
        assert_eq!(
            kinds(&report),
            vec![
                "dangling_upload",
                "dangling_upload",
                "missing_blob",
                "missing_current_version",
                "missing_parent",
                "orphan_blob",
                "orphan_partial",
                "size_mismatch",
                "used_bytes",
            ]
        );
        assert_eq!(report.unrepaired(), 9);
        // A check changes nothing.
        assert_eq!(fsck(c, &t.store, false, NOW)?.findings.len(), 9);

        let repaired = fsck(c, &t.store, true, NOW)?;
        assert_eq!(repaired.unrepaired(), 0, "{:#?}", repaired);
        assert_eq!(repaired.lost.len(), 3, "{:#?}", repaired.lost);
        assert!(
            repaired
                .lost
                .iter()
                .any(|l| l.contains(&format!("file #{f}"))
                    && l.contains("lost version 2; now at version 1"))
        );
        assert!(
            repaired
                .lost
                .iter()
                .any(|l| l.contains(&format!("file #{g}")) && l.contains("was removed"))
        );
        let after = fsck(c, &t.store, false, NOW)?;
        assert!(after.is_clean(), "{:#?}", after.findings);

        assert_eq!(rows::entry(c, f)?.and_then(|e| e.current_version), Some(1));
        assert!(rows::entry(c, g)?.is_none());
        assert_eq!(rows::entry(c, h)?.and_then(|e| e.current_version), Some(3));
        // The upload at byte 0 keeps its entry; the dangling ones went with their partials.
        assert!(rows::entry(c, pending)?.is_some());
        assert_eq!(rows::upload_blobs(c)?.len(), 1);
        assert_eq!(t.store.partial_len(&lost_entry)?, None);
        assert_eq!(t.store.partial_len(&too_much)?, None);
        assert_eq!(t.used(c, ns)?, 10 + 7 + 1);
        assert_eq!(t.store.partial_len(&stray)?, None);
        // The orphan waits in deleted_blobs for gc.
        assert!(t.store.size(&orphan)?.is_some());
        assert!(rows::referenced_blobs(c)?.contains(orphan.as_str()));
        Ok(())
    }
}
