//! Room on the disk that holds the data directory. Uploads are refused while they would
//! leave less than `storage.min_free` free, so the database always has room to record
//! deletions and the server can give space back. A reserve file of `storage.reserve` bytes
//! (`<data_dir>/reserve`) is kept while there is room for it and released when free space
//! falls to half the floor (at most 16 MiB) anyway, because something else is filling the
//! disk, so that deletions, gc and a restart still work; it comes back once there is room
//! above the floor again. Storage-full errors from the blob store
//! and the database are recognised here, so that people are told "no storage space" and
//! what to do, never "internal server error".

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use vault_proto::proto::ApiError;
use vault_proto::units::format_size;

use crate::config::StorageConfig;
use crate::db::DbError;

/// Below this many free bytes the disk counts as full (for messages).
pub const FULL_BELOW: u64 = 1 << 20;

/// The most free space at which the reserve is released: what deletions of many files
/// need at most.
const RELEASE_BELOW_AT_MOST: u64 = 16 << 20;

/// How often the server looks at its disk.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Looks at the disk every [`LOOK_EVERY`] (see [`Space::look`]), off the async runtime.
pub async fn watch(state: std::sync::Arc<crate::state::ServerState>) {
    let mut tick = tokio::time::interval(LOOK_EVERY);
    loop {
        tick.tick().await;
        let state = std::sync::Arc::clone(&state);
        let _ = tokio::task::spawn_blocking(move || state.space.look()).await;
    }
}

/// The data directory's disk, its floor and its reserve.
#[derive(Debug)]
pub struct Space {
    dir: PathBuf,
    min_free: u64,
    reserve_len: u64,
    /// Whether free space was under the floor at the last look (to warn once per fall).
    under_floor: AtomicBool,
}

/// What `vault-admin stats` shows of the disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpaceReport {
    pub path: PathBuf,
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Uploads are refused below this.
    pub min_free_bytes: u64,
    /// The reserve file's size, 0 while it is released.
    pub reserve_bytes: u64,
}

impl SpaceReport {
    /// One line for people.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} free of {} on the disk of {}; uploads are refused below {}",
            format_size(self.free_bytes),
            format_size(self.total_bytes),
            self.path.display(),
            format_size(self.min_free_bytes)
        );
        if self.free_bytes < self.min_free_bytes {
            line.push_str(" (now: free space, see the README's operations section)");
        }
        if self.reserve_bytes > 0 {
            line.push_str(&format!(
                "; {} held in reserve for deletions",
                format_size(self.reserve_bytes)
            ));
        }
        line
    }
}

impl Space {
    pub fn new(data_dir: &Path, config: &StorageConfig) -> Self {
        Space {
            dir: data_dir.to_path_buf(),
            min_free: config.min_free.0,
            reserve_len: config.reserve.0,
            under_floor: AtomicBool::new(false),
        }
    }

    fn reserve_path(&self) -> PathBuf {
        self.dir.join("reserve")
    }

    /// Free bytes for an unprivileged writer, and the disk's size.
    pub fn free_and_total(&self) -> io::Result<(u64, u64)> {
        let s = rustix::fs::statvfs(&self.dir)?;
        Ok((
            s.f_bavail.saturating_mul(s.f_frsize),
            s.f_blocks.saturating_mul(s.f_frsize),
        ))
    }

    /// Refuses `bytes` more when they would leave less than the floor free. (A disk that
    /// cannot be looked at is not a reason to refuse: the write itself will tell.)
    pub fn check_room(&self, bytes: u64) -> Result<(), ApiError> {
        let Ok((free, _)) = self.free_and_total() else {
            return Ok(());
        };
        if free.saturating_sub(bytes) < self.min_free {
            tracing::warn!(
                free,
                wanted = bytes,
                floor = self.min_free,
                "upload refused: it would leave the disk under its free-space floor"
            );
            return Err(no_space());
        }
        Ok(())
    }

    /// Bytes the reserve file holds now.
    fn reserve_held(&self) -> u64 {
        std::fs::metadata(self.reserve_path())
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Releases the reserve if the disk is full (something other than uploads filled it),
    /// or makes it when there is room for it above the floor. Returns what it did, for the
    /// log.
    pub fn tend_reserve(&self) -> io::Result<Option<&'static str>> {
        if self.reserve_len == 0 {
            return Ok(None);
        }
        let (free, _) = self.free_and_total()?;
        let held = self.reserve_held();
        // Uploads stop at the floor, so falling this far below it means something else
        // is filling the disk.
        let release_below = (self.min_free / 2).min(RELEASE_BELOW_AT_MOST);
        if held > 0 && free < release_below {
            std::fs::remove_file(self.reserve_path())?;
            return Ok(Some("released"));
        }
        if held < self.reserve_len && free >= self.min_free.saturating_add(self.reserve_len) {
            self.make_reserve()?;
            return Ok(Some("made"));
        }
        Ok(None)
    }

