//! `vault-admin gc`: removes expired uploads, trash past `trash_retention`, versions past
//! `version_retention`, deleted and orphan blobs past `files.blob_grace_s` (the same run
//! the server makes every `files.gc_interval_s`). Audited when it removed something.

use std::process::ExitCode;

use clap::Args;
use vault_server::maintenance::{self, GcReport, Policy};

use crate::context::{Ctx, record};
use crate::out::out;
use crate::output::{self, plural};

#[derive(Debug, Args)]
pub struct GcArgs {
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, args: GcArgs) -> anyhow::Result<ExitCode> {
    let db = ctx.db()?;
    let store = ctx.blobs()?;
    let conn = &mut *db.conn()?;
    let policy = Policy::from_config(&ctx.config);
    let report = maintenance::gc(conn, store.as_ref(), &policy, output::now())?;
    if !report.is_empty() {
        record(conn, "gc", None, &report.summary())?;
    }
    if args.json {
        output::print_json(&report)?;
    } else {
        out!("{}", render(&report, &policy))?;
    }
    if report.errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn render(r: &GcReport, policy: &Policy) -> String {
    if r.is_empty() {
        return format!(
            "nothing to collect (trash kept {}, {} per file, blobs kept {}s after deletion)\n",
            plural(policy.trash_retention_days, "day", "days"),
            plural(policy.version_retention, "version", "versions"),
            policy.blob_grace_s
        );
    }
    let size = |b: i64| output::size(b);
    let usize_ = |b: u64| output::size(i64::try_from(b).unwrap_or(i64::MAX));
    output::render_fields(&[
        (
            "expired uploads",
            format!(
                "{} ({} abandoned)",
                r.expired_uploads,
                plural(r.abandoned_entries, "new file", "new files")
            ),
        ),
        (
            "expired trash",
            format!(
                "{}, {}, {}",
                plural(r.trash_items, "item", "items"),
                plural(r.trash_entries, "entry", "entries"),
                size(r.trash_bytes)
            ),
        ),
        (
            "old versions",
            format!("{}, {}", r.pruned_versions, size(r.pruned_bytes)),
        ),
        (
            "deleted blobs removed",
            format!("{}, {}", r.deleted_blobs, usize_(r.deleted_blob_bytes)),
        ),
        (
            "orphan blobs removed",
            format!("{}, {}", r.orphan_blobs, usize_(r.orphan_blob_bytes)),
        ),
        (
            "orphan partials removed",
            format!("{}, {}", r.orphan_partials, usize_(r.orphan_partial_bytes)),
        ),
    ])
}
