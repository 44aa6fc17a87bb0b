//! `vault-server`: the QUIC server of Vault. It runs accounts, sessions, throttling and
//! mail, and stores only ciphertext and sealed keys: it never holds a key that opens
//! user data. `Server::bind` prepares the data directory, database and endpoint;
//! `Server::run` serves until a shutdown signal. Tests start it on `127.0.0.1:0`.
//!
//! The public modules are what `vault-admin` (and the fuzz targets) build on: the
//! database, the blob store, configuration, maintenance and the shared account and group
//! changes. The request handlers, the router and the network stay private.

pub mod accounts;
pub mod blobs;
mod chat;
pub mod check;
pub mod config;
pub mod db;
pub mod error;
mod files;
pub mod fsutil;
pub mod groups;
mod live;
pub mod mail;
pub mod maintenance;
mod net;
mod relay;
mod router;
pub mod space;
mod state;
mod telemetry;
#[cfg(test)]
mod testing;
pub mod throttle;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::db::Db;
use crate::mail::Mailer;
use crate::mail::queue::{MailQueue, MailWorker};
use crate::state::ServerState;

/// The server's data directory layout (README.md, Configuration). Every path is built from
/// configuration.
#[derive(Clone, Debug)]
pub struct DataDir(pub std::path::PathBuf);

impl DataDir {
    pub fn outbox(&self) -> std::path::PathBuf {
        self.0.join("outbox")
    }

    pub fn blobs(&self) -> std::path::PathBuf {
        self.0.join("blobs")
    }

    pub fn server_addr_file(&self) -> std::path::PathBuf {
        self.0.join("server.addr")
    }

