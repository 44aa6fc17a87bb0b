//! The rows of format 2 (content-defined chunks): a large file put, then changed in
//! place by 1 MiB and put again; the bytes that second `put` sent and its time against the
//! first; `get` of the changed file over a copy of the old one; the same edit moved by
//! rsync's delta algorithm (the peer to beat); 100 bytes inserted in the middle; what
//! ten versions of the file store against one copy; and the same edit in a synced folder,
//! moved by `vault sync`. All on one fresh server.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::data;
use crate::procs::{Bins, Client, Server};
use crate::report::Row;
use crate::scenarios::{Plan, human_size, same_contents};

const MIB: u64 = 1 << 20;
/// What an edit of 1 MiB may move: the bound.
const EDIT_LIMIT: f64 = 8.0;

fn note(what: &str) {
    eprintln!("vault-bench: {what}");
}

/// Writes back what the steps before left dirty (a 1 GiB file written or copied), so that
/// the next timed step is not charged for the kernel's writeback of it.
fn settle() -> anyhow::Result<()> {
    let status = Command::new("sync").status().context("cannot run sync")?;
    if !status.success() {
        bail!("sync failed: {status}");
    }
    Ok(())
}

/// A `put`, `get` or `sync` with `--json`, after [`settle`]: its time, and the plaintext
/// bytes it moved (those not reused from chunks already there).
fn moved(client: &Client, server: &Server, args: &[&str]) -> anyhow::Result<(Duration, u64)> {
    settle()?;
    let run = server.explain(client.run(args, None))?;
    let out: serde_json::Value =
        serde_json::from_str(&run.stdout).context("vault --json printed no JSON")?;
    let bytes = out["bytes"].as_u64().context("no bytes in --json")?;
    let reused = out["reused_bytes"]
        .as_u64()
        .context("no reused_bytes in --json")?;
    Ok((run.elapsed, bytes - reused))
}

/// Overwrites 1 MiB of `path` at `offset` with fresh random bytes.
fn change_in_place(path: &Path, offset: u64) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    let mut block = vec![0u8; MIB as usize];
    aws_lc_rs::rand::fill(&mut block).context("no system randomness")?;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(&block)?;
    file.sync_all()?;
    Ok(())
}

