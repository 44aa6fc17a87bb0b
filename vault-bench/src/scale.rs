//! The scale-out phase: a large `put` and `get` on a server whose blobs are in an
//! S3-compatible bucket, against the same object put and got through `object_store`
//! directly (that store's ceiling, measured in the same run), with the CPU each process
//! took per GiB — client, server and the store itself — since on one machine they share
//! the cores; and chat latency between two instances of one deployment on PostgreSQL.
//!
//! It needs the services: a bucket named by `VAULT_TEST_S3_ENDPOINT`, `_BUCKET`,
//! `_ACCESS_KEY_ID`, `_SECRET_ACCESS_KEY` (`.ci/garage start` prints them; with
//! `VAULT_TEST_GARAGE_DIR` the Garage process's CPU is read too) and a PostgreSQL server
//! at `VAULT_BENCH_POSTGRES_URL` where the user may create databases. Without them the
//! rows say what is missing.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStoreExt, WriteMultipart};

use crate::ceiling;
use crate::procs::{Bins, Client, Server};
use crate::report::{Row, median};
use crate::scenarios::{Plan, human_size, rss_row, same_contents};

const MB: f64 = 1e6;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// Part size and parts in flight of the raw multipart upload: what the server's store uses.
const PART: usize = 8 << 20;

/// The bucket from the environment.
struct Bucket {
    endpoint: String,
    bucket: String,
    region: String,
    key: String,
    secret: String,
    /// The Garage process, when known: its CPU is part of every figure.
    garage_pid: Option<u32>,
}

impl Bucket {
    fn from_env() -> Option<Bucket> {
        let var = |n: &str| {
            std::env::var(format!("VAULT_TEST_S3_{n}"))
                .ok()
                .filter(|v| !v.is_empty())
        };
        let garage_pid = std::env::var("VAULT_TEST_GARAGE_DIR")
            .ok()
            .and_then(|dir| std::fs::read_to_string(Path::new(&dir).join("garage.pid")).ok())
            .and_then(|pid| pid.trim().parse().ok());
        Some(Bucket {
            endpoint: var("ENDPOINT")?,
            bucket: var("BUCKET")?,
            region: var("REGION").unwrap_or_else(|| "garage".into()),
            key: var("ACCESS_KEY_ID")?,
            secret: var("SECRET_ACCESS_KEY")?,
            garage_pid,
        })
    }

    fn client(&self) -> anyhow::Result<AmazonS3> {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_access_key_id(&self.key)
            .with_secret_access_key(&self.secret)
            .with_virtual_hosted_style_request(false)
            // As the server's store: bodies are not hashed into the signature.
            .with_unsigned_payload(true)
            .with_client_options(ClientOptions::new().with_allow_http(true))
            .build()
            .context("cannot set up the S3 client")
    }

    /// `VAULT_STORAGE_*` for a server on this bucket under `prefix`.
    fn server_env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("KIND", "s3"),
            ("S3_ENDPOINT", &self.endpoint),
            ("S3_BUCKET", &self.bucket),
            ("S3_REGION", &self.region),
            ("S3_ACCESS_KEY_ID", &self.key),
            ("S3_SECRET_ACCESS_KEY", &self.secret),
            ("S3_PREFIX", prefix),
        ]
        .into_iter()
        .map(|(k, v)| (format!("VAULT_STORAGE_{k}"), v.to_string()))
        .collect()
    }

    fn garage_cpu(&self) -> Option<Duration> {
        self.garage_pid
            .and_then(|pid| crate::cpu::of_process(pid).ok())
    }
}

/// A rate and the CPU each process took per byte.
#[derive(Debug, Default)]
struct Costs {
    rates: Vec<f64>,
    client: Vec<f64>,
    server: Vec<f64>,
    store: Vec<f64>,
}

impl Costs {
    /// The highest ratio to `ceiling` (bytes/s) these processes could reach if they kept
    /// every core of this machine busy and cost no more CPU per byte than measured: when
    /// client, server and store share the cores, their CPU per byte bounds the rate.
    fn cpu_bound(&self, ceiling: f64) -> Option<f64> {
        if self.client.is_empty() || self.server.is_empty() || self.store.is_empty() {
            return None;
        }
        let per_byte = median(&self.client) + median(&self.server) + median(&self.store);
        let cores = crate::cpu::cores() as f64;
        (per_byte > 0.0 && ceiling > 0.0).then(|| cores / per_byte / ceiling)
    }

    fn reference(&self) -> String {
        let each = |v: &[f64]| {
            if v.is_empty() {
                "–".to_owned()
            } else {
                format!("{:.2}", median(v) * GIB)
            }
        };
        format!(
            "CPU-s/GiB: client {}, server {}, Garage {}",
            each(&self.client),
            each(&self.server),
            each(&self.store)
        )
    }
}

