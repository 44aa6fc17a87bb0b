//! `ServerState`: what every connection handler shares (config, database, blob store, the
//! outgoing mail queue, the live-session registry, the chat hub, the watched spaces, the hashes of uploads in
//! progress and the guards that bound expensive work and memory).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::accounts::{HashQueue, LoginGate};
use crate::blobs::BlobStore;
use crate::chat::Chat;
use crate::config::Config;
use crate::db::Db;
use crate::files::upload_hash::UploadHashes;
use crate::live::LiveSessions;
use crate::mail::queue::MailQueue;
use crate::net::budget::FrameBudget;
use crate::net::slots::ConnectionSlots;
use crate::space::Space;

/// Shared server state, behind an `Arc`.
#[derive(Debug)]
pub struct ServerState {
    pub config: Config,
    pub db: Db,
    /// Where sealed file contents live.
    pub blobs: Arc<dyn BlobStore>,
    /// Outgoing mail: requests queue it, the worker `Server::run` starts sends it.
    pub mail: MailQueue,
    pub live: LiveSessions,
    /// Chat subscriptions of this instance and the per-user message rate limit.
    pub chat: Chat,
    /// What reaches the other instances of the deployment (`crate::relay`).
    pub relay: crate::relay::Relay,
    /// The spaces `watch_space` streams of this instance watch.
    pub watchers: crate::files::watch::Watchers,
    /// Key for `prelogin`'s stable fake salts, shared by all instances via the database.
    pub fake_salt_key: [u8; 32],
    /// A PHC hash of random bytes, verified against when a username is unknown so that
    /// a wrong name costs the same time as a wrong password.
    pub dummy_auth_hash: String,
    /// Argon2 work, as many at once as there are cores (memory-hard: each run takes
    /// `auth_hash.memory_kib`), shared fairly among addresses.
    pub hashing: HashQueue,
    pub in_flight: InFlight,
    /// BLAKE3 of the large uploads being received, as their bytes arrive.
    pub upload_hashes: Arc<UploadHashes>,
    /// Connections per address, and those not logged in.
    pub slots: ConnectionSlots,
    /// Memory for request frames still arriving.
    pub frame_budget: FrameBudget,
    /// Logins being checked per address (this instance).
    pub login_gate: LoginGate,
    /// Free space on the data directory's disk, its floor and reserve.
    pub space: Space,
}

impl ServerState {
    pub fn new(
        config: Config,
        db: Db,
        blobs: Arc<dyn BlobStore>,
        mail: MailQueue,
        fake_salt_key: [u8; 32],
        dummy_auth_hash: String,
    ) -> Self {
        let permits = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let upload_expiry = std::time::Duration::from_secs(config.files.upload_expiry_s);
        ServerState {
            chat: Chat::new(&config.chat),
            relay: crate::relay::Relay::local(),
            watchers: Default::default(),
            upload_hashes: Arc::new(UploadHashes::new(upload_expiry)),
            db,
            blobs,
            mail,
            live: LiveSessions::default(),
            fake_salt_key,
            dummy_auth_hash,
            hashing: HashQueue::new(permits),
            in_flight: InFlight::default(),
            slots: ConnectionSlots::new(&config.limits),
            frame_budget: FrameBudget::new(&config.limits),
            login_gate: LoginGate::new(config.throttle.logins_in_flight_per_ip),
            space: Space::new(&config.data_dir, &config.storage),
            config,
        }
    }
}

/// Counts requests being served, so shutdown can wait for them.
#[derive(Debug, Default)]
pub struct InFlight(AtomicUsize);

impl InFlight {
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self)
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Marks one request in flight until dropped.
#[derive(Debug)]
pub struct InFlightGuard<'a>(&'a InFlight);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}
