//! The capacity phase, for docs/SCALING.md: what one user action costs a deployment of
//! PostgreSQL and an S3 bucket — the SQL statements, transactions and row writes the server
//! issued (PostgreSQL's `pg_stat_statements`), the S3 requests by kind (Garage's own
//! `/metrics`) and the client's wall time — and what the server holds per idle
//! subscription (RSS) and issues with nobody active (statements per second).
//!
//! With `VAULT_BENCH_SHOW_SQL` set it prints each action's statements, by calls, to
//! stderr. It needs `VAULT_BENCH_POSTGRES_URL` (a superuser: it creates the database and reads and
//! resets `pg_stat_statements`, which must be in `shared_preload_libraries`); the bucket
//! of the scale phase is used when it is there (`VAULT_TEST_S3_*`, with
//! `VAULT_TEST_GARAGE_DIR` for Garage's metrics), else blobs stay on the server's disk and
//! the S3 column is empty.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::procs::{Bins, Client, Server};
use crate::report::Row;
use crate::scenarios::Plan;

/// Users with a subscription held open, for the per-subscription figures (10 with
/// `--quick`).
const LISTENERS: usize = 50;

/// The server's counters in PostgreSQL, read and reset through an admin connection.
struct Statements {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    database: String,
    database_url: String,
}

/// What the server's database did between two resets.
#[derive(Debug, Default, Clone, Copy)]
struct Sql {
    statements: i64,
    transactions: i64,
    writes: i64,
}

