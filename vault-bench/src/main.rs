//! `vault-bench`: measures Vault on this machine against ceilings measured in the same run
//! (README.md, Benchmarks). It starts real `vault-server`s on loopback in temp dirs and drives the
//! real `vault` binary, from `target/release/` (it builds nothing), and prints one table of
//! figures, each with its ratio to its ceiling or target.

mod capacity;
mod ceiling;
mod chat;
mod chunking;
mod cpu;
mod data;
mod delta;
mod procs;
mod report;
mod scale;
mod scenarios;
mod stages;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use report::Report;

/// Benchmarks of a real vault-server and vault on loopback, with the raw QUIC and AEAD
/// ceilings of the same machine.
#[derive(Debug, Parser)]
#[command(name = "vault-bench", version)]
struct Args {
    /// Smaller sizes for a smoke run: 64 MiB instead of 1 GiB, 500 files instead of 10,000,
    /// 200 chat messages instead of 2,000, one run.
    #[arg(long)]
    quick: bool,
    /// Runs per timing figure; the table shows the median (default 3, 1 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    runs: Option<u16>,
    /// Size of the large file in MiB (default 1024, 64 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    size_mib: Option<u64>,
    /// Number of small files (default 10000, 500 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    files: Option<u64>,
    /// Number of small files under the idle watch of `--only watch` (default 100000, 2000
    /// with --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    idle_files: Option<u64>,
    /// Lift the server's per-connection request rate limit (default 2000/s, bursts of
    /// 4000) for the small-file rows, to measure the code rather than the limit.
    #[arg(long)]
    lift_limits: bool,
    /// Directory of the vault-server and vault binaries (default: this executable's).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Run one phase only: `big` (the ceilings, then put and get of the large file, as
    /// chunks and whole), `delta` (format 2: what an edit moves and stores), `scale` (S3
    /// and chat across instances), `capacity` (the cost of each action, for
    /// docs/SCALING.md; these two need the services they name) or `watch` (`vault sync
    /// --watch`: how soon a change crosses, and what a watch costs idle).
    #[arg(long, value_parser = ["big", "delta", "scale", "capacity", "watch"])]
    only: Option<String>,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    // The receiving side of the two-process quinn transfer (`ceiling`), not for people.
    if std::env::args().nth(1).as_deref() == Some(ceiling::RECEIVER_FLAG) {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        return match ceiling::serve_one_transfer() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("error: cannot encode the report: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report.table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<Report> {
    let bins = procs::Bins::find(args.bin_dir.clone())?;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let plan = scenarios::Plan {
        runs: usize::from(args.runs.unwrap_or(if args.quick { 1 } else { 3 })),
        big_bytes: args.size_mib.unwrap_or(if args.quick { 64 } else { 1024 }) << 20,
        small_files: usize::try_from(args.files.unwrap_or(if args.quick { 500 } else { 10_000 }))?,
        idle_files: usize::try_from(args.idle_files.unwrap_or(if args.quick {
            2_000
        } else {
            100_000
        }))?,
        idle_watches: if args.quick { 10 } else { 100 },
        changes: 100,
        chat_messages: if args.quick { 200 } else { 2000 },
        limits: if args.lift_limits {
            scenarios::LIFTED_LIMITS.to_string()
        } else {
            String::new()
        },
    };
    let rows = scenarios::run(&bins, &plan, args.only.as_deref())?;
    Ok(Report {
        mode: if args.quick { "quick" } else { "full" },
        runs: plan.runs,
        big_file_bytes: plan.big_bytes,
        small_files: plan.small_files,
        chat_messages: plan.chat_messages,
        server_limits: if args.lift_limits {
            "request rate lifted (requests_per_second = request_burst = 1000000)".to_string()
        } else {
            "defaults".to_string()
        },
        rows,
    })
}