/// Rewrites `path` with `insert` inserted at `at`.
fn insert_at(path: &Path, at: u64, insert: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("inserting");
    {
        let mut from = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut to = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        std::io::copy(&mut (&mut from).take(at), &mut to)?;
        to.write_all(insert)?;
        std::io::copy(&mut from, &mut to)?;
        to.flush()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A pseudo-random offset for edit `n` of a file of `size` bytes, away from its ends.
fn offset(size: u64, n: u64) -> u64 {
    let span = size.saturating_sub(3 * MIB).max(1);
    MIB + (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % span
}

/// The wall time of rsync's delta algorithm bringing `old` up to `new` (over a local
/// pipe between its two processes: no ssh, so a faster peer than rsync over a network).
fn rsync(new: &Path, old: &Path) -> anyhow::Result<Option<Duration>> {
    if Command::new("rsync")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return Ok(None);
    }
    settle()?;
    let started = Instant::now();
    let status = Command::new("rsync")
        .args(["--no-whole-file", "--times"])
        .arg(new)
        .arg(old)
        .stdout(Stdio::null())
        .status()
        .context("cannot run rsync")?;
    if !status.success() {
        bail!("rsync failed: {status}");
    }
    Ok(Some(started.elapsed()))
}

pub fn rows(bins: &Bins, plan: &Plan, work: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let size = plan.big_bytes;
    let label = human_size(size);
    let source = work.join("delta.bin");
    let old = work.join("delta-old.bin");
    let fetched = work.join("delta-got.bin");
    let arg = |p: &Path| {
        p.to_str()
            .map(str::to_owned)
            .context("temp dir path is not UTF-8")
    };
    note(&format!("format 2: writing a {label} file"));
    data::big_file(&source, size)?;
    let server = Server::start(bins, &plan.limits)?;
    let client = server.explain(Client::register(bins, &server, "delta"))?;

    note(&format!("format 2: first put and get of {label}"));
    let (first_put, _) = moved(
        &client,
        &server,
        &["put", &arg(&source)?, "/d.bin", "--json"],
    )?;
    let (first_get, _) = moved(&client, &server, &["get", "/d.bin", &arg(&old)?, "--json"])?;
    std::fs::copy(&old, &fetched)?;

    note("format 2: 1 MiB changed in place, put and get again");
    change_in_place(&source, offset(size, 1))?;
    let (put_time, sent) = moved(
        &client,
        &server,
        &["put", &arg(&source)?, "/d.bin", "--json"],
    )?;
    let (get_time, got) = moved(
        &client,
        &server,
        &["get", "/d.bin", &arg(&fetched)?, "--json"],
    )?;
    same_contents(&source, &fetched)?;
    let rsynced = rsync(&source, &old)?;
    same_contents(&source, &old)?;

    rows.push(Row::at_most(
        &format!("delta put, 1 MiB changed in {label}: bytes sent"),
        sent as f64 / MIB as f64,
        "MiB",
        EDIT_LIMIT,
        "≤ 8 MiB",
    ));
    rows.push(Row::at_most(
        &format!("delta put, 1 MiB changed in {label}: time ÷ first put"),
        put_time.as_secs_f64() / first_put.as_secs_f64(),
        "×",
        0.3,
        "≤ 0.3 × the first put of the same file",
    ));
    rows.push(Row::at_most(
        "delta get over the old copy, 1 MiB changed: bytes fetched",
        got as f64 / MIB as f64,
        "MiB",
        EDIT_LIMIT,
        "≤ 8 MiB",
    ));
    rows.push(Row::info(
        "delta get, 1 MiB changed: time ÷ first get",
        get_time.as_secs_f64() / first_get.as_secs_f64(),
        "×",
        "no target: the whole new file is written either way",
    ));
    match rsynced {
        Some(rsync_time) => {
            let mut row = Row::at_least(
                "rsync --no-whole-file time ÷ delta put time, same edit",
                rsync_time.as_secs_f64() / put_time.as_secs_f64(),
                "×",
                1.0,
                3.0,
                "≥ 3 × (rsync over a local pipe, no ssh)",
            );
            row.note = Some(format!(
                "rsync {:.2} s, delta put {:.2} s, first put {:.2} s, first get {:.2} s, \
                 delta get {:.2} s",
                rsync_time.as_secs_f64(),
                put_time.as_secs_f64(),
                first_put.as_secs_f64(),
                first_get.as_secs_f64(),
                get_time.as_secs_f64()
            ));
            rows.push(row);
        }
        None => rows.push(Row::not_available(
            "rsync --no-whole-file time ÷ delta put time, same edit",
            "×",
            "≥ 3 ×",
            "rsync is not installed",
        )),
    }

    note("format 2: 100 bytes inserted in the middle, put again");
    let mut insert = vec![0u8; 100];
    aws_lc_rs::rand::fill(&mut insert).context("no system randomness")?;
    insert_at(&source, size / 2, &insert)?;
    let (_, sent) = moved(
        &client,
        &server,
        &["put", &arg(&source)?, "/d.bin", "--json"],
    )?;
    rows.push(Row::at_most(
        &format!("delta put, 100 bytes inserted in {label}: bytes sent"),
        sent as f64 / MIB as f64,
        "MiB",
        EDIT_LIMIT,
        "≤ 8 MiB",
    ));

    note("format 2: seven more versions, 1 MiB changed in each");
    for n in 2..9 {
        change_in_place(&source, offset(size, n))?;
        moved(
            &client,
            &server,
            &["put", &arg(&source)?, "/d.bin", "--json"],
        )?;
    }
    let quota = server.explain(client.run(&["quota", "--json"], None))?;
    let quota: serde_json::Value = serde_json::from_str(&quota.stdout).context("quota --json")?;
    let used = quota["used_bytes"].as_u64().context("no used_bytes")?;
    let versions = server.explain(client.run(&["versions", "/d.bin", "--json"], None))?;
    let versions: serde_json::Value =
        serde_json::from_str(&versions.stdout).context("versions --json")?;
    let kept = versions["versions"].as_array().map_or(0, Vec::len);
    rows.push(Row::at_most(
        &format!("{kept} versions of {label}, each 1 MiB changed: stored ÷ one copy"),
        used as f64 / size as f64,
        "×",
        1.1,
        "≤ 1.1 × one copy",
    ));
    for p in [&source, &old, &fetched] {
        let _ = std::fs::remove_file(p);
    }

    note(&format!(
        "format 2: a folder with another {label} file, synced, changed, synced"
    ));
    let folder = work.join("delta-sync");
    std::fs::create_dir_all(&folder)?;
    let synced = folder.join("disk.img");
    data::big_file(&synced, size)?;
    let sync = ["sync", &arg(&folder)?, "/synced", "--json"];
    let (first_sync, _) = moved(&client, &server, &sync)?;
    change_in_place(&synced, offset(size, 9))?;
    let (sync_time, sent) = moved(&client, &server, &sync)?;
    rows.push(Row::at_most(
        &format!("delta sync, 1 MiB changed in {label}: bytes sent"),
        sent as f64 / MIB as f64,
        "MiB",
        EDIT_LIMIT,
        "≤ 8 MiB",
    ));
    let mut row = Row::at_most(
        &format!("delta sync, 1 MiB changed in {label}: time ÷ first sync"),
        sync_time.as_secs_f64() / first_sync.as_secs_f64(),
        "×",
        0.3,
        "≤ 0.3 × the first sync of the same folder",
    );
    row.note = Some(format!(
        "first sync {:.2} s, delta sync {:.2} s",
        first_sync.as_secs_f64(),
        sync_time.as_secs_f64()
    ));
    rows.push(row);
    server.stop()?;
    let _ = std::fs::remove_dir_all(&folder);
    Ok(())
}