impl Statements {
    fn connect(admin_url: &str, database_url: &str) -> anyhow::Result<Statements> {
        let database = database_url.rsplit('/').next().unwrap_or_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
                .await
                .context("cannot connect to VAULT_BENCH_POSTGRES_URL")?;
            tokio::spawn(connection);
            client
                .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .await
                .context("pg_stat_statements is not available")?;
            client
                .batch_execute("SELECT pg_stat_statements_reset()")
                .await
                .context(
                    "pg_stat_statements is not loaded: add it to shared_preload_libraries \
                     and restart PostgreSQL",
                )?;
            anyhow::Ok(client)
        })?;
        Ok(Statements {
            runtime,
            client,
            database: database.to_owned(),
            database_url: database_url.to_owned(),
        })
    }

    /// Waits until `count` users are online (`presence` rows of the server's database),
    /// at most `limit`; returns how many were.
    fn wait_for_presence(&self, count: usize, limit: Duration) -> anyhow::Result<usize> {
        let until = Instant::now() + limit;
        let url = self.database_url.clone();
        self.runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .context("cannot connect to the server's database")?;
            tokio::spawn(connection);
            loop {
                let row = client
                    .query_one("SELECT count(DISTINCT user_id) FROM presence", &[])
                    .await?;
                let online = usize::try_from(row.get::<_, i64>(0))?;
                if online >= count || Instant::now() >= until {
                    return Ok(online);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    fn reset(&self) -> anyhow::Result<()> {
        self.runtime
            .block_on(
                self.client
                    .batch_execute("SELECT pg_stat_statements_reset()"),
            )
            .context("cannot reset pg_stat_statements")
    }

    /// Statements (without BEGIN/COMMIT), explicit transactions and row writes since the
    /// last reset.
    fn read(&self) -> anyhow::Result<Sql> {
        let row = self.runtime.block_on(self.client.query_one(
            "SELECT \
               coalesce(sum(calls) FILTER (WHERE query !~* '^\\s*(begin|commit|rollback)'), 0)::bigint, \
               coalesce(sum(calls) FILTER (WHERE query ~* '^\\s*begin'), 0)::bigint, \
               coalesce(sum(calls) FILTER (WHERE query ~* '^\\s*(insert|update|delete)'), 0)::bigint \
             FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
             WHERE d.datname = $1",
            &[&self.database],
        ))?;
        if std::env::var_os("VAULT_BENCH_SHOW_SQL").is_some() {
            for row in self.runtime.block_on(self.client.query(
                "SELECT calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 150) \
                 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
                 WHERE d.datname = $1 ORDER BY calls DESC",
                &[&self.database],
            ))? {
                eprintln!("  {:>5} {}", row.get::<_, i64>(0), row.get::<_, String>(1));
            }
        }
        Ok(Sql {
            statements: row.get(0),
            transactions: row.get(1),
            writes: row.get(2),
        })
    }
}

/// Garage's S3 request counters, by endpoint (`PutObject`, `UploadPart`, …).
struct S3Counters {
    admin: String,
}

impl S3Counters {
    /// From `VAULT_TEST_GARAGE_DIR/garage.toml`'s `[admin]` address.
    fn from_env() -> Option<S3Counters> {
        let dir = std::env::var("VAULT_TEST_GARAGE_DIR").ok()?;
        let config = std::fs::read_to_string(Path::new(&dir).join("garage.toml")).ok()?;
        let admin = config.split("[admin]").nth(1)?;
        let line = admin
            .lines()
            .find(|l| l.trim().starts_with("api_bind_addr"))?;
        let addr = line.split('"').nth(1)?;
        Some(S3Counters {
            admin: addr.to_owned(),
        })
    }

    fn read(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut stream = std::net::TcpStream::connect(&self.admin)
            .with_context(|| format!("cannot reach Garage's admin API at {}", self.admin))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.admin
        )?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(parse_s3_counters(&text))
    }
}

/// `api_s3_request_counter{api_endpoint="X",…} N` lines, summed by endpoint.
fn parse_s3_counters(metrics: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("api_s3_request_counter{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let endpoint = labels
            .split(',')
            .find_map(|l| l.strip_prefix("api_endpoint=\""))
            .and_then(|l| l.strip_suffix('"'));
        if let (Some(endpoint), Ok(n)) = (endpoint, value.trim().parse::<f64>()) {
            *counts.entry(endpoint.to_owned()).or_default() += n as u64;
        }
    }
    counts
}

/// The requests counted between `before` and `after`, as `PutObject 2, UploadPart 8`.
fn s3_delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = after
        .iter()
        .filter_map(|(k, n)| {
            let d = n - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| format!("{k} {d}"))
        })
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The capacity rows.
pub fn rows(bins: &Bins, plan: &Plan, work: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let admin = match std::env::var("VAULT_BENCH_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            rows.push(Row::not_available(
                "capacity: cost per action",
                "statements",
                "–",
                "set VAULT_BENCH_POSTGRES_URL (a superuser, pg_stat_statements loaded)",
            ));
            return Ok(());
        }
    };
    let url = crate::scale::fresh_database(&admin, "capacity")?;
    let statements = match Statements::connect(&admin, &url) {
        Ok(s) => s,
        Err(e) => {
            rows.push(Row::not_available(
                "capacity: cost per action",
                "statements",
                "–",
                &format!("{e:#}"),
            ));
            return Ok(());
        }
    };
    let s3 = crate::scale::storage_env("capacity");
    let counters = if s3.is_empty() {
        None
    } else {
        S3Counters::from_env()
    };
    let top = format!("database_url = \"{url}\"");
    let server = Server::start_on(bins, &plan.limits, "", &top, &s3)?;
    let outcome = server.explain(measure(
        bins,
        plan,
        &server,
        &statements,
        counters.as_ref(),
        work,
    ));
    let stopped = server.stop();
    let measured = outcome?;
    stopped?;
    if !s3.is_empty() {
        crate::scale::remove_stored("capacity")?;
    }
    rows.extend(measured);
    Ok(())
}

/// One measured action: runs `act`, and makes its row.
struct Meter<'a> {
    statements: &'a Statements,
    counters: Option<&'a S3Counters>,
    rows: Vec<Row>,
}