    /// Creates the directory tree (mode 0700) if missing.
    pub fn create(&self) -> anyhow::Result<()> {
        for dir in [self.0.clone(), self.blobs(), self.outbox()] {
            fsutil::create_private_dir(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(())
    }
}

/// Opens the configured database (running migrations) on a blocking thread.
pub async fn open_db(config: &Config) -> anyhow::Result<Db> {
    let url = config.database_url();
    Ok(tokio::task::spawn_blocking(move || Db::open(&url)).await??)
}

/// The mailer for `config`.
pub fn mailer(config: &Config) -> anyhow::Result<Mailer> {
    Ok(Mailer::from_config(
        &config.mail,
        DataDir(config.data_dir.clone()).outbox(),
    )?)
}

/// 32 random bytes, for a server-wide secret kept in the database.
fn random_secret() -> Vec<u8> {
    let mut k = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut k).expect("the system random source failed");
    k
}

/// A bound, not yet serving, server.
#[derive(Debug)]
pub struct Server {
    endpoint: quinn::Endpoint,
    state: Arc<ServerState>,
    fingerprint: String,
    mailer: Mailer,
    mail_worker: MailWorker,
    /// The relay's connection, on PostgreSQL (`relay::run` keeps it).
    relay: Option<relay::Connection>,
    /// The Prometheus endpoint, when `metrics.listen` is set.
    metrics: Option<telemetry::Endpoint>,
}

impl Server {
    /// Prepares the data directory, certificate, database and mailer, and binds the port.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        let data = DataDir(config.data_dir.clone());
        data.create()?;
        // On a full disk the reserve goes first, so that the database can open.
        let space = space::Space::new(&data.0, &config.storage);
        space.look();
        let identity = tls::load_or_create(&config)?;
        let db = open_db(&config)
            .await
            .map_err(|e| match space.free_and_total() {
                Ok((free, _)) if free < space::FULL_BELOW => e.context(format!(
                    "the disk of {} is full ({free} bytes free): free space on it and start \
                     the server again",
                    data.0.display()
                )),
                _ => e,
            })?;
        let mailer = mailer(&config)?;
        let fake_salt_key = db
            .run(|c| db::settings::get_or_create(c, "prelogin_fake_salt_key", random_secret))
            .await?;
        let fake_salt_key: [u8; 32] = fake_salt_key
            .try_into()
            .map_err(|_| anyhow::anyhow!("bad prelogin key in the database"))?;
        let reset_key = db
            .run(|c| db::settings::get_or_create(c, "stateless_reset_key", random_secret))
            .await?;
        let params = config.auth_hash;
        let dummy_auth_hash = tokio::task::spawn_blocking(move || {
            let mut random = [0u8; 32];
            aws_lc_rs::rand::fill(&mut random).map_err(|_| anyhow::anyhow!("no randomness"))?;
            accounts::hash_auth_key(&random, &params)
        })
        .await??;
        let storage = config.storage.clone();
        let blobs_dir = data.blobs();
        let blobs = tokio::task::spawn_blocking(move || blobs::open(&storage, &blobs_dir))
            .await?
            .with_context(|| match config.storage.kind.as_str() {
                "s3" => format!(
                    "cannot open the blob store {}",
                    config.storage.s3().describe()
                ),
                _ => format!("cannot open the blob store {}", data.blobs().display()),
            })?;
        // Timed only for the metrics, so that nothing is measured without them.
        let blobs: Arc<dyn blobs::BlobStore> = match config.metrics.listen {
            Some(_) => Arc::new(blobs::Timed(blobs)),
            None => blobs,
        };
        let endpoint = net::endpoint(&identity, config.listen, &config.limits, &reset_key)?;
        let metrics = match config.metrics.listen {
            Some(addr) => {
                let metrics = telemetry::Endpoint::bind(addr).await?;
                let addr = metrics.local_addr()?;
                tracing::info!("metrics served at http://{addr}/metrics (no authentication)");
                Some(metrics)
            }
            None => None,
        };
        let (mail, mail_worker) = MailQueue::new(config.mail.queue_size);
        let on_postgres = db.backend() == db::Backend::Postgres;
        let database_url = config.database_url();
        let mut state = ServerState::new(config, db, blobs, mail, fake_salt_key, dummy_auth_hash);
        let relay = on_postgres.then(|| {
            let (relay, connection) = relay::Relay::postgres(&database_url);
            state.relay = relay;
            connection
        });
        Ok(Server {
            endpoint,
            state: Arc::new(state),
            relay,
            metrics,
            fingerprint: identity.fingerprint,
            mailer,
            mail_worker,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    /// `SHA256:<hex>` of the server certificate.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully: requests in flight
    /// finish, and queued mail gets up to `limits.shutdown_grace_s` to go out.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let state = Arc::clone(&self.state);
        let retry = state.config.mail.retry();
        let mail = tokio::spawn(self.mail_worker.run(self.mailer, retry));
        let every = Duration::from_millis(state.config.sessions.check_interval_ms.max(50));
        let watcher = {
            let state = Arc::clone(&state);
            tokio::spawn(async move { state.live.watch(state.db.clone(), every).await })
        };
        let housekeeping = tokio::spawn(housekeeping(Arc::clone(&state)));
        let disk = tokio::spawn(space::watch(Arc::clone(&state)));
        let gc = tokio::spawn(maintenance::run_periodic(Arc::clone(&state)));
        let scrub = tokio::spawn(maintenance::scrub::run_periodic(Arc::clone(&state)));
        let presence = tokio::spawn(chat::presence::keep(Arc::clone(&state)));
        let revisions = tokio::spawn(files::watch::catch_up(
            Arc::clone(&state),
            files::watch::CATCH_UP,
        ));
        let metrics = self.metrics.map(|endpoint| tokio::spawn(endpoint.serve()));
        let relay = self
            .relay
            .map(|connection| tokio::spawn(relay::run(Arc::clone(&state), connection)));
        net::serve(self.endpoint, Arc::clone(&state), shutdown).await;
        // While the relay still runs, so that the other instances hear of it.
        presence.abort();
        chat::presence::stop(&state).await;
        if let Some(relay) = relay {
            state.relay.drained(Duration::from_secs(1)).await;
            relay.abort();
        }
        watcher.abort();
        revisions.abort();
        housekeeping.abort();
        disk.abort();
        gc.abort();
        scrub.abort();
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        let grace = Duration::from_secs(state.config.limits.shutdown_grace_s);
        if !state.mail.drained(grace).await {
            tracing::warn!(
                unsent = state.mail.pending(),
                "shutting down with mail still queued; it will not be sent"
            );
        }
        mail.abort();
        Ok(())
    }
}

/// Hourly: ends sessions idle past the limit and deletes expired codes and join codes, and
/// account invitations that ended a month ago.
async fn housekeeping(state: Arc<ServerState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let idle = i64::from(state.config.sessions.idle_expiry_days) * 86_400;
        let result = state
            .db
            .run(move |c| {
                let now = db::now();
                // One instance of a deployment at a time.
                db::exclusively(c, "housekeeping", |c| {
                    Ok::<_, db::DbError>((
                        db::sessions::expire_idle(c, now - idle)?,
                        db::codes::delete_expired(c, now - 86_400)?,
                        db::groups::delete_expired_invites(c, now)?,
                        db::invitations::delete_ended(c, now - 30 * 86_400)?,
                    ))
                })?
                .transpose()
            })
            .await;
        match result {
            Ok(None) => tracing::debug!("housekeeping: another instance is doing it"),
            Ok(Some((sessions, codes, invites, invitations))) => {
                tracing::debug!(sessions, codes, invites, invitations, "housekeeping done")
            }
            Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
        }
    }
}
