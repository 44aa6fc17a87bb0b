//! Upkeep of the file store, shared by `vault-admin` and the server's periodic tasks:
//! `gc` (what is past its time), `fsck` (do the database and the blob store agree),
//! `scrub` (do the blobs still hold the bytes stored: for `fsck --read-data` and the
//! server's background scrub), `backup` (a consistent copy while the server runs),
//! `move_blobs` (from one blob store into another), plus
//! the hard deletes they and `vault-admin user delete` need (`purge`) and the counts of
//! `vault-admin stats`.
//!
//! Rules every function here keeps:
//! - database changes happen in transactions; blob files are removed only after the
//!   transaction that stopped referring to them has committed;
//! - a blob whose version is deleted is queued in `deleted_blobs` and removed only after
//!   `files.blob_grace_s`, so a backup that copied the database just before still finds it;
//! - the sets of referenced blob ids are read *after* listing the store, in the order
//!   uploads → versions → deleted_blobs, the only order in which a blob id moves between
//!   those tables, so a blob in the middle of a commit or a prune is always seen somewhere.

pub mod backup;
pub mod fsck;
pub mod gc;
pub mod move_blobs;
pub mod purge;
mod rows;
pub mod scrub;
pub mod stats;
#[cfg(test)]
mod testutil;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::db::{self, DbError};
use crate::state::ServerState;

pub use backup::{BackupReport, backup};
pub use fsck::{FsckOptions, FsckReport, Problem, fsck, fsck_with};
pub use gc::{GcReport, gc};
pub use move_blobs::{MoveReport, copy_blobs};

/// Why a maintenance run failed.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// (`cause`, not `source`: the message already includes it.)
    #[error("{what}: {cause}")]
    Io { what: String, cause: io::Error },
    /// The operation was refused; the message says what to do instead.
    #[error("{0}")]
    Refused(String),
}

impl From<diesel::result::Error> for MaintenanceError {
    fn from(e: diesel::result::Error) -> Self {
        MaintenanceError::Db(DbError::Query(e))
    }
}

impl MaintenanceError {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, cause: io::Error) -> MaintenanceError {
        MaintenanceError::Io {
            what: what.into(),
            cause,
        }
    }
}

pub type MaintenanceResult<T> = Result<T, MaintenanceError>;

/// The retention rules `gc` applies, from the server's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Versions kept per file (the current one is always kept as well).
    pub version_retention: u32,
    /// Days a trashed item is kept.
    pub trash_retention_days: u32,
    /// Seconds a deleted or orphan blob stays on disk before it is removed.
    pub blob_grace_s: u64,
}

impl Policy {
    pub fn from_config(config: &Config) -> Policy {
        Policy {
            version_retention: config.version_retention,
            trash_retention_days: config.trash_retention,
            blob_grace_s: config.files.blob_grace_s,
        }
    }
}

/// Runs `gc` every `files.gc_interval_s` seconds (the first run one interval after start)
/// on the server's own database and blob store, on one instance of a deployment at a time
/// (PostgreSQL advisory lock `gc`; an instance that finds it taken skips that run). Failures are logged and retried at the
/// next tick; a run that changed something is written to the audit log (actor `server`).
pub async fn run_periodic(state: Arc<ServerState>) {
    let every = state.config.files.gc_interval_s;
    if every == 0 {
        return;
    }
    let policy = Policy::from_config(&state.config);
    let mut tick = tokio::time::interval(Duration::from_secs(every));
    tick.tick().await;
    loop {
        tick.tick().await;
        let store = Arc::clone(&state.blobs);
        let result = state
            .db
            .run(move |c| {
                // One instance of a deployment at a time; the others skip this tick.
                db::exclusively(c, "gc", |c| {
                    let report = gc(c, store.as_ref(), &policy, db::now())?;
                    if !report.is_empty() {
                        db::audit::record(
                            c,
                            &db::audit::Event::by_server("gc").with_detail(&report.summary()),
                        )?;
                    }
                    Ok::<_, MaintenanceError>(report)
                })?
                .transpose()
            })
            .await;
        crate::telemetry::gc_run(match &result {
            Ok(None) => "skipped",
            Ok(Some(report)) if report.errors.is_empty() => "ok",
            Ok(Some(_)) => "errors",
            Err(_) => "failed",
        });
        match result {
            Ok(None) => tracing::debug!("gc: another instance is running it"),
            Ok(Some(report)) => {
                for e in &report.errors {
                    tracing::warn!(error = %e, "gc could not remove a file; retrying later");
                }
                if report.is_empty() {
                    tracing::debug!("gc: nothing to do");
                } else {
                    tracing::info!(summary = %report.summary(), "gc done");
                }
            }
            Err(e) => tracing::warn!(error = %e, "gc failed; retrying at the next interval"),
        }
    }
}
