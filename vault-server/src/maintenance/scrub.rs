//! Reading stored blobs back and comparing them with the BLAKE3 recorded when they were
//! stored. [`check_blob`] gives the verdict on one version's blob; `fsck --read-data`
//! uses it at full speed, and the server's periodic scrub ([`run_periodic`]) at a bounded
//! rate in the background, where it only reports: a warning per damaged blob (owner, file
//! ids and versions, blob id: nothing secret), a summary line, and an audit entry when
//! something was damaged. `vault-admin fsck --read-data --repair` is what repairs.
//!
//! A scrub pass walks the versions in id order, then the chunks of format 2 in id order,
//! a page at a time, holding no database connection while it reads. Where it is (pass
//! start, last version id, last chunk id, end) is kept in the `settings` table, so a
//! restarted server goes on with its pass, and a pass begins `files.scrub_interval_s`
//! after the previous one began.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vault_proto::units::plural;

use diesel::prelude::*;

use super::rows::{self, VersionRow};
use super::{MaintenanceError, MaintenanceResult};
use crate::blobs::hash::{self, BlobHash};
use crate::blobs::{BlobId, BlobStore};
use crate::db::files::chunks::Chunk;
use crate::db::schema::{chunks, entries, version_chunks, versions};
use crate::db::{self, DbConn};
use crate::state::ServerState;

/// What reading a version's blob back found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The blob holds the bytes that were stored.
    Intact,
    /// Stored before hashes were recorded: this is the hash of its bytes as they are now.
    Unrecorded(BlobHash),
    /// No such blob.
    Missing,
    /// The blob holds this many bytes, not the version's sealed size.
    Size(u64),
    /// The right size, other bytes.
    Changed,
}

impl Verdict {
    /// The version cannot be served as it was stored.
    pub fn is_damage(&self) -> bool {
        matches!(self, Verdict::Missing | Verdict::Size(_) | Verdict::Changed)
    }
}

/// Reads the blob of `v` and compares it with the version's size and recorded hash.
/// Returns the verdict and the bytes read. `pace` is called after every buffer read (see
/// [`hash::of_blob`]); only its errors, and errors reading a blob that is there, fail.
pub fn check_blob(
    store: &dyn BlobStore,
    v: &VersionRow,
    pace: &mut dyn FnMut(u64) -> io::Result<()>,
) -> io::Result<(Verdict, u64)> {
    check_stored(store, &Stored::from(v), pace)
}

/// A blob as the database records it: a version's, or a chunk's.
#[derive(Clone, Debug)]
pub struct Stored {
    pub blob_id: String,
    pub sealed_size: i64,
    /// `None` for versions stored before hashes were recorded.
    pub blob_blake3: Option<Vec<u8>>,
}

impl From<&VersionRow> for Stored {
    fn from(v: &VersionRow) -> Stored {
        Stored {
            blob_id: v.blob_id.clone(),
            sealed_size: v.sealed_size,
            blob_blake3: v.blob_blake3.clone(),
        }
    }
}

impl From<&Chunk> for Stored {
    fn from(chunk: &Chunk) -> Stored {
        Stored {
            blob_id: chunk.blob_id.clone(),
            sealed_size: chunk.sealed_size,
            blob_blake3: Some(chunk.blob_blake3.clone()),
        }
    }
}