/// The S3 rows, and the chat latency across instances.
pub fn rows(bins: &Bins, plan: &Plan, work: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    match Bucket::from_env() {
        Some(bucket) => s3(bins, plan, &bucket, work, rows)?,
        None => {
            for figure in ["raw S3 put (ceiling)", "put on S3", "get on S3"] {
                rows.push(Row::not_available(
                    figure,
                    "MB/s",
                    "≥ 0.6 × raw S3",
                    "no bucket: eval \"$(.ci/garage start)\" first",
                ));
            }
        }
    }
    match std::env::var("VAULT_BENCH_POSTGRES_URL") {
        Ok(admin) if !admin.is_empty() => {
            let url = fresh_database(&admin, "scale")?;
            crate::chat::across_instances(bins, plan, &url, work, rows)?;
        }
        _ => rows.push(Row::not_available(
            "chat latency across two instances, median",
            "ms",
            "≤ 20 ms",
            "set VAULT_BENCH_POSTGRES_URL (a server where the user may create databases)",
        )),
    }
    Ok(())
}

/// A new database on the server of `admin_url`, for one phase of one run.
pub fn fresh_database(admin_url: &str, phase: &str) -> anyhow::Result<String> {
    let name = format!("vault_bench_{phase}_{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
            .await
            .context("cannot connect to VAULT_BENCH_POSTGRES_URL")?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .context("cannot drop an old benchmark database")?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .context("cannot create the benchmark's database")
    })?;
    let base = admin_url.split('?').next().unwrap_or(admin_url);
    let (server, _) = base
        .rsplit_once('/')
        .context("VAULT_BENCH_POSTGRES_URL needs a database name")?;
    Ok(format!("{server}/{name}"))
}

/// Deletes every object under `prefix` (a bench server's blobs), so that runs do not pile
/// up in the bucket.
async fn remove_prefix(s3: &AmazonS3, prefix: &str) -> anyhow::Result<()> {
    use object_store::ObjectStore;
    let under = Key::from(prefix);
    let keys: Vec<Key> = s3
        .list(Some(&under))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .context("cannot list the bench's objects")?;
    for key in keys {
        s3.delete(&key)
            .await
            .context("cannot delete a bench object")?;
    }
    Ok(())
}

/// Deletes what a phase's server stored under [`storage_env`]'s prefix for `phase`.
pub fn remove_stored(phase: &str) -> anyhow::Result<()> {
    let Some(bucket) = Bucket::from_env() else {
        return Ok(());
    };
    let s3 = bucket.client()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(remove_prefix(
        &s3,
        &format!("bench-{phase}-{}", std::process::id()),
    ))
}

/// `VAULT_STORAGE_*` for a server on the environment's bucket under a fresh prefix named
/// after `phase`; empty when no bucket is named (the server keeps blobs on its disk).
pub fn storage_env(phase: &str) -> Vec<(String, String)> {
    Bucket::from_env()
        .map(|b| b.server_env(&format!("bench-{phase}-{}", std::process::id())))
        .unwrap_or_default()
}

