//! The measured phases, in order: the ceilings; the stages of a large `put` and `get` on
//! their own ([`stages`]); a fresh server for the large `put` and `get` (its peak RSS
//! covers exactly that phase, its CPU time is read around each run); the delta rows of
//! format 2 on their own server ([`crate::delta`]); another fresh
//! server for the small files — `put -r` of a flat directory, `ls` of it, and `vault sync`
//! when the CLI has it; a third for the chat relay ([`chat`]); then the S3 store and two
//! instances ([`crate::scale`]).

use std::path::Path;

use anyhow::Context;

use crate::ceiling;
use crate::chat;
use crate::data;
use crate::procs::{Bins, Client, Server};
use crate::report::{Row, median};
use crate::stages;

/// The `[limits]` lines that lift the per-connection request rate limit.
pub const LIFTED_LIMITS: &str = "requests_per_second = 1000000\nrequest_burst = 1000000\n";

/// The peak RSS target for every process.
const RSS_LIMIT_MIB: f64 = 64.0;
const MB: f64 = 1e6;
const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// What to measure.
#[derive(Debug)]
pub struct Plan {
    pub runs: usize,
    pub big_bytes: u64,
    pub small_files: usize,
    /// Files under the idle watch (`watch`).
    pub idle_files: usize,
    /// Idle watching clients the server holds at once (`watch`).
    pub idle_watches: usize,
    pub changes: usize,
    /// Chat messages sent from one user to another.
    pub chat_messages: usize,
    /// The server's `[limits]` lines.
    pub limits: String,
}

/// Runs every phase and returns the rows of the table.
pub fn run(bins: &Bins, plan: &Plan, only: Option<&str>) -> anyhow::Result<Vec<Row>> {
    let work = tempfile::tempdir().context("cannot make a temp dir")?;
    let mut rows = Vec::new();
    match only {
        Some("big") => {
            let quinn = ceilings(plan, &mut rows)?;
            big_files(bins, plan, work.path(), quinn, &mut rows)?;
        }
        Some("delta") => crate::delta::rows(bins, plan, work.path(), &mut rows)?,
        Some("scale") => crate::scale::rows(bins, plan, work.path(), &mut rows)?,
        Some("capacity") => crate::capacity::rows(bins, plan, work.path(), &mut rows)?,
        Some("watch") => crate::watch::rows(bins, plan, work.path(), &mut rows)?,
        _ => run_all(bins, plan, work.path(), &mut rows)?,
    }
    Ok(rows)
}

fn run_all(bins: &Bins, plan: &Plan, work: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let quinn = ceilings(plan, rows)?;
    big_files(bins, plan, work, quinn, rows)?;
    crate::delta::rows(bins, plan, work, rows)?;
    small_files(bins, plan, work, rows)?;
    crate::watch::rows(bins, plan, work, rows)?;
    chat::relay(bins, plan, work, rows)?;
    crate::scale::rows(bins, plan, work, rows)?;
    crate::capacity::rows(bins, plan, work, rows)?;
    Ok(())
}

fn note(what: &str) {
    eprintln!("vault-bench: {what}");
}

/// The raw quinn ceiling as the other phases use it: rate, and CPU per byte with the
/// share of the cores it kept busy (medians over the runs).
#[derive(Clone, Copy, Debug)]
struct Quinn {
    rate: f64,
    cpu_per_byte: f64,
    busy: f64,
}