/// [`check_blob`] for any recorded blob.
pub fn check_stored(
    store: &dyn BlobStore,
    v: &Stored,
    pace: &mut dyn FnMut(u64) -> io::Result<()>,
) -> io::Result<(Verdict, u64)> {
    let expected = u64::try_from(v.sealed_size).unwrap_or(u64::MAX);
    let Some(id) = BlobId::parse(&v.blob_id) else {
        return Ok((Verdict::Missing, 0));
    };
    match store.size(&id)? {
        None => return Ok((Verdict::Missing, 0)),
        Some(size) if size != expected => return Ok((Verdict::Size(size), 0)),
        Some(_) => {}
    }
    let read = match hash::of_blob(store, &id, pace) {
        Ok(read) => read,
        // Removed since the size was read (gc after the version went).
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Verdict::Missing, 0)),
        Err(e) => return Err(e),
    };
    let verdict = if read.len != expected {
        Verdict::Size(read.len)
    } else {
        match v.blob_blake3.as_deref() {
            None => Verdict::Unrecorded(read.hash),
            Some(recorded) if recorded == read.hash.as_slice() => Verdict::Intact,
            Some(_) => Verdict::Changed,
        }
    };
    Ok((verdict, read.len))
}

/// Bounds the rate of reads: after each read, sleeps until the bytes read so far are
/// within `rate` per second, allowing a burst of one second's worth after a pause. Fails
/// with `Interrupted` once `stop` is set.
#[derive(Debug)]
pub struct Pacer {
    rate: u64,
    due: Instant,
    stop: Arc<AtomicBool>,
}

/// How far reads may run ahead after a pause.
const BURST: Duration = Duration::from_secs(1);

impl Pacer {
    pub fn new(rate: u64, stop: Arc<AtomicBool>) -> Pacer {
        Pacer {
            rate: rate.max(1),
            due: Instant::now(),
            stop,
        }
    }

    /// Accounts for `n` bytes read; sleeps when reading ran ahead of the rate.
    pub fn pace(&mut self, n: u64) -> io::Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the scrub was stopped",
            ));
        }
        let now = Instant::now();
        if let Some(floor) = now.checked_sub(BURST) {
            self.due = self.due.max(floor);
        }
        self.due += Duration::from_secs_f64(n as f64 / self.rate as f64);
        if self.due > now {
            std::thread::sleep(self.due - now);
        }
        Ok(())
    }
}

/// Where the scrub is, as kept in the `settings` table. A pass reads the versions' blobs,
/// then the chunks' (format 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// When the current (or last) pass began, Unix seconds.
    pub started_at: i64,
    /// The last version id checked in this pass.
    pub after_id: i64,
    /// When the pass ended; `None` while it runs.
    pub finished_at: Option<i64>,
    /// Once the versions are done: the last chunk row id checked. `None` while the pass
    /// is among the versions.
    pub chunks_after: Option<i64>,
}

const PROGRESS_KEY: &str = "scrub_progress";