    /// Writes the reserve file, its blocks allocated, then renames it into place.
    fn make_reserve(&self) -> io::Result<()> {
        let tmp = self.dir.join(".reserve.tmp");
        let made = (|| {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            rustix::fs::fallocate(
                &file,
                rustix::fs::FallocateFlags::empty(),
                0,
                self.reserve_len,
            )?;
            file.sync_all()?;
            std::fs::rename(&tmp, self.reserve_path())
        })();
        if made.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        made
    }

    /// Logs a warning when free space has just fallen under the floor (and a note when it is
    /// back), and tends the reserve. Run at start and then every few seconds.
    pub fn look(&self) {
        match self.tend_reserve() {
            Ok(Some("released")) => tracing::error!(
                path = %self.dir.display(),
                "the disk is full: released the reserve so that deletions, gc and restarts \
                 work; free space on this disk"
            ),
            Ok(Some(_)) => tracing::info!(
                bytes = self.reserve_len,
                "made the reserve for deletions on a full disk"
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, path = %self.dir.display(), "cannot tend the disk reserve")
            }
        }
        let Ok((free, total)) = self.free_and_total() else {
            return;
        };
        let under = free < self.min_free;
        if under != self.under_floor.swap(under, Ordering::SeqCst) {
            if under {
                tracing::warn!(
                    free,
                    total,
                    floor = self.min_free,
                    path = %self.dir.display(),
                    "free space is under the floor: uploads are refused until space is freed"
                );
            } else {
                tracing::info!(
                    free,
                    floor = self.min_free,
                    "free space is above the floor again"
                );
            }
        }
    }

    /// What `vault-admin stats` shows.
    pub fn report(&self) -> io::Result<SpaceReport> {
        let (free_bytes, total_bytes) = self.free_and_total()?;
        Ok(SpaceReport {
            path: self.dir.clone(),
            free_bytes,
            total_bytes,
            min_free_bytes: self.min_free,
            reserve_bytes: self.reserve_held(),
        })
    }
}

/// Whether an I/O error says the disk (or the user's disk quota) is full.
pub fn is_full_io(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(code) if code == libc_enospc() || code == libc_edquot())
}

fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}

fn libc_edquot() -> i32 {
    rustix::io::Errno::DQUOT.raw_os_error()
}

/// Whether a database error says its disk is full: SQLite's `SQLITE_FULL` ("database or
/// disk is full"), PostgreSQL's `disk_full` ("could not extend file …: No space left on
/// device").
pub fn is_full_db(e: &DbError) -> bool {
    let DbError::Query(diesel::result::Error::DatabaseError(_, info)) = e else {
        return false;
    };
    let message = info.message().to_ascii_lowercase();
    message.contains("database or disk is full")
        || message.contains("no space left on device")
        || message.contains("could not extend file")
        || message.contains("disk quota exceeded")
}

/// What a request that found the disk full is told.
pub fn no_space() -> ApiError {
    ApiError::internal_with(
        "no storage space: the server's disk is full and nothing was stored. Delete what you \
         no longer need (`vault rm`, then `vault trash empty`), or ask the operator to free \
         disk space, then try again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    #[test]
    fn full_disk_errors_are_recognised_and_others_are_not() {
        assert!(is_full_io(&io::Error::from_raw_os_error(libc_enospc())));
        assert!(is_full_io(&io::Error::new(io::ErrorKind::StorageFull, "x")));
        assert!(!is_full_io(&io::Error::new(io::ErrorKind::NotFound, "x")));
        assert!(no_space().message.starts_with("no storage space"));
    }

    #[test]
    fn the_floor_refuses_what_would_cross_it_and_the_reserve_is_made_when_there_is_room() {
        let dir = tempfile::tempdir().expect("dir");
        let space = Space::new(
            dir.path(),
            &StorageConfig {
                min_free: ByteSize(1 << 20),
                reserve: ByteSize(64 << 10),
                ..StorageConfig::default()
            },
        );
        let (free, total) = space.free_and_total().expect("statvfs");
        assert!(
            total >= free && free > 2 << 20,
            "the test needs a few MiB free"
        );
        assert!(space.check_room(0).is_ok());
        assert!(
            space.check_room(free).is_err(),
            "all of it would cross the floor"
        );
        assert_eq!(space.tend_reserve().expect("tend"), Some("made"));
        assert_eq!(space.report().expect("report").reserve_bytes, 64 << 10);
        assert_eq!(space.tend_reserve().expect("tend"), None, "made once");
        let line = space.report().expect("report").line();
        assert!(line.contains("held in reserve"), "{line}");
    }
}