impl Meter<'_> {
    fn action(
        &mut self,
        what: &str,
        per: u64,
        act: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let s3_before = match self.counters {
            Some(c) => Some(c.read()?),
            None => None,
        };
        self.statements.reset()?;
        eprintln!("vault-bench: capacity: {what}");
        let started = Instant::now();
        act()?;
        let elapsed = started.elapsed();
        let sql = self.statements.read()?;
        let s3 = match (self.counters, s3_before) {
            (Some(c), Some(before)) => s3_delta(&before, &c.read()?),
            _ => "no bucket".to_owned(),
        };
        let per_f = per as f64;
        let each = if per > 1 {
            format!(" (for {per}: per one)")
        } else {
            String::new()
        };
        self.rows.push(Row::info(
            &format!("capacity: {what}{each}, SQL statements"),
            sql.statements as f64 / per_f,
            "statements",
            &format!(
                "{:.2} transactions, {:.2} row writes per one; S3 requests in all: {s3}; \
                 {:.0} ms in all ({:.0} statements/s)",
                sql.transactions as f64 / per_f,
                sql.writes as f64 / per_f,
                elapsed.as_secs_f64() * 1000.0,
                sql.statements as f64 / elapsed.as_secs_f64()
            ),
        ));
        Ok(())
    }
}