impl Progress {
    /// Four big-endian i64s: start, last version, end (0: running), last chunk (-1: not
    /// there yet). A record of three (before chunks were scrubbed) reads as among the
    /// versions.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&self.started_at.to_be_bytes());
        out.extend_from_slice(&self.after_id.to_be_bytes());
        out.extend_from_slice(&self.finished_at.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.chunks_after.unwrap_or(-1).to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Progress> {
        let field = |i: usize| {
            bytes
                .get(i * 8..i * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .map(i64::from_be_bytes)
        };
        let chunks_after = match bytes.len() {
            24 => None,
            32 => field(3).filter(|&id| id >= 0),
            _ => return None,
        };
        Some(Progress {
            started_at: field(0)?,
            after_id: field(1)?,
            finished_at: field(2).filter(|&t| t != 0),
            chunks_after,
        })
    }

    pub fn load(conn: &mut DbConn) -> MaintenanceResult<Option<Progress>> {
        Ok(db::settings::get(conn, PROGRESS_KEY)?.and_then(|b| Progress::decode(&b)))
    }

    pub fn save(&self, conn: &mut DbConn) -> MaintenanceResult<()> {
        Ok(db::settings::put(conn, PROGRESS_KEY, &self.encode())?)
    }

    /// Seconds from `now` until a pass should run: 0 while one is unfinished, else when
    /// `every` seconds have passed since the last one began.
    pub fn wait_s(&self, now: i64, every: u64) -> u64 {
        if self.finished_at.is_none() {
            return 0;
        }
        let due = self
            .started_at
            .saturating_add(i64::try_from(every).unwrap_or(i64::MAX));
        u64::try_from(due.saturating_sub(now)).unwrap_or(0)
    }
}

/// Whose blob was damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// A version's own blob.
    Version { entry_id: i64, version: i64 },
    /// A chunk (format 2), part of these versions (file id, version).
    Chunk { used_by: Vec<(i64, i64)> },
}

/// A damaged blob as the scrub reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damaged {
    pub owner: String,
    pub holder: Holder,
    pub blob_id: String,
    pub verdict: Verdict,
}

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.verdict {
            Verdict::Missing => "is missing".to_string(),
            Verdict::Size(n) => format!("holds {n} bytes, not the size stored"),
            _ => "does not hold the bytes stored (BLAKE3 differs)".to_string(),
        };
        let (owner, blob) = (&self.owner, &self.blob_id);
        match &self.holder {
            Holder::Version { entry_id, version } => write!(
                f,
                "{owner}: file #{entry_id} version {version}: blob {blob} {what}"
            ),
            Holder::Chunk { used_by } if used_by.is_empty() => {
                write!(f, "{owner}: chunk blob {blob} {what}; no version uses it")
            }
            Holder::Chunk { used_by } => {
                let named: Vec<String> = used_by
                    .iter()
                    .map(|(entry, version)| format!("file #{entry} version {version}"))
                    .collect();
                write!(
                    f,
                    "{owner}: chunk blob {blob} {what}; it is part of {}",
                    named.join(", ")
                )
            }
        }
    }
}

/// What a scrub pass (or the part of it this process ran) found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubReport {
    pub versions: u64,
    /// Chunks (format 2) read back.
    pub chunks: u64,
    pub bytes: u64,
    pub damaged: Vec<Damaged>,
    /// Versions stored before hashes were recorded (not verifiable).
    pub unrecorded: u64,
    /// Blobs that could not be read (an I/O error other than absence).
    pub errors: Vec<String>,
}

impl ScrubReport {
    pub fn summary(&self) -> String {
        format!(
            "{} and {} checked, {} read, {} damaged, {} without a recorded hash, {} \
             unreadable",
            plural(self.versions, "version", "versions"),
            plural(self.chunks, "chunk", "chunks"),
            vault_proto::units::format_size(self.bytes),
            self.damaged.len(),
            self.unrecorded,
            self.errors.len()
        )
    }
}

/// Versions (or chunks) checked per page of a pass (one database read each).
const PAGE: i64 = 200;

/// The next versions of a pass, by id.
fn versions_after(conn: &mut DbConn, after: i64) -> MaintenanceResult<Vec<VersionRow>> {
    Ok(versions::table
        .filter(versions::id.gt(after))
        .order(versions::id.asc())
        .limit(PAGE)
        .select(VersionRow::as_select())
        .load(conn)?)
}

/// The next chunks of a pass, by row id.
fn chunks_after(conn: &mut DbConn, after: i64) -> MaintenanceResult<Vec<Chunk>> {
    Ok(chunks::table
        .filter(chunks::id.gt(after))
        .order(chunks::id.asc())
        .limit(PAGE)
        .select(Chunk::as_select())
        .load(conn)?)
}

/// Checks again that version row `id` still stands for `blob_id` (a prune or a purge may
/// have taken it while its blob was read) and names its owner.
fn confirm(conn: &mut DbConn, id: i64, blob_id: &str) -> MaintenanceResult<Option<String>> {
    let ns: Option<i64> = versions::table
        .inner_join(entries::table.on(entries::id.eq(versions::entry_id)))
        .filter(versions::id.eq(id))
        .filter(versions::blob_id.eq(blob_id))
        .select(entries::namespace_id)
        .get_result(conn)
        .optional()?;
    match ns {
        Some(ns) => Ok(Some(rows::namespace_label(conn, ns)?)),
        None => Ok(None),
    }
}

