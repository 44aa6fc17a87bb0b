//! `vault-admin backup DEST`: a consistent copy of the database and the blobs it names,
//! taken while the server runs, plus `tls/` so a server started on it keeps its
//! fingerprint. Audited.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use vault_server::db::Backend;
use vault_server::maintenance::{self, BackupReport};

use crate::context::{Ctx, record};
use crate::out::out;
use crate::output::{self, plural};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// A new (or empty) directory for the backup.
    dest: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, args: BackupArgs) -> anyhow::Result<()> {
    let db = ctx.db()?;
    let store = ctx.blobs()?;
    let url = ctx.config.database_url();
    let report = maintenance::backup(&db, &url, store.as_ref(), &ctx.config.data_dir, &args.dest)?;
    record(
        &mut *db.conn()?,
        "backup",
        None,
        &format!(
            "backup to {}: {}, {} ({} bytes), {} missing",
            report.dest.display(),
            report.database_file,
            plural(report.blobs, "blob", "blobs"),
            report.blob_bytes,
            report.missing_blobs.len()
        ),
    )?;
    if args.json {
        output::print_json(&report)?;
    } else {
        out!("{}", render(&report, db.backend()))?;
    }
    if !report.missing_blobs.is_empty() {
        bail!(
            "the backup at {} is incomplete: {} the database names not in the blob store; \
             run `vault-admin fsck` on the server",
            report.dest.display(),
            plural(report.missing_blobs.len(), "blob", "blobs")
        );
    }
    Ok(())
}

fn render(r: &BackupReport, backend: Backend) -> String {
    let dest = r.dest.display();
    let database = match backend {
        Backend::Sqlite => format!("{} (SQLite snapshot)", r.database_file),
        Backend::Postgres => format!("{} (pg_dump)", r.database_file),
    };
    let mut out = format!("backup written to {dest}\n");
    out.push_str(&output::render_fields(&[
        ("database", database),
        (
            "blobs",
            format!(
                "{} ({}), hard-linked where the filesystem allows",
                r.blobs,
                output::size(i64::try_from(r.blob_bytes).unwrap_or(i64::MAX))
            ),
        ),
        (
            "certificate",
            if r.tls_copied {
                "tls/ copied".into()
            } else {
                "none found".into()
            },
        ),
        (
            "left out",
            format!(
                "{} (clients start them again)",
                plural(
                    r.uploads_left_out,
                    "unfinished upload",
                    "unfinished uploads"
                )
            ),
        ),
    ]));
    match backend {
        Backend::Sqlite => out.push_str(&format!(
            "to restore: stop the server, then run `vault-server --data-dir {dest}` (or move \
             {dest} into place as the data directory)\n"
        )),
        Backend::Postgres => out.push_str(&format!(
            "to restore: load {dest}/vault.sql into an empty database (`psql URL -f \
             {dest}/vault.sql`), then run `vault-server --data-dir {dest} --database-url URL`\n"
        )),
    }
    out
}
