//! `backup DEST`: a consistent copy of the database and the blobs it names, taken while
//! the server runs. Everything is written to a temporary directory beside `DEST` and
//! renamed into place at the end, so `DEST` is either absent or complete.
//!
//! - SQLite: `VACUUM INTO` makes a transactionally consistent snapshot `vault.db`.
//!   Unfinished uploads are left out of the copy (their partials are not copied; clients
//!   start them again), then every blob a version or chunk in the snapshot names is copied
//!   (hard-linked where the filesystem allows: sealed blobs never change). gc removes a
//!   blob file only a grace period after its version was deleted, so every blob the
//!   snapshot names still exists while the copy runs.
//! - PostgreSQL: `pg_dump` writes `vault.sql`; the blobs copied are those the live
//!   database names afterwards (versions, chunks and blobs queued for deletion), a superset of
//!   what the dump names.
//!
//! `tls/` is copied too, so a server started on the backup keeps its fingerprint.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use diesel::prelude::*;
use serde::Serialize;

use super::{MaintenanceError, MaintenanceResult};
use crate::blobs::{BlobId, BlobStore, FsBlobStore};
use crate::db::schema::{deleted_blobs, uploads, versions};
use crate::db::{self, Backend, Db, DbConn, DbError};
use crate::fsutil;

/// What a backup wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    pub dest: PathBuf,
    /// `vault.db` (SQLite snapshot) or `vault.sql` (pg_dump).
    pub database_file: String,
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Blobs the database names that were not in the store (run `vault-admin fsck`).
    pub missing_blobs: Vec<String>,
    /// Unfinished uploads left out of the copy.
    pub uploads_left_out: u64,
    pub tls_copied: bool,
}

/// Backs up the database behind `db` (opened from `database_url`) and the blobs of
/// `store` from the data directory `data_dir` into the new directory `dest`.
pub fn backup(
    db: &Db,
    database_url: &str,
    store: &dyn BlobStore,
    data_dir: &Path,
    dest: &Path,
) -> MaintenanceResult<BackupReport> {
    check_dest(dest, data_dir)?;
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("backup");
    let tmp = parent.join(format!(".{name}.partial-{}", BlobId::random()));
    fsutil::create_private_dir(&tmp)
        .map_err(|e| MaintenanceError::io(format!("cannot create {}", tmp.display()), e))?;
    let result = write_backup(db, database_url, store, data_dir, &tmp);
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // An existing empty DEST is replaced (rename onto an empty directory is allowed).
    if let Err(e) = fs::rename(&tmp, dest) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(MaintenanceError::io(
            format!("cannot move the backup into place at {}", dest.display()),
            e,
        ));
    }
    sync_dir(parent)?;
    Ok(BackupReport {
        dest: dest.to_path_buf(),
        ..report
    })
}

