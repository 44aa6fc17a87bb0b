//! `vault-admin migrate-blobs --to s3|fs`: copies every sealed blob from the store the
//! configuration uses now into the other one (the bucket of the `storage.s3_*` keys, or
//! `<data-dir>/blobs`), while the server runs. Then: stop the server, run it once more
//! (it copies what arrived meanwhile), set `storage.kind`, start the server, and run
//! `vault-admin fsck`. Audited.

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use vault_server::DataDir;
use vault_server::blobs::{self, BlobStore};
use vault_server::maintenance::{self, MoveReport};

use crate::context::{Ctx, record};
use crate::out::outln;
use crate::output::{self, plural};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// The bucket of the storage.s3_* settings.
    S3,
    /// The data directory's blobs/ folder.
    Fs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::S3 => "s3",
            Kind::Fs => "fs",
        }
    }
}

#[derive(Debug, Args)]
pub struct MigrateBlobsArgs {
    /// The store to copy into; the one storage.kind names now is copied from.
    #[arg(long, value_enum)]
    to: Kind,
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, args: MigrateBlobsArgs) -> anyhow::Result<()> {
    let storage = &ctx.config.storage;
    if storage.kind == args.to.name() {
        bail!(
            "storage.kind is already {:?}: migrate-blobs copies from the store in use into \
             the other one (--to {})",
            storage.kind,
            if args.to == Kind::S3 { "fs" } else { "s3" }
        );
    }
    let db = ctx.db()?;
    let from = ctx.blobs()?;
    let to = open_target(ctx, args.to)?;
    let target = describe(ctx, args.to);
    eprintln!("copying blobs into {target}");
    let report = maintenance::copy_blobs(from.as_ref(), to.as_ref(), &mut |r| {
        eprint!(
            "\r{} copied ({}), {} already there",
            r.copied,
            output::size(i64::try_from(r.copied_bytes).unwrap_or(i64::MAX)),
            r.present
        );
    })
    .with_context(|| format!("copying blobs into {target} stopped; run it again to go on"))?;
    eprintln!();
    record(
        &mut *db.conn()?,
        "blobs_migrated",
        None,
        &format!(
            "into {target}: {} of {} copied ({} bytes), {} already there",
            report.copied, report.blobs, report.copied_bytes, report.present
        ),
    )?;
    if args.json {
        output::print_json(&report)?;
    } else {
        render(&report, &target, args.to)?;
    }
    Ok(())
}

fn open_target(ctx: &Ctx, to: Kind) -> anyhow::Result<std::sync::Arc<dyn BlobStore>> {
    let mut storage = ctx.config.storage.clone();
    storage.kind = to.name().into();
    let root = DataDir(ctx.config.data_dir.clone()).blobs();
    blobs::open(&storage, &root).with_context(|| {
        format!(
            "cannot open {}: {}",
            describe(ctx, to),
            if to == Kind::S3 {
                "set the storage.s3_* keys (storage.kind stays \"fs\" until the copy is done)"
            } else {
                "check --data-dir"
            }
        )
    })
}

fn describe(ctx: &Ctx, kind: Kind) -> String {
    match kind {
        Kind::S3 => ctx.config.storage.s3().describe(),
        Kind::Fs => DataDir(ctx.config.data_dir.clone())
            .blobs()
            .display()
            .to_string(),
    }
}

fn render(r: &MoveReport, target: &str, to: Kind) -> anyhow::Result<()> {
    outln!(
        "{} of {} copied into {target} ({}); {} already there{}",
        plural(r.copied, "blob", "blobs"),
        r.blobs,
        output::size(i64::try_from(r.copied_bytes).unwrap_or(i64::MAX)),
        r.present,
        if r.vanished > 0 {
            format!("; {} removed by gc meanwhile", r.vanished)
        } else {
            String::new()
        }
    )?;
    outln!(
        "next: stop the server, run this once more, set storage.kind = \"{}\", start the \
         server, and run `vault-admin fsck`",
        to.name()
    )?;
    Ok(())
}