/// A damaged chunk's owner, and the versions it is part of (file id, version).
type ChunkUsers = (String, Vec<(i64, i64)>);

/// Checks again that chunk row `id` still stands for `blob_id` (gc may have taken it while
/// its blob was read), and names its owner and the versions it is part of.
fn confirm_chunk(
    conn: &mut DbConn,
    id: i64,
    blob_id: &str,
) -> MaintenanceResult<Option<ChunkUsers>> {
    let ns: Option<i64> = chunks::table
        .filter(chunks::id.eq(id))
        .filter(chunks::blob_id.eq(blob_id))
        .select(chunks::namespace_id)
        .get_result(conn)
        .optional()?;
    let Some(ns) = ns else {
        return Ok(None);
    };
    let used_by = version_chunks::table
        .inner_join(versions::table.on(versions::id.eq(version_chunks::version_id)))
        .filter(version_chunks::chunk.eq(id))
        .order((versions::entry_id.asc(), versions::version.asc()))
        .select((versions::entry_id, versions::version))
        .load(conn)?;
    Ok(Some((rows::namespace_label(conn, ns)?, used_by)))
}

/// Reads one blob back at the pacer's rate on a blocking thread; hands the pacer back.
async fn read_back(
    state: &ServerState,
    mut pacer: Pacer,
    stored: Stored,
) -> MaintenanceResult<(io::Result<(Verdict, u64)>, Pacer)> {
    let store = Arc::clone(&state.blobs);
    tokio::task::spawn_blocking(move || {
        let checked = check_stored(store.as_ref(), &stored, &mut |n| pacer.pace(n));
        (checked, pacer)
    })
    .await
    .map_err(|e| MaintenanceError::io("the scrub's reader failed", io::Error::other(e)))
}

/// Counts what reading `blob_id` back found into `report`; `Ok(Some(verdict))` when it is
/// damage to confirm and report.
fn tally(
    report: &mut ScrubReport,
    blob_id: &str,
    checked: io::Result<(Verdict, u64)>,
) -> MaintenanceResult<Option<Verdict>> {
    let verdict = match checked {
        Ok((verdict, read)) => {
            report.bytes += read;
            verdict
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            return Err(MaintenanceError::io("scrub stopped", e));
        }
        Err(e) => {
            tracing::warn!(blob_id = %blob_id, error = %e, "scrub: cannot read a blob");
            report.errors.push(format!("blob {blob_id}: {e}"));
            return Ok(None);
        }
    };
    if let Verdict::Unrecorded(_) = verdict {
        report.unrecorded += 1;
    }
    Ok(verdict.is_damage().then_some(verdict))
}