/// The raw quinn and AEAD ceilings.
fn ceilings(plan: &Plan, rows: &mut Vec<Row>) -> anyhow::Result<Quinn> {
    let size = plan.big_bytes;
    let (mut quinn, mut apart, mut aead, mut chunker) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 1..=plan.runs {
        note(&format!(
            "raw quinn, {} MiB on one stream (run {run})",
            size >> 20
        ));
        quinn.push(ceiling::quinn_bulk(size)?);
        note(&format!(
            "raw quinn into a second process, {} MiB (run {run})",
            size >> 20
        ));
        apart.push(ceiling::quinn_bulk_two_processes(size)?);
        note(&format!("raw AES-256-GCM, {} MiB (run {run})", size >> 20));
        aead.push(ceiling::aead_seal(size)?);
        note(&format!(
            "keyed chunker and chunk ids, {} MiB (run {run})",
            size >> 20
        ));
        chunker.push(crate::chunking::cut_and_identify(size)?);
    }
    let of = |transfers: &[ceiling::Transfer]| Quinn {
        rate: median(&transfers.iter().map(|t| t.rate).collect::<Vec<_>>()),
        cpu_per_byte: median(&transfers.iter().map(|t| t.cpu_per_byte).collect::<Vec<_>>()),
        busy: median(&transfers.iter().map(|t| t.busy).collect::<Vec<_>>()),
    };
    let (quinn, apart) = (of(&quinn), of(&apart));
    rows.push(Row::info(
        "raw quinn bulk transfer (ceiling)",
        quinn.rate / MB,
        "MB/s",
        "loopback, one stream",
    ));
    rows.push(Row::info(
        "raw quinn CPU",
        quinn.cpu_per_byte * GIB,
        "CPU-s/GiB",
        &format!(
            "both endpoints; {:.0} % of {} cores busy",
            quinn.busy * 100.0,
            crate::cpu::cores()
        ),
    ));
    rows.push(Row::info(
        "raw quinn into a second process",
        apart.rate / MB,
        "MB/s",
        &format!(
            "not a ceiling: the receiver in its own process; {:.2} CPU-s/GiB, {:.0} % busy",
            apart.cpu_per_byte * GIB,
            apart.busy * 100.0
        ),
    ));
    rows.push(Row::info(
        "raw AES-256-GCM seal (ceiling)",
        median(&aead) / MB,
        "MB/s",
        "one core, 1 MiB chunks",
    ));
    rows.push(Row::at_least(
        "keyed chunker + chunk ids (format v2)",
        median(&chunker) / MB,
        "MB/s",
        1000.0,
        1.0,
        "≥ 1 GB/s on one core",
    ));
    Ok(quinn)
}

/// What one `put` or `get` cost: wall time, peak RSS of the client, CPU of each side.
#[derive(Debug, Default)]
struct Transfers {
    rates: Vec<f64>,
    peak_rss: u64,
    client_cpu: Vec<f64>,
    server_cpu: Vec<f64>,
}

impl Transfers {
    /// Runs `vault ARGS` and notes what it cost.
    fn run(
        &mut self,
        server: &Server,
        client: &Client,
        args: &[&str],
        size: u64,
    ) -> anyhow::Result<()> {
        let before = server.cpu()?;
        let done = server.explain(client.run(args, None))?;
        let server_cpu = server.cpu()?.saturating_sub(before);
        self.rates.push(ceiling::rate(size, done.elapsed));
        self.peak_rss = self.peak_rss.max(done.peak_rss);
        if let Some(cpu) = done.cpu {
            self.client_cpu.push(cpu.as_secs_f64() / size as f64);
        }
        self.server_cpu.push(server_cpu.as_secs_f64() / size as f64);
        Ok(())
    }
}