fn s3(
    bins: &Bins,
    plan: &Plan,
    bucket: &Bucket,
    work: &Path,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let size = plan.big_bytes;
    let label = human_size(size);
    let source = work.join("s3-big.bin");
    crate::data::big_file(&source, size)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let s3 = bucket.client()?;
    let (mut raw_put, mut raw_get) = (Costs::default(), Costs::default());
    for run in 1..=plan.runs {
        eprintln!("vault-bench: raw S3 put and get of {label} (run {run})");
        let key = Key::from(format!("bench-raw-{}/{run}", std::process::id()));
        let (cpu, store) = (crate::cpu::of_this_process(), bucket.garage_cpu());
        let started = Instant::now();
        runtime.block_on(raw_upload(&s3, &key, &source))?;
        note(&mut raw_put, size, started, cpu, store, bucket);
        let (cpu, store) = (crate::cpu::of_this_process(), bucket.garage_cpu());
        let started = Instant::now();
        let got = runtime.block_on(raw_download(&s3, &key))?;
        anyhow::ensure!(got == size, "the raw get read {got} bytes of {size}");
        note(&mut raw_get, size, started, cpu, store, bucket);
        let _ = runtime.block_on(s3.delete(&key));
    }

    let prefix = format!("bench-{}", std::process::id());
    let server = Server::start_on(bins, &plan.limits, "", "", &bucket.server_env(&prefix))?;
    let client = server.explain(Client::register(bins, &server, "bench"))?;
    let source_arg = source.to_str().context("temp dir path is not UTF-8")?;
    let target = work.join("s3-big.out");
    let target_arg = target.to_str().context("temp dir path is not UTF-8")?;
    let (mut put, mut get) = (Costs::default(), Costs::default());
    for run in 1..=plan.runs {
        eprintln!("vault-bench: put and get of {label} on S3 (run {run})");
        // New bytes and a new name each run: the space stores each chunk once, so the
        // same bytes again would send nothing.
        if run > 1 {
            crate::data::big_file(&source, size)?;
        }
        let remote = format!("/big-{run}.bin");
        vault(
            &server,
            &client,
            &["put", source_arg, &remote],
            size,
            bucket,
            &mut put,
        )?;
        let _ = std::fs::remove_file(&target);
        vault(
            &server,
            &client,
            &["get", &remote, target_arg],
            size,
            bucket,
            &mut get,
        )?;
        if run == 1 {
            same_contents(&source, &target)?;
        }
    }
    let server_rss = server.peak_rss()?;
    server.stop()?;
    runtime.block_on(remove_prefix(&s3, &prefix))?;
    let _ = std::fs::remove_file(&target);
    let _ = std::fs::remove_file(&source);

    for (what, raw, vault) in [("put", &raw_put, &put), ("get", &raw_get, &get)] {
        let ceiling = median(&raw.rates);
        rows.push(Row::info(
            &format!("raw S3 {what} {label} (ceiling)"),
            ceiling / MB,
            "MB/s",
            &format!("object_store into Garage, 8 MiB parts; {}", raw.reference()),
        ));
        let mut row = Row::at_least(
            &format!("{what} {label} on S3"),
            median(&vault.rates) / MB,
            "MB/s",
            ceiling / MB,
            0.6,
            &format!("≥ 0.6 × raw S3 {what}"),
        );
        row.note = Some(vault.reference());
        rows.push(row);
        if let Some(bound) = vault.cpu_bound(ceiling) {
            rows.push(Row::info(
                &format!("{what} on S3: best ratio possible here"),
                bound,
                "× raw S3",
                "cores ÷ (client + server + Garage CPU per byte) ÷ raw rate: all cores busy",
            ));
        }
    }
    rows.push(rss_row(
        &format!("server peak RSS, S3 put+get {label}"),
        server_rss,
    ));
    Ok(())
}

fn note(
    costs: &mut Costs,
    size: u64,
    started: Instant,
    cpu: Duration,
    store: Option<Duration>,
    bucket: &Bucket,
) {
    costs.rates.push(ceiling::rate(size, started.elapsed()));
    costs
        .client
        .push((crate::cpu::of_this_process().saturating_sub(cpu)).as_secs_f64() / size as f64);
    if let (Some(before), Some(after)) = (store, bucket.garage_cpu()) {
        costs
            .store
            .push(after.saturating_sub(before).as_secs_f64() / size as f64);
    }
}

/// Runs `vault ARGS` and notes its rate and each process's CPU.
fn vault(
    server: &Server,
    client: &Client,
    args: &[&str],
    size: u64,
    bucket: &Bucket,
    costs: &mut Costs,
) -> anyhow::Result<()> {
    let (before, store) = (server.cpu()?, bucket.garage_cpu());
    let done = server.explain(client.run(args, None))?;
    costs.rates.push(ceiling::rate(size, done.elapsed));
    if let Some(cpu) = done.cpu {
        costs.client.push(cpu.as_secs_f64() / size as f64);
    }
    costs
        .server
        .push(server.cpu()?.saturating_sub(before).as_secs_f64() / size as f64);
    if let (Some(before), Some(after)) = (store, bucket.garage_cpu()) {
        costs
            .store
            .push(after.saturating_sub(before).as_secs_f64() / size as f64);
    }
    Ok(())
}

/// The file up as a multipart upload of [`PART`]-byte parts, two in flight.
async fn raw_upload(s3: &AmazonS3, key: &Key, source: &Path) -> anyhow::Result<()> {
    let upload = s3.put_multipart(key).await.context("raw multipart start")?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut file = std::fs::File::open(source)?;
    let mut buf = vec![0u8; PART];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        writer
            .wait_for_capacity(2)
            .await
            .context("raw part upload")?;
        writer.write(&buf[..n]);
    }
    writer.finish().await.context("raw multipart finish")?;
    Ok(())
}

/// The object down as one streamed GET; the bytes read.
async fn raw_download(s3: &AmazonS3, key: &Key) -> anyhow::Result<u64> {
    let mut stream = s3.get(key).await.context("raw get")?.into_stream();
    let mut total = 0u64;
    while let Some(bytes) = stream.next().await {
        total += bytes.context("raw get")?.len() as u64;
    }
    Ok(total)
}