/// Runs one scrub pass from `progress` (a new pass when it is finished) to the end: the
/// versions' blobs, then the chunks', saving where it is after every page. Fails when the
/// database does, or with `Interrupted` once `stop` is set.
pub async fn pass(
    state: &ServerState,
    progress: Progress,
    stop: &Arc<AtomicBool>,
) -> MaintenanceResult<ScrubReport> {
    let mut progress = match progress.finished_at {
        Some(_) => Progress {
            started_at: db::now(),
            after_id: 0,
            finished_at: None,
            chunks_after: None,
        },
        None => progress,
    };
    state.db.run(move |c| progress.save(c)).await?;
    let mut report = ScrubReport::default();
    let mut pacer = Pacer::new(state.config.files.scrub_rate.0, Arc::clone(stop));
    while progress.chunks_after.is_none() {
        let after = progress.after_id;
        let page = state.db.run(move |c| versions_after(c, after)).await?;
        let Some(last) = page.last().map(|v| v.id) else {
            progress.chunks_after = Some(0);
            break;
        };
        for v in page {
            let (checked, back) = read_back(state, pacer, Stored::from(&v)).await?;
            pacer = back;
            report.versions += 1;
            let Some(verdict) = tally(&mut report, &v.blob_id, checked)? else {
                continue;
            };
            let (id, blob) = (v.id, v.blob_id.clone());
            let Some(owner) = state.db.run(move |c| confirm(c, id, &blob)).await? else {
                continue;
            };
            let damaged = Damaged {
                owner,
                holder: Holder::Version {
                    entry_id: v.entry_id,
                    version: v.version,
                },
                blob_id: v.blob_id,
                verdict,
            };
            tracing::warn!(
                "scrub: {damaged}; `vault-admin fsck --read-data --repair` treats the version \
                 as lost"
            );
            report.damaged.push(damaged);
        }
        progress.after_id = last;
        state.db.run(move |c| progress.save(c)).await?;
    }
    while let Some(after) = progress.chunks_after {
        let page = state.db.run(move |c| chunks_after(c, after)).await?;
        let Some(last) = page.last().map(|ch| ch.id) else {
            break;
        };
        for chunk in page {
            let (checked, back) = read_back(state, pacer, Stored::from(&chunk)).await?;
            pacer = back;
            report.chunks += 1;
            let Some(verdict) = tally(&mut report, &chunk.blob_id, checked)? else {
                continue;
            };
            let (id, blob) = (chunk.id, chunk.blob_id.clone());
            let Some((owner, used_by)) = state.db.run(move |c| confirm_chunk(c, id, &blob)).await?
            else {
                continue;
            };
            let damaged = Damaged {
                owner,
                holder: Holder::Chunk { used_by },
                blob_id: chunk.blob_id,
                verdict,
            };
            tracing::warn!(
                "scrub: {damaged}; `vault-admin fsck --read-data --repair` treats the versions \
                 it is part of as lost"
            );
            report.damaged.push(damaged);
        }
        progress.chunks_after = Some(last);
        state.db.run(move |c| progress.save(c)).await?;
    }
    progress.finished_at = Some(db::now());
    state.db.run(move |c| progress.save(c)).await?;
    Ok(report)
}

/// At most this many damaged blobs are named in the audit entry of a pass.
const AUDIT_NAMED: usize = 20;

/// The audit entry of a pass that found damage.
fn audit_detail(report: &ScrubReport) -> String {
    let mut detail = report.summary();
    for d in report.damaged.iter().take(AUDIT_NAMED) {
        detail.push_str(&format!("; {d}"));
    }
    if report.damaged.len() > AUDIT_NAMED {
        detail.push_str(&format!(
            "; and {} more (see the server log)",
            report.damaged.len() - AUDIT_NAMED
        ));
    }
    detail
}