/// `put` and `get` of one large file on a fresh server, and the peak RSS of each process;
/// the CPU each took, and the stages they add to the transport measured on their own.
fn big_files(
    bins: &Bins,
    plan: &Plan,
    work: &Path,
    quinn: Quinn,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let size = plan.big_bytes;
    let label = human_size(size);
    let source = work.join("big.bin");
    note(&format!("writing a {label} file"));
    data::big_file(&source, size)?;
    let mut measured = Vec::new();
    for run in 1..=plan.runs {
        note(&format!(
            "the stages of put and get on their own (run {run})"
        ));
        measured.push(stages::measure(&source, work)?);
    }
    let server = Server::start(bins, &plan.limits)?;
    let client = server.explain(Client::register(bins, &server, "bench"))?;
    let source_arg = source.to_str().context("temp dir path is not UTF-8")?;
    // Each run puts the file as chunks (format 2, what `put` does) and whole (format 1,
    // `--whole-file`, what every release before format 2 did), one after the other.
    let (mut put, mut put_whole) = (Transfers::default(), Transfers::default());
    for run in 1..=plan.runs {
        note(&format!("put {label}, as chunks and whole (run {run})"));
        // New bytes and a new name each run: the space stores each chunk once, so the
        // same bytes again would send nothing.
        if run > 1 {
            data::big_file(&source, size)?;
        }
        let remote = format!("/big-{run}.bin");
        put.run(&server, &client, &["put", source_arg, &remote], size)?;
        let remote = format!("/whole-{run}.bin");
        let whole = ["put", source_arg, &remote, "--whole-file"];
        put_whole.run(&server, &client, &whole, size)?;
    }
    let last = format!("/big-{}.bin", plan.runs);
    let last_whole = format!("/whole-{}.bin", plan.runs);
    let target = work.join("big.out");
    let target_arg = target.to_str().context("temp dir path is not UTF-8")?;
    let (mut get, mut get_whole) = (Transfers::default(), Transfers::default());
    for run in 1..=plan.runs {
        note(&format!("get {label}, as chunks and whole (run {run})"));
        for (remote, transfers) in [(&last, &mut get), (&last_whole, &mut get_whole)] {
            let _ = std::fs::remove_file(&target);
            transfers.run(&server, &client, &["get", remote, target_arg], size)?;
            if run == 1 {
                same_contents(&source, &target)?;
            }
        }
    }
    let server_rss = server.peak_rss()?;
    server.stop()?;
    let _ = std::fs::remove_file(&target);
    let _ = std::fs::remove_file(&source);

    let quinn_ref = format!("≥ 0.9 × raw quinn ({:.0} MB/s)", quinn.rate / MB);
    for (what, transfers) in [("put", &put), ("get", &get)] {
        rows.push(Row::at_least(
            &format!("{what} {label}"),
            median(&transfers.rates) / MB,
            "MB/s",
            quinn.rate / MB,
            0.9,
            &quinn_ref,
        ));
    }
    for (what, chunks, whole) in [("put", &put, &put_whole), ("get", &get, &get_whole)] {
        let mut row = Row::at_least(
            &format!("{what} {label}: as chunks ÷ whole (format 2 ÷ format 1)"),
            median(&chunks.rates) / median(&whole.rates),
            "×",
            1.0,
            0.95,
            "≥ 0.95 × format 1 in the same run",
        );
        let cpu = |t: &Transfers| {
            let per_gib = |v: &[f64]| median(v) * (1u64 << 30) as f64;
            format!(
                "client {:.2} + server {:.2} CPU-s/GiB",
                per_gib(&t.client_cpu),
                per_gib(&t.server_cpu)
            )
        };
        row.note = Some(format!(
            "{what} as chunks {:.0} MB/s, {}, client peak RSS {:.0} MiB; whole {:.0} MB/s, \
             {}, client peak RSS {:.0} MiB",
            median(&chunks.rates) / MB,
            cpu(chunks),
            chunks.peak_rss as f64 / MIB,
            median(&whole.rates) / MB,
            cpu(whole),
            whole.peak_rss as f64 / MIB,
        ));
        rows.push(row);
    }
    let per_gib = |f: fn(&stages::Stages) -> std::time::Duration| {
        median(
            &measured
                .iter()
                .map(|s| f(s).as_secs_f64() / size as f64)
                .collect::<Vec<_>>(),
        )
    };
    cpu_rows(
        "put",
        &put,
        [per_gib(|s| s.put_client), per_gib(|s| s.put_server)],
        quinn,
        rows,
    );
    cpu_rows(
        "get",
        &get,
        [per_gib(|s| s.get_client), per_gib(|s| s.get_server)],
        quinn,
        rows,
    );
    for (figure, bytes) in [
        (format!("client peak RSS, put {label}"), put.peak_rss),
        (format!("client peak RSS, get {label}"), get.peak_rss),
        (format!("server peak RSS, put+get {label}"), server_rss),
    ] {
        rows.push(rss_row(&figure, bytes));
    }
    Ok(())
}

