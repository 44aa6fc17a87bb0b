//! Prometheus metrics (`[metrics] listen`, off by default). [`Endpoint::bind`] installs
//! the process's recorder (the `metrics` crate's facade, rendered by
//! `metrics-exporter-prometheus`) and binds the scrape address; [`Endpoint::serve`] answers
//! `GET /metrics` there ([`http`]). Without an endpoint no recorder is installed and every
//! function here costs next to nothing (`vault-admin`, tests).
//!
//! Every metric is named here, with labels from fixed sets only: a request's kind, an
//! error code, a blob-store operation, never a name, an address or a secret.

pub mod http;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `kind` and `result` (`ok` or the error code).
pub const REQUESTS: &str = "vault_requests_total";
/// How long requests took, by `kind`.
pub const REQUEST_DURATION: &str = "vault_request_duration_seconds";
/// QUIC (UDP payload) bytes received and sent: handshakes, frames, file data, resends.
pub const BYTES_RECEIVED: &str = "vault_bytes_received_total";
pub const BYTES_SENT: &str = "vault_bytes_sent_total";
/// QUIC connections open, and those of them logged in (bound to a session).
pub const CONNECTIONS: &str = "vault_connections_active";
pub const SESSIONS: &str = "vault_sessions_active";
/// Logins by `result`: `ok`, `failed` (wrong name or password, locked, refused) or
/// `throttled`.
pub const LOGINS: &str = "vault_logins_total";
/// Mails by `result`: `sent` (to SMTP or the outbox) or `failed` (given up).
pub const MAILS: &str = "vault_mails_total";
/// Database work (`Db::run`: waiting for a connection, then the queries).
pub const DB_DURATION: &str = "vault_db_duration_seconds";
/// Blob-store calls, by `op`.
pub const BLOB_DURATION: &str = "vault_blob_duration_seconds";
/// The server's gc rounds, by `result`: `ok`, `errors` (some files not removed yet),
/// `skipped` (another instance ran it) or `failed`.
pub const GC_RUNS: &str = "vault_gc_runs_total";

/// Histogram bucket bounds in seconds, for every latency above: 100 µs to 60 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// How often histograms are drained into their buckets (the recorder's upkeep).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The scrape endpoint: a bound listener and the recorder's handle.
#[derive(Debug)]
pub struct Endpoint {
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
}

impl Endpoint {
    /// Installs the recorder (once per process) and binds `addr`; a bind failure is an
    /// error naming the key.
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Endpoint> {
        let handle = recorder()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for metrics (metrics.listen)"))?;
        Ok(Endpoint { listener, handle })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Answers scrapes until dropped (aborted), and keeps the histograms drained.
    pub async fn serve(self) {
        let handle = self.handle.clone();
        let upkeep = async move {
            let mut tick = tokio::time::interval(UPKEEP_EVERY);
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        };
        let handle = Arc::new(self.handle);
        let render = move || handle.render();
        tokio::select! {
            _ = upkeep => {}
            _ = http::serve(self.listener, render) => {}
        }
    }
}

/// The process's recorder, installed on first use.
fn recorder() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .context("metrics buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// The `# HELP` lines, and the gauges at 0 from the start.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        "Requests answered, by kind and result (ok or the error code)."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "How long requests took, by kind."
    );
    describe_counter!(
        BYTES_RECEIVED,
        Unit::Bytes,
        "UDP bytes received on QUIC connections."
    );
    describe_counter!(
        BYTES_SENT,
        Unit::Bytes,
        "UDP bytes sent on QUIC connections."
    );
    describe_gauge!(CONNECTIONS, "QUIC connections open.");
    describe_gauge!(SESSIONS, "QUIC connections logged in.");
    describe_counter!(LOGINS, "Logins, by result: ok, failed or throttled.");
    describe_counter!(MAILS, "Mails, by result: sent or failed (given up).");
    describe_histogram!(
        DB_DURATION,
        Unit::Seconds,
        "Database calls, waiting included."
    );
    describe_histogram!(BLOB_DURATION, Unit::Seconds, "Blob-store calls, by op.");
    describe_counter!(GC_RUNS, "The server's gc rounds, by result.");
    gauge!(CONNECTIONS).set(0.0);
    gauge!(SESSIONS).set(0.0);
}

/// One request answered (the access log's line).
pub fn request(kind: &'static str, result: &'static str, took: Duration) {
    counter!(REQUESTS, "kind" => kind, "result" => result).increment(1);
    histogram!(REQUEST_DURATION, "kind" => kind).record(took);
}

/// Bytes a connection received and sent since it last reported.
pub fn traffic(received: u64, sent: u64) {
    if received > 0 {
        counter!(BYTES_RECEIVED).increment(received);
    }
    if sent > 0 {
        counter!(BYTES_SENT).increment(sent);
    }
}

/// A connection opened (`1.0`) or closed (`-1.0`).
pub fn connections(change: f64) {
    gauge!(CONNECTIONS).increment(change);
}

/// A connection logged in (`1.0`) or out or closed while logged in (`-1.0`).
pub fn sessions(change: f64) {
    gauge!(SESSIONS).increment(change);
}

/// A login's outcome: `ok`, `failed` or `throttled`.
pub fn login(result: &'static str) {
    counter!(LOGINS, "result" => result).increment(1);
}

/// A mail sent (`true`) or given up (`false`).
pub fn mail(sent: bool) {
    counter!(MAILS, "result" => if sent { "sent" } else { "failed" }).increment(1);
}

/// A gc round's outcome.
pub fn gc_run(result: &'static str) {
    counter!(GC_RUNS, "result" => result).increment(1);
}

/// A database call that started at `started`.
pub fn db(started: Instant) {
    histogram!(DB_DURATION).record(started.elapsed());
}

/// Runs the blob-store call `op`, recording how long it took.
pub fn blob<T>(op: &'static str, call: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = call();
    histogram!(BLOB_DURATION, "op" => op).record(started.elapsed());
    out
}
