//! Reading stored blobs back and comparing them with the BLAKE3 recorded when they were
//! stored. [`check_blob`] gives the verdict on one version's blob; `fsck --read-data`
//! uses it at full speed, and the server's periodic scrub ([`run_periodic`]) at a bounded
//! rate in the background, where it only reports: a warning per damaged version (owner,
//! file id, version, blob id: nothing secret), a summary line, and an audit entry when
//! something was damaged. `vault-admin fsck --read-data --repair` is what repairs.
//!
//! A scrub pass walks the versions in id order, a page at a time, holding no database
//! connection while it reads. Where it is (pass start, last version id, end) is kept in
//! the `settings` table, so a restarted server goes on with its pass, and a pass begins
//! `files.scrub_interval_s` after the previous one began.

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
use crate::db::schema::{entries, versions};
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

/// Where the scrub is, as kept in the `settings` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// When the current (or last) pass began, Unix seconds.
    pub started_at: i64,
    /// The last version id checked in this pass.
    pub after_id: i64,
    /// When the pass ended; `None` while it runs.
    pub finished_at: Option<i64>,
}

const PROGRESS_KEY: &str = "scrub_progress";

impl Progress {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        out.extend_from_slice(&self.started_at.to_be_bytes());
        out.extend_from_slice(&self.after_id.to_be_bytes());
        out.extend_from_slice(&self.finished_at.unwrap_or(0).to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Progress> {
        let field = |i: usize| {
            bytes
                .get(i * 8..i * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .map(i64::from_be_bytes)
        };
        (bytes.len() == 24).then_some(())?;
        Some(Progress {
            started_at: field(0)?,
            after_id: field(1)?,
            finished_at: field(2).filter(|&t| t != 0),
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

/// A damaged version as the scrub reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damaged {
    pub owner: String,
    pub entry_id: i64,
    pub version: i64,
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
        write!(
            f,
            "{}: file #{} version {}: blob {} {what}",
            self.owner, self.entry_id, self.version, self.blob_id
        )
    }
}

/// What a scrub pass (or the part of it this process ran) found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubReport {
    pub versions: u64,
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
            "{} checked, {} read, {} damaged, {} without a recorded hash, {} \
             unreadable",
            plural(self.versions, "version", "versions"),
            vault_proto::units::format_size(self.bytes),
            self.damaged.len(),
            self.unrecorded,
            self.errors.len()
        )
    }
}

/// Versions checked per page of a pass (one database read each).
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

/// Runs one scrub pass from `progress` (a new pass when it is finished) to the end,
/// saving where it is after every page. Fails when the database does, or with
/// `Interrupted` once `stop` is set.
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
        },
        None => progress,
    };
    state.db.run(move |c| progress.save(c)).await?;
    let mut report = ScrubReport::default();
    let mut pacer = Pacer::new(state.config.files.scrub_rate.0, Arc::clone(stop));
    loop {
        let after = progress.after_id;
        let page = state.db.run(move |c| versions_after(c, after)).await?;
        let Some(last) = page.last().map(|v| v.id) else {
            break;
        };
        for v in page {
            let store = Arc::clone(&state.blobs);
            let (checked, back, v) = tokio::task::spawn_blocking(move || {
                let checked = check_blob(store.as_ref(), &v, &mut |n| pacer.pace(n));
                (checked, pacer, v)
            })
            .await
            .map_err(|e| MaintenanceError::io("the scrub's reader failed", io::Error::other(e)))?;
            pacer = back;
            report.versions += 1;
            let verdict = match checked {
                Ok((verdict, read)) => {
                    report.bytes += read;
                    verdict
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    return Err(MaintenanceError::io("scrub stopped", e));
                }
                Err(e) => {
                    tracing::warn!(blob_id = %v.blob_id, error = %e, "scrub: cannot read a blob");
                    report.errors.push(format!("blob {}: {e}", v.blob_id));
                    continue;
                }
            };
            if let Verdict::Unrecorded(_) = verdict {
                report.unrecorded += 1;
            }
            if !verdict.is_damage() {
                continue;
            }
            let (id, blob) = (v.id, v.blob_id.clone());
            let Some(owner) = state.db.run(move |c| confirm(c, id, &blob)).await? else {
                continue;
            };
            let damaged = Damaged {
                owner,
                entry_id: v.entry_id,
                version: v.version,
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
    progress.finished_at = Some(db::now());
    state.db.run(move |c| progress.save(c)).await?;
    Ok(report)
}

/// At most this many damaged versions are named in the audit entry of a pass.
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
    };

    #[tokio::test]
    async fn a_pass_names_damaged_versions_by_owner_and_goes_on_where_it_stopped() -> TestResult {
        let (t, state) = Fixture::with_state(|c| c.files.scrub_rate = ByteSize(1 << 30))?;
        let (intact, flipped, lost, old, blob, gone) = {
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
            (intact, flipped, lost, old, blob, gone)
        };
        let stop = Arc::new(AtomicBool::new(false));
        let report = pass(&state, NEVER, &stop).await?;
        assert_eq!(report.versions, 4);
        assert_eq!(report.bytes, 3000 + 2000 + 40);
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
            ]
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
        assert_eq!(saved.after_id, ids[3]);
        let midway = Progress {
            started_at: db::now(),
            after_id: ids[1],
            finished_at: None,
        };
        let rest = pass(&state, midway, &stop).await?;
        assert_eq!((rest.versions, rest.damaged.len()), (2, 1));

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
        };
        assert_eq!(Progress::decode(&running.encode()), Some(running));
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