/// Users with an idle `vault chat listen` each, on a server that has done nothing else
/// yet: the server's RSS per subscription, and its statements per second while nobody acts.
fn idle_subscriptions(
    bins: &Bins,
    plan: &Plan,
    server: &Server,
    statements: &Statements,
) -> anyhow::Result<Vec<Row>> {
    let count = if plan.chat_messages < 1000 {
        10
    } else {
        LISTENERS
    };
    eprintln!("vault-bench: capacity, {count} users with an idle subscription each");
    let users = (0..count)
        .map(|i| Client::register(bins, server, &format!("listener{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rss_before = server.rss()?;
    // A few at a time: the server admits 16 connections per address before login.
    let mut listeners: Vec<Child> = Vec::new();
    let mut held = Ok(0);
    for batch in users.chunks(8) {
        for user in batch {
            let child = user
                .command(&["chat", "listen", "--json"], None)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start vault chat listen")?;
            listeners.push(child);
        }
        held = statements.wait_for_presence(listeners.len(), Duration::from_secs(30));
        if !matches!(held, Ok(n) if n == listeners.len()) {
            break;
        }
    }
    let rss_held = server.rss()?;
    let idle = Duration::from_secs(20);
    statements.reset()?;
    std::thread::sleep(idle);
    let sql = statements.read()?;
    for mut child in listeners {
        let _ = child.kill();
        let _ = child.wait();
    }
    let held = held?;
    anyhow::ensure!(
        held == count,
        "only {held} of {count} subscriptions were held"
    );
    Ok(vec![
        Row::info(
            &format!("capacity: server RSS per idle subscription ({count})"),
            rss_held.saturating_sub(rss_before) as f64 / count as f64 / 1024.0,
            "KiB each",
            &format!(
                "one QUIC connection and one `subscribe` stream each; {:.1} MiB before, {:.1} MiB with them",
                rss_before as f64 / f64::from(1 << 20),
                rss_held as f64 / f64::from(1 << 20)
            ),
        ),
        Row::info(
            "capacity: SQL statements per second, no user active",
            sql.statements as f64 / idle.as_secs_f64(),
            "statements/s",
            &format!(
                "over {} s with {count} subscriptions open: session checks, presence beat, relay",
                idle.as_secs()
            ),
        ),
    ])
}

fn measure(
    bins: &Bins,
    plan: &Plan,
    server: &Server,
    statements: &Statements,
    counters: Option<&S3Counters>,
    work: &Path,
) -> anyhow::Result<Vec<Row>> {
    let mut meter = Meter {
        statements,
        counters,
        rows: Vec::new(),
    };
    let idle = idle_subscriptions(bins, plan, server, statements)?;
    eprintln!("vault-bench: capacity, the cost of each action");
    let mut alice = None;
    meter.action("register (code mailed, then keys)", 1, || {
        alice = Some(Client::register(bins, server, "alice")?);
        Ok(())
    })?;
    let alice = alice.context("registered")?;
    let bob = Client::register(bins, server, "bob")?;
    meter.action("login", 1, || {
        alice
            .run(
                &["login", "alice", "--password-stdin"],
                Some(&format!("{}\n", crate::procs::PASSWORD)),
            )
            .map(drop)
    })?;
    meter.action("ls / (empty)", 1, || {
        alice.run(&["ls", "/"], None).map(drop)
    })?;

    let one = work.join("capacity-one.txt");
    std::fs::write(&one, vec![b'x'; 4096])?;
    let one_arg = one.to_str().context("utf-8 path")?;
    meter.action("put one 4 KiB file", 1, || {
        alice.run(&["put", one_arg, "/one.txt"], None).map(drop)
    })?;

    let files: u64 = if plan.small_files < 1000 { 100 } else { 1000 };
    let dir = work.join("capacity-tree");
    std::fs::create_dir_all(&dir)?;
    for i in 0..files {
        std::fs::write(
            dir.join(format!("f{i:03}.txt")),
            format!("file {i}\n").repeat(64),
        )?;
    }
    let dir_arg = dir.to_str().context("utf-8 path")?;
    meter.action(&format!("put -r of {files} small files"), files, || {
        alice.run(&["put", "-r", dir_arg, "/tree"], None).map(drop)
    })?;
    meter.action("ls of that folder", 1, || {
        alice.run(&["ls", "/tree"], None).map(drop)
    })?;
    if alice.has_sync() {
        meter.action("sync of that folder, nothing changed", 1, || {
            alice.run(&["sync", dir_arg, "/tree"], None).map(drop)
        })?;
        std::fs::write(dir.join("f0000.txt"), "changed\n")?;
        meter.action("sync of that folder, one file changed", 1, || {
            alice.run(&["sync", dir_arg, "/tree"], None).map(drop)
        })?;
    }

    let big = work.join("capacity-big.bin");
    let big_bytes: u64 = 64 << 20;
    crate::data::big_file(&big, big_bytes)?;
    let big_arg = big.to_str().context("utf-8 path")?;
    meter.action("put one 64 MiB file", 1, || {
        alice.run(&["put", big_arg, "/big.bin"], None).map(drop)
    })?;
    let back = work.join("capacity-big.out");
    let back_arg = back.to_str().context("utf-8 path")?;
    meter.action("get that 64 MiB file", 1, || {
        alice.run(&["get", "/big.bin", back_arg], None).map(drop)
    })?;
    let _ = std::fs::remove_file(&back);
    let _ = std::fs::remove_file(&big);
    meter.action("rm one file (to the trash)", 1, || {
        alice.run(&["rm", "/one.txt"], None).map(drop)
    })?;

    alice.run(&["contact", "add", "bob"], None)?;
    bob.run(&["contact", "accept", "alice"], None)?;
    meter.action("chat send, one message", 1, || {
        alice.run(&["chat", "send", "bob", "hello"], None).map(drop)
    })?;

    let mut rows = meter.rows;
    rows.extend(idle);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garage_counters_are_read_by_endpoint_and_differenced() {
        let before = parse_s3_counters(
            "# HELP api_s3_request_counter x\n\
             api_s3_request_counter{api_endpoint=\"PutObject\"} 3\n\
             api_s3_request_duration_sum{api_endpoint=\"PutObject\"} 0.5\n",
        );
        let after = parse_s3_counters(
            "api_s3_request_counter{api_endpoint=\"PutObject\"} 5\n\
             api_s3_request_counter{api_endpoint=\"UploadPart\",x=\"y\"} 8\n",
        );
        assert_eq!(before.get("PutObject"), Some(&3));
        assert_eq!(s3_delta(&before, &after), "PutObject 2, UploadPart 8");
        assert_eq!(s3_delta(&after, &after), "none");
    }
}
