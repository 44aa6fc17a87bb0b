//! `ServerState`: what every connection handler shares (config, database, blob store, the
//! outgoing mail queue, the live-session registry, the chat hub and the guards that bound
//! expensive work).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore};

use crate::blobs::BlobStore;
use crate::chat::Chat;
use crate::config::Config;
use crate::db::Db;
use crate::live::LiveSessions;
use crate::mail::queue::MailQueue;

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
    /// Key for `prelogin`'s stable fake salts, shared by all instances via the database.
    pub fake_salt_key: [u8; 32],
    /// A PHC hash of random bytes, verified against when a username is unknown so that
    /// a wrong name costs the same time as a wrong password.
    pub dummy_auth_hash: String,
    /// Bounds concurrent Argon2 work (memory-hard: each run takes `auth_hash.memory_kib`).
    pub hashing: Semaphore,
    pub in_flight: InFlight,
    connections_per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// Woken whenever a connection slot is freed.
    slot_freed: Notify,
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
        ServerState {
            chat: Chat::new(&config.chat),
            config,
            db,
            blobs,
            mail,
            live: LiveSessions::default(),
            fake_salt_key,
            dummy_auth_hash,
            hashing: Semaphore::new(permits),
            in_flight: InFlight::default(),
            connections_per_ip: Mutex::new(HashMap::new()),
            slot_freed: Notify::new(),
        }
    }

    /// Takes a connection slot for `ip`, or `None` when it already has the maximum.
    fn connection_slot(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut map = self
            .connections_per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= self.config.limits.connections_per_ip {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            state: Arc::clone(self),
            ip,
        })
    }

    /// [`ServerState::connection_slot`], waiting up to `wait` for one to be freed: a client
    /// that closes a connection and opens the next at once (a script running commands back
    /// to back) knocks a moment before the server has seen the close.
    pub async fn connection_slot_within(
        self: &Arc<Self>,
        ip: IpAddr,
        wait: std::time::Duration,
    ) -> Option<ConnectionSlot> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.slot_freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a slot freed in between is not missed.
            freed.as_mut().enable();
            if let Some(slot) = self.connection_slot(ip) {
                return Some(slot);
            }
            tokio::time::timeout_at(deadline, freed).await.ok()?;
        }
    }
}

/// One counted connection from an address; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    state: Arc<ServerState>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut map = self
            .state
            .connections_per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
        drop(map);
        self.state.slot_freed.notify_waiters();
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