/// Refuses a `dest` that is not a new or empty directory, or that lies inside the data
/// directory.
fn check_dest(dest: &Path, data_dir: &Path) -> MaintenanceResult<()> {
    match fs::read_dir(dest) {
        Ok(mut items) => {
            if items.next().is_some() {
                return Err(MaintenanceError::Refused(format!(
                    "{} is not empty: back up into a new or empty directory",
                    dest.display()
                )));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(MaintenanceError::Refused(format!(
                "{} is a file: back up into a new or empty directory",
                dest.display()
            )));
        }
        Err(e) => {
            return Err(MaintenanceError::io(
                format!("cannot read {}", dest.display()),
                e,
            ));
        }
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let parent = parent.canonicalize().map_err(|e| {
        MaintenanceError::io(
            format!("the directory {} for the backup", parent.display()),
            e,
        )
    })?;
    if let Ok(data) = data_dir.canonicalize()
        && parent.starts_with(&data)
    {
        return Err(MaintenanceError::Refused(format!(
            "{} is inside the data directory {}: back up somewhere else",
            dest.display(),
            data.display()
        )));
    }
    Ok(())
}

fn write_backup(
    db: &Db,
    database_url: &str,
    store: &dyn BlobStore,
    data_dir: &Path,
    tmp: &Path,
) -> MaintenanceResult<BackupReport> {
    let (database_file, names, uploads_left_out) = match db.backend() {
        Backend::Sqlite => {
            let snapshot = tmp.join("vault.db");
            snapshot_sqlite(&mut *db.conn()?, &snapshot)?;
            let (names, left_out) = prepare_snapshot(&snapshot)?;
            ("vault.db", names, left_out)
        }
        Backend::Postgres => {
            dump_postgres(database_url, &tmp.join("vault.sql"))?;
            ("vault.sql", live_blob_names(&mut *db.conn()?)?, 0)
        }
    };
    let blob_root = tmp.join("blobs");
    FsBlobStore::open(&blob_root)
        .map_err(|e| MaintenanceError::io("cannot create the backup's blob store", e))?;
    let mut report = BackupReport {
        dest: tmp.to_path_buf(),
        database_file: database_file.into(),
        blobs: 0,
        blob_bytes: 0,
        missing_blobs: Vec::new(),
        uploads_left_out,
        tls_copied: false,
    };
    for name in names {
        let Some(id) = BlobId::parse(&name) else {
            report.missing_blobs.push(name);
            continue;
        };
        let size = store
            .size(&id)
            .map_err(|e| MaintenanceError::io(format!("cannot stat blob {id}"), e))?;
        let Some(size) = size else {
            report.missing_blobs.push(name);
            continue;
        };
        store
            .copy_to(&id, &blob_root)
            .map_err(|e| MaintenanceError::io(format!("cannot copy blob {id}"), e))?;
        report.blobs += 1;
        report.blob_bytes += size;
    }
    report.tls_copied = copy_tls(data_dir, tmp)?;
    sync_dir(tmp)?;
    Ok(report)
}

/// `VACUUM INTO`: a consistent copy of the live SQLite database.
fn snapshot_sqlite(conn: &mut DbConn, to: &Path) -> MaintenanceResult<()> {
    let DbConn::Sqlite(c) = conn else {
        return Err(MaintenanceError::Refused(
            "not a SQLite database".to_string(),
        ));
    };
    let path = to.to_str().ok_or_else(|| {
        MaintenanceError::Refused(format!(
            "{} is not valid UTF-8: choose a plainer backup path",
            to.display()
        ))
    })?;
    diesel::sql_query("VACUUM INTO ?")
        .bind::<diesel::sql_types::Text, _>(path)
        .execute(c)
        .map_err(DbError::Query)?;
    fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| MaintenanceError::io("cannot sync the database snapshot", e))?;
    Ok(())
}

/// Drops unfinished uploads (and the invisible entries only they kept) and the deletion
/// queue from the snapshot, and returns the blob ids its versions and chunks name.
fn prepare_snapshot(snapshot: &Path) -> MaintenanceResult<(BTreeSet<String>, u64)> {
    let path = snapshot.to_str().unwrap_or_default();
    let conn = diesel::SqliteConnection::establish(path).map_err(|e| DbError::Open {
        url: path.to_string(),
        reason: e.to_string(),
    })?;
    let mut conn = DbConn::Sqlite(conn);
    let c = &mut conn;
    let left_out = db::transaction(c, |c| {
        let pending: Vec<i64> = uploads::table.select(uploads::entry_id).load(c)?;
        let n = diesel::delete(uploads::table).execute(c)?;
        for entry in pending {
            super::purge::delete_if_abandoned(c, entry)?;
        }
        diesel::delete(deleted_blobs::table).execute(c)?;
        Ok::<_, DbError>(n as u64)
    })?;
    let mut names: BTreeSet<String> = versions::table
        .select(versions::blob_id)
        .load::<String>(c)?
        .into_iter()
        .collect();
    names.extend(crate::db::files::chunks::blob_ids(c)?);
    Ok((names, left_out))
}

/// The blobs the live database names: versions, chunks, and those queued for deletion (still on
/// disk for the grace period, possibly named by the dump taken just before).
fn live_blob_names(conn: &mut DbConn) -> MaintenanceResult<BTreeSet<String>> {
    let mut names: BTreeSet<String> = versions::table
        .select(versions::blob_id)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    names.extend(crate::db::files::chunks::blob_ids(conn)?);
    names.extend(
        deleted_blobs::table
            .select(deleted_blobs::blob_id)
            .load::<String>(conn)?,
    );
    Ok(names)
}

/// Runs `pg_dump` into `to`. The password (if any) goes through `PGPASSWORD`, not the
/// command line.
fn dump_postgres(url: &str, to: &Path) -> MaintenanceResult<()> {
    let (url, password) = split_password(url);
    let mut cmd = Command::new("pg_dump");
    cmd.arg("--no-owner")
        .arg("--format=plain")
        .arg("--file")
        .arg(to)
        .arg("--dbname")
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let output = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(MaintenanceError::Refused(
                "a PostgreSQL backup needs pg_dump on PATH: install the PostgreSQL client \
                 tools (e.g. the postgresql-client package) and run the backup again"
                    .to_string(),
            ));
        }
        Err(e) => return Err(MaintenanceError::io("cannot run pg_dump", e)),
    };
    if !output.status.success() {
        return Err(MaintenanceError::Refused(format!(
            "pg_dump failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// `postgres://u:secret@h/db` → (`postgres://u@h/db`, `Some("secret")`).
fn split_password(url: &str) -> (String, Option<String>) {
    if let (Some(scheme_end), Some(at)) = (url.find("://"), url.rfind('@'))
        && at > scheme_end
    {
        let creds = &url[scheme_end + 3..at];
        if let Some((user, password)) = creds.split_once(':') {
            return (
                format!("{}{user}{}", &url[..scheme_end + 3], &url[at..]),
                Some(password.to_string()),
            );
        }
    }
    (url.to_string(), None)
}

/// Copies `tls/cert.pem` and `tls/key.pem` (mode 0600) if present.
fn copy_tls(data_dir: &Path, tmp: &Path) -> MaintenanceResult<bool> {
    let cert = crate::tls::cert_path(data_dir);
    let key = crate::tls::key_path(data_dir);
    if !cert.exists() || !key.exists() {
        return Ok(false);
    }
    let dir = tmp.join("tls");
    fsutil::create_private_dir(&dir)
        .map_err(|e| MaintenanceError::io("cannot create tls/ in the backup", e))?;
    for (from, mode) in [(&cert, 0o644), (&key, 0o600)] {
        let data = fs::read(from)
            .map_err(|e| MaintenanceError::io(format!("cannot read {}", from.display()), e))?;
        let to = dir.join(from.file_name().unwrap_or_default());
        fsutil::write_atomic(&to, &data, mode)
            .map_err(|e| MaintenanceError::io(format!("cannot write {}", to.display()), e))?;
    }
    Ok(true)
}

fn sync_dir(dir: &Path) -> MaintenanceResult<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| MaintenanceError::io(format!("cannot sync {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn passwords_leave_the_url() {
        assert_eq!(
            split_password("postgres://vault:s3cr:et@db:5432/vault"),
            (
                "postgres://vault@db:5432/vault".to_string(),
                Some("s3cr:et".to_string())
            )
        );
        assert_eq!(
            split_password("postgres://db/vault"),
            ("postgres://db/vault".to_string(), None)
        );
    }

    #[test]
    fn a_backup_holds_the_snapshot_and_exactly_the_named_blobs() -> TestResult {
        let t = Fixture::new()?;
        let c = &mut *t.conn()?;
        let ns = t.namespace(c, 1)?;
        let f = t.entry(c, ns, "f", Some(2))?;
        let (_, b1) = t.version(c, f, 1, 10)?;
        let (_, b2) = t.version(c, f, 2, 20)?;
        t.set_used(c, ns, 30)?;
        let pending = t.entry(c, ns, "p", None)?;
        t.upload(c, ns, pending, NOW + 60, b"partial")?;
        let orphan = t.blob(b"orphan")?;
        let data_dir = t.dir.path();
        fsutil::create_private_dir(&data_dir.join("tls"))?;
        fs::write(crate::tls::cert_path(data_dir), "CERT")?;
        fs::write(crate::tls::key_path(data_dir), "KEY")?;

        let out = tempfile::tempdir()?;
        let dest = out.path().join("b1");
        let url = data_dir.join("vault.db").display().to_string();
        let report = backup(&t.db, &url, &t.store, data_dir, &dest)?;
        assert_eq!(report.blobs, 2);
        assert_eq!(report.blob_bytes, 30);
        assert_eq!(report.uploads_left_out, 1);
        assert!(report.missing_blobs.is_empty());
        assert!(report.tls_copied);
        assert_eq!(fs::read_to_string(dest.join("tls/key.pem"))?, "KEY");

        let copy = FsBlobStore::open(dest.join("blobs"))?;
        assert_eq!(copy.size(&b1)?, Some(10));
        assert_eq!(copy.size(&b2)?, Some(20));
        assert_eq!(copy.size(&orphan)?, None);
        assert!(copy.list_partials()?.is_empty());
        // The copy opens as a database and is clean.
        let restored = Db::open(&dest.join("vault.db").display().to_string())?;
        let rc = &mut *restored.conn()?;
        assert!(rows_entry_exists(rc, f)?);
        assert!(!rows_entry_exists(rc, pending)?);
        let fsck = super::super::fsck(rc, &copy, false, NOW)?;
        assert!(fsck.is_clean(), "{:#?}", fsck.findings);
        // No temporary directory is left beside it.
        assert_eq!(fs::read_dir(out.path())?.count(), 1);

        // A non-empty destination is refused; an empty one is fine.
        let err = backup(&t.db, &url, &t.store, data_dir, &dest).err();
        assert!(matches!(err, Some(MaintenanceError::Refused(m)) if m.contains("not empty")));
        let empty = out.path().join("empty");
        fs::create_dir(&empty)?;
        backup(&t.db, &url, &t.store, data_dir, &empty)?;
        // Inside the data directory is refused.
        let inside = data_dir.join("backup");
        let err = backup(&t.db, &url, &t.store, data_dir, &inside).err();
        assert!(matches!(err, Some(MaintenanceError::Refused(m)) if m.contains("inside")));
        Ok(())
    }

    fn rows_entry_exists(c: &mut DbConn, id: i64) -> R<bool> {
        Ok(super::super::rows::entry(c, id)?.is_some())
    }
}