/// The CPU a transfer took on each side, the CPU its stages took on their own
/// (`[client, server]`, seconds per byte), and the highest ratio to the raw quinn rate
/// those stages leave room for: the transfer needs at least the ceiling's CPU for the
/// transport plus its stages, and can at best keep every core busy where the ceiling kept
/// `quinn.busy` of them, so its rate is at most
/// `raw quinn rate × quinn CPU ÷ (quinn.busy × (quinn CPU + stages CPU))`.
fn cpu_rows(
    what: &str,
    transfers: &Transfers,
    [client_stages, server_stages]: [f64; 2],
    quinn: Quinn,
    rows: &mut Vec<Row>,
) {
    let stages = client_stages + server_stages;
    if transfers.client_cpu.is_empty() {
        rows.push(Row::not_available(
            &format!("{what} CPU"),
            "CPU-s/GiB",
            "client + server",
            "no /usr/bin/time",
        ));
    } else {
        let (client, server) = (median(&transfers.client_cpu), median(&transfers.server_cpu));
        rows.push(Row::info(
            &format!("{what} CPU"),
            (client + server) * GIB,
            "CPU-s/GiB",
            &format!(
                "client {:.2} + server {:.2}; less the stages: {:.2}",
                client * GIB,
                server * GIB,
                (client + server - stages) * GIB
            ),
        ));
    }
    rows.push(Row::info(
        &format!("{what} stages alone"),
        stages * GIB,
        "CPU-s/GiB",
        &format!(
            "client {:.2} + server {:.2}, one thread, no network",
            client_stages * GIB,
            server_stages * GIB
        ),
    ));
    let bound = quinn.cpu_per_byte / (quinn.busy * (quinn.cpu_per_byte + stages));
    rows.push(Row::info(
        &format!("{what}: best ratio possible here"),
        bound,
        "× quinn",
        "raw quinn CPU ÷ (its busy share × (raw quinn CPU + stages))",
    ));
}

/// Small files on a fresh server: `put -r` of a flat directory, `ls` of it, and the
/// first and an incremental `vault sync` of a tree when the CLI has the command.
fn small_files(bins: &Bins, plan: &Plan, work: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let count = plan.small_files;
    let server = Server::start(bins, &plan.limits)?;
    let client = server.explain(Client::register(bins, &server, "bench"))?;
    let flat = work.join("flat");
    note(&format!("writing {count} files of 1–16 KiB"));
    data::small_tree(&flat, count, true)?;
    let flat_arg = flat.to_str().context("temp dir path is not UTF-8")?;
    let (mut put_rates, mut put_rss) = (Vec::new(), 0);
    for run in 1..=plan.runs {
        note(&format!("put -r of {count} small files (run {run})"));
        let done =
            server.explain(client.run(&["put", "-r", flat_arg, &format!("/small-{run}")], None))?;
        put_rates.push(count as f64 / done.elapsed.as_secs_f64());
        put_rss = put_rss.max(done.peak_rss);
    }
    rows.push(Row::info(
        &format!("put -r {count} small files"),
        median(&put_rates),
        "files/s",
        "what a first sync costs at least",
    ));
    rows.push(rss_row(
        &format!("client peak RSS, put -r {count} files"),
        put_rss,
    ));

    // `ls` shows names; `ls -l` also each file's size, time and version count, which
    // costs the server its versions and this side a key unwrap and a metadata open a file.
    for long in [false, true] {
        let args: &[&str] = if long {
            &["ls", "-l", "/small-1"]
        } else {
            &["ls", "/small-1"]
        };
        let shown = args.join(" ");
        let mut ls_ms = Vec::new();
        for run in 1..=plan.runs.max(3) {
            note(&format!("{shown} (run {run})"));
            let done = server.explain(client.run(args, None))?;
            let listed = done.stdout.lines().filter(|l| !l.trim().is_empty()).count();
            anyhow::ensure!(
                listed >= count,
                "`vault {shown}` printed {listed} lines, expected {count} entries"
            );
            ls_ms.push(done.elapsed.as_secs_f64() * 1000.0);
        }
        let flag = if long { " -l" } else { "" };
        rows.push(Row::at_most(
            &format!("ls{flag} of {count} entries"),
            median(&ls_ms),
            "ms",
            100.0,
            "≤ 100 ms",
        ));
    }

    sync_rows(&server, &client, plan, work, rows)?;
    let server_rss = server.peak_rss()?;
    server.stop()?;
    rows.push(rss_row("server peak RSS, small files", server_rss));
    Ok(())
}

