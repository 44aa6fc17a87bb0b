//! `vault-admin fsck [--read-data] [--repair]`: do the database and the blob store agree
//! (and with `--read-data`, does every blob still hold the bytes stored)? Exit 0 and
//! "clean" when they do; exit 1 with the list of problems when not. `--repair` fixes what
//! needs no guessing, says plainly which files lost data, and is audited.

use std::process::ExitCode;

use clap::Args;
use vault_server::maintenance::{self, FsckOptions, FsckReport};

use crate::context::{Ctx, record};
use crate::out::out;
use crate::output::{self, plural};

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Fix what can be fixed without guessing (unreadable versions deleted, orphans
    /// queued for gc, dangling uploads dropped, missing directories created, used bytes
    /// recomputed).
    #[arg(long)]
    repair: bool,
    /// Also read every stored blob and compare it with the BLAKE3 recorded when it was
    /// stored: versions whose bytes changed are reported (and with --repair treated like
    /// missing ones); versions stored before hashes were recorded are reported, and with
    /// --repair get the hash of their bytes as they are now.
    #[arg(long)]
    read_data: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, args: FsckArgs) -> anyhow::Result<ExitCode> {
    let db = ctx.db()?;
    let store = ctx.blobs()?;
    let conn = &mut *db.conn()?;
    let options = FsckOptions {
        repair: args.repair,
        read_data: args.read_data,
    };
    let report = maintenance::fsck_with(conn, store.as_ref(), options, output::now())?;
    if args.repair && !report.is_clean() {
        let repaired = report.findings.len()
            - report
                .findings
                .iter()
                .filter(|f| f.repaired.is_none())
                .count();
        record(
            conn,
            "fsck_repair",
            None,
            &format!(
                "{}{} found, {repaired} repaired, {} lost data{}",
                if args.read_data { "blobs read; " } else { "" },
                plural(report.findings.len(), "problem", "problems"),
                plural(report.lost.len(), "file", "files"),
                report
                    .lost
                    .iter()
                    .map(|l| format!("; {l}"))
                    .collect::<String>()
            ),
        )?;
    }
    if args.json {
        output::print_json(&report)?;
    } else {
        out!("{}", render(&report, options))?;
    }
    Ok(if report.unrepaired() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report for people.
fn render(report: &FsckReport, options: FsckOptions) -> String {
    let c = &report.checked;
    let mut checked = format!(
        "{}, {}, {}, {}, {}, {} checked",
        plural(c.namespaces, "namespace", "namespaces"),
        plural(c.entries, "entry", "entries"),
        plural(c.versions, "version", "versions"),
        plural(c.uploads, "upload", "uploads"),
        plural(c.blobs, "blob", "blobs"),
        plural(c.partials, "partial", "partials")
    );
    if options.read_data {
        checked.push_str(&format!(
            "; {} read ({})",
            plural(c.blobs_read, "blob", "blobs"),
            vault_proto::units::format_size(c.bytes_read)
        ));
    }
    if report.is_clean() && report.errors.is_empty() {
        return format!("clean: {checked}\n");
    }
    let mut out = format!(
        "{} found ({checked}):\n",
        plural(report.findings.len(), "problem", "problems")
    );
    for f in &report.findings {
        match &f.repaired {
            Some(what) => out.push_str(&format!("  {} -> repaired: {what}\n", f.problem)),
            None => out.push_str(&format!("  {}\n", f.problem)),
        }
    }
    if !report.lost.is_empty() {
        out.push_str("files that lost data (names are encrypted; the owner sees them with `vault versions`):\n");
        for l in &report.lost {
            out.push_str(&format!("  {l}\n"));
        }
    }
    for e in &report.errors {
        out.push_str(&format!("  repair failed: {e}\n"));
    }
    if !options.repair {
        let again = if options.read_data {
            "fsck --read-data --repair"
        } else {
            "fsck --repair"
        };
        out.push_str(&format!(
            "run `vault-admin {again}` to fix what can be fixed\n"
        ));
    } else if report.unrepaired() == 0 {
        out.push_str("all repaired\n");
    } else {
        out.push_str(&format!(
            "{} left: see above\n",
            plural(report.unrepaired(), "problem", "problems")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vault_server::maintenance::Problem;
    use vault_server::maintenance::fsck::Finding;

    #[test]
    fn clean_and_unclean_reports_read_plainly() {
        let check = FsckOptions::default();
        let repair = FsckOptions {
            repair: true,
            read_data: false,
        };
        let clean = FsckReport::default();
        assert!(render(&clean, check).starts_with("clean: 0 namespaces, 0 entries"));
        let mut read = FsckReport::default();
        read.checked.blobs_read = 2;
        read.checked.bytes_read = 3 << 20;
        let read_data = FsckOptions {
            repair: false,
            read_data: true,
        };
        let text = render(&read, read_data);
        assert!(text.starts_with("clean: "), "{text}");
        assert!(text.contains("2 blobs read (3.0 MiB)"), "{text}");
        let mut bad = FsckReport::default();
        bad.findings.push(Finding {
            problem: Problem::OrphanBlob {
                blob_id: "ab".repeat(16),
                size: 3,
            },
            repaired: None,
        });
        let text = render(&bad, check);
        assert!(text.starts_with("1 problem found"), "{text}");
        assert!(text.contains("belongs to no version"), "{text}");
        assert!(text.contains("fsck --repair"), "{text}");
        assert!(render(&bad, read_data).contains("fsck --read-data --repair"));
        bad.findings[0].repaired = Some("queued".into());
        assert!(render(&bad, repair).contains("-> repaired: queued"));
        assert!(render(&bad, repair).ends_with("all repaired\n"));
    }
}