/// Sets the flag when dropped: the scrub's task is aborted at shutdown, and its reader
/// (on a blocking thread) then stops at its next buffer.
#[derive(Debug)]
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How long after start the first pass of a server that never scrubbed begins (or the
/// interval, when shorter): not while it is starting up.
const FIRST_PASS_DELAY_S: u64 = 600;

/// After a failure, the scrub tries again this much later.
const RETRY_S: u64 = 60;

/// The server's background scrub: a pass every `files.scrub_interval_s` (0 = never),
/// reading at most `files.scrub_rate` bytes per second, going on after a restart where
/// the last pass stopped. With several server instances, turn it on for one.
pub async fn run_periodic(state: Arc<ServerState>) {
    let every = state.config.files.scrub_interval_s;
    if every == 0 {
        return;
    }
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    if let Ok(None) = state.db.run(Progress::load).await {
        tokio::time::sleep(Duration::from_secs(every.min(FIRST_PASS_DELAY_S))).await;
    }
    loop {
        let progress = match state.db.run(Progress::load).await {
            Ok(p) => p.unwrap_or(Progress {
                started_at: 0,
                after_id: 0,
                finished_at: Some(0),
                chunks_after: None,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "scrub: cannot read where it is; retrying later");
                tokio::time::sleep(Duration::from_secs(RETRY_S)).await;
                continue;
            }
        };
        let wait = progress.wait_s(db::now(), every);
        if wait > 0 {
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        let began = Instant::now();
        match pass(&state, progress, &stop.0).await {
            Ok(report) => {
                let seconds = began.elapsed().as_secs();
                if report.damaged.is_empty() && report.errors.is_empty() {
                    tracing::info!(seconds, "scrub pass done: {}", report.summary());
                } else {
                    tracing::warn!(seconds, "scrub pass done: {}", report.summary());
                }
                if !report.damaged.is_empty() {
                    let detail = audit_detail(&report);
                    let recorded = state
                        .db
                        .run(move |c| {
                            db::audit::record(
                                c,
                                &db::audit::Event::by_server("scrub").with_detail(&detail),
                            )
                        })
                        .await;
                    if let Err(e) = recorded {
                        tracing::warn!(error = %e, "scrub: cannot write the audit log");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "scrub pass failed; it goes on from where it stopped later");
                tokio::time::sleep(Duration::from_secs(RETRY_S)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{Fixture, TestResult};
    use super::*;
    use crate::config::ByteSize;

    const NEVER: Progress = Progress {
        started_at: 0,
        after_id: 0,
        finished_at: Some(0),
        chunks_after: None,
    };

    #[tokio::test]
    async fn a_pass_names_damaged_versions_and_chunks_by_owner_and_goes_on_where_it_stopped()
    -> TestResult {
        let (t, state) = Fixture::with_state(|c| c.files.scrub_rate = ByteSize(1 << 30))?;
        let (intact, flipped, lost, old, blob, gone, img, bad_chunk) = {
            let c = &mut *t.conn()?;
            let alice = crate::testing::add_user(c, "alice", &[], 1 << 30)?;
            let ns = t.namespace(c, alice.id)?;
            let intact = t.entry(c, ns, "intact", Some(1))?;
            t.version(c, intact, 1, 3000)?;
            let flipped = t.entry(c, ns, "flipped", Some(1))?;
            let (_, blob) = t.version(c, flipped, 1, 2000)?;
            let mut bytes = std::fs::read(t.blob_path(&blob))?;
            bytes[1999] ^= 0x10;
            std::fs::write(t.blob_path(&blob), bytes)?;
            let lost = t.entry(c, ns, "lost", Some(1))?;
            let (_, gone) = t.version(c, lost, 1, 10)?;
            t.store.remove(&gone)?;
            let old = t.entry(c, ns, "old", Some(1))?;
            t.version_of(c, old, 1, &[5; 40], None)?;
            // A file in format 2, versions 1 and 2 sharing a chunk that rots.
            let img = t.entry(c, ns, "img", Some(2))?;
            let (v1, _) = t.version(c, img, 1, 64)?;
            let (v2, _) = t.version(c, img, 2, 64)?;
            let (shared, bad_chunk) = t.chunk(c, ns, &[6; 5000])?;
            let (own, _) = t.chunk(c, ns, &[7; 1000])?;
            t.uses(c, v1, shared)?;
            t.uses(c, v2, shared)?;
            t.uses(c, v2, own)?;
            let mut bytes = std::fs::read(t.blob_path(&bad_chunk))?;
            bytes[0] ^= 0x01;
            std::fs::write(t.blob_path(&bad_chunk), bytes)?;
            (intact, flipped, lost, old, blob, gone, img, bad_chunk)
        };
        let stop = Arc::new(AtomicBool::new(false));
        let report = pass(&state, NEVER, &stop).await?;
        assert_eq!((report.versions, report.chunks), (6, 2));
        assert_eq!(report.bytes, 3000 + 2000 + 40 + 64 + 64 + 5000 + 1000);
        assert_eq!(report.unrecorded, 1);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let named: Vec<String> = report.damaged.iter().map(ToString::to_string).collect();
        assert_eq!(
            named,
            vec![
                format!(
                    "user alice: file #{flipped} version 1: blob {blob} does not hold the bytes \
                     stored (BLAKE3 differs)"
                ),
                format!("user alice: file #{lost} version 1: blob {gone} is missing"),
                format!(
                    "user alice: chunk blob {bad_chunk} does not hold the bytes stored (BLAKE3 \
                     differs); it is part of file #{img} version 1, file #{img} version 2"
                ),
            ]
        );
        assert!(
            report
                .summary()
                .starts_with("6 versions and 2 chunks checked")
        );
        assert!(!named.iter().any(|n| n.contains(&format!("#{intact} "))));
        assert!(!named.iter().any(|n| n.contains(&format!("#{old} "))));
        assert!(audit_detail(&report).contains(&named[0]));

        // Where the pass is was saved; a pass from the middle checks the rest only.
        let saved = state
            .db
            .run(Progress::load)
            .await?
            .ok_or("no progress saved")?;
        assert!(saved.finished_at.is_some());
        let c = &mut *t.conn()?;
        let ids: Vec<i64> = versions::table
            .order(versions::id.asc())
            .select(versions::id)
            .load(c)?;
        assert_eq!(saved.after_id, ids[5]);
        let chunk_ids: Vec<i64> = chunks::table
            .order(chunks::id.asc())
            .select(chunks::id)
            .load(c)?;
        assert_eq!(saved.chunks_after, Some(chunk_ids[1]));
        let midway = Progress {
            started_at: db::now(),
            after_id: ids[1],
            finished_at: None,
            chunks_after: None,
        };
        let rest = pass(&state, midway, &stop).await?;
        assert_eq!((rest.versions, rest.chunks, rest.damaged.len()), (4, 2, 2));
        // Among the chunks, past the damaged one: no version is read again.
        let among_chunks = Progress {
            chunks_after: Some(chunk_ids[0]),
            ..midway
        };
        let rest = pass(&state, among_chunks, &stop).await?;
        assert_eq!((rest.versions, rest.chunks, rest.damaged.len()), (0, 1, 0));

        // A stopped scrub stops at its next read.
        stop.store(true, Ordering::Relaxed);
        let stopped = pass(&state, NEVER, &stop).await;
        assert!(stopped.is_err(), "{stopped:?}");
        Ok(())
    }

    #[test]
    fn progress_round_trips_and_says_when_the_next_pass_is_due() {
        let running = Progress {
            started_at: 1_000,
            after_id: 42,
            finished_at: None,
            chunks_after: None,
        };
        assert_eq!(Progress::decode(&running.encode()), Some(running));
        let among_chunks = Progress {
            chunks_after: Some(0),
            ..running
        };
        assert_eq!(Progress::decode(&among_chunks.encode()), Some(among_chunks));
        // A record written before chunks were scrubbed: three fields, among the versions.
        assert_eq!(Progress::decode(&running.encode()[..24]), Some(running));
        assert_eq!(running.wait_s(5_000, 600), 0);
        let done = Progress {
            finished_at: Some(1_200),
            ..running
        };
        assert_eq!(Progress::decode(&done.encode()), Some(done));
        assert_eq!(done.wait_s(1_300, 600), 300);
        assert_eq!(done.wait_s(9_000, 600), 0);
        assert_eq!(Progress::decode(b"short"), None);
    }

    #[test]
    fn the_pacer_holds_reads_to_the_rate_and_stops_when_told() -> io::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut pacer = Pacer::new(4 << 20, Arc::clone(&stop));
        let began = Instant::now();
        // 2 MiB at 4 MiB/s: about half a second, whatever the reads cost.
        for _ in 0..8 {
            pacer.pace(256 << 10)?;
        }
        let took = began.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        stop.store(true, Ordering::Relaxed);
        let e = pacer.pace(1).err().map(|e| e.kind());
        assert_eq!(e, Some(io::ErrorKind::Interrupted));
        Ok(())
    }
}