/// The first sync of a tree of small files, then a sync after `plan.changes` of them
/// changed; "not available" rows when `vault sync` does not exist.
fn sync_rows(
    server: &Server,
    client: &Client,
    plan: &Plan,
    work: &Path,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let count = plan.small_files;
    let first = format!("first sync of {count} files");
    let incremental = format!("incremental sync, {} changed", plan.changes);
    if !client.has_sync() {
        let why = "vault sync missing";
        rows.push(Row::not_available(&first, "files/s", "≥ 2000 files/s", why));
        rows.push(Row::not_available(&incremental, "s", "≤ 0.5 s", why));
        return Ok(());
    }
    let (mut first_rates, mut incremental_s, mut rss) = (Vec::new(), Vec::new(), 0);
    for run in 1..=plan.runs {
        let tree = work.join(format!("sync-{run}"));
        data::small_tree(&tree, count, false)?;
        let tree_arg = tree.to_str().context("temp dir path is not UTF-8")?;
        let remote = format!("/sync-{run}");
        note(&format!("first sync of {count} files (run {run})"));
        let done = server.explain(client.run(&["sync", tree_arg, &remote], None))?;
        first_rates.push(count as f64 / done.elapsed.as_secs_f64());
        rss = rss.max(done.peak_rss);
        data::change_some(&tree, count, plan.changes, false)?;
        note(&format!("sync after {} changes (run {run})", plan.changes));
        let done = server.explain(client.run(&["sync", tree_arg, &remote], None))?;
        incremental_s.push(done.elapsed.as_secs_f64());
        rss = rss.max(done.peak_rss);
        std::fs::remove_dir_all(&tree)
            .with_context(|| format!("cannot remove {}", tree.display()))?;
    }
    rows.push(Row::at_least(
        &first,
        median(&first_rates),
        "files/s",
        2000.0,
        1.0,
        "≥ 2000 files/s",
    ));
    rows.push(Row::at_most(
        &incremental,
        median(&incremental_s),
        "s",
        0.5,
        "≤ 0.5 s",
    ));
    rows.push(rss_row(
        &format!("client peak RSS, sync {count} files"),
        rss,
    ));
    Ok(())
}

pub(crate) fn rss_row(figure: &str, bytes: u64) -> Row {
    Row::at_most(figure, bytes as f64 / MIB, "MiB", RSS_LIMIT_MIB, "≤ 64 MiB")
}

/// `64 MiB`, `1 GiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// Fails unless the two files hold the same bytes.
pub(crate) fn same_contents(a: &Path, b: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    let open = |p: &Path| {
        std::fs::File::open(p)
            .map(std::io::BufReader::new)
            .with_context(|| format!("cannot open {}", p.display()))
    };
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        anyhow::ensure!(
            na == nb && ba[..na] == bb[..nb],
            "the downloaded file differs from the uploaded one"
        );
        if na == 0 {
            return Ok(());
        }
    }

    fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
}
