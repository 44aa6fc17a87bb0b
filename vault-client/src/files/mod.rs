//! File commands on the client side (README.md, Command reference): remote paths (`path`), the keys
//! of a space (`keys`), the connection shared by concurrent transfers (`Files`, here), typed
//! requests (`remote`), listings walked page by page and put in order (`listing`), uploads with
//! resume records (`upload`, `resume`), small files in batches of two round trips (`small`),
//! downloads into part files (`download`), files already the same on both sides (`unchanged`),
//! planning of `put`/`get` over files and trees (`plan`) with the target a command made noted for
//! its re-runs (`rerun`), running several transfers at once with reconnects (`transfer`),
//! progress and rate limits (`progress`), files to and from pipes (`pipe`), and the legacy DES
//! import (`legacy`).

pub mod delta;
pub mod download;
pub mod error;
pub mod keys;
pub mod leftovers;
pub mod legacy;
pub mod listing;
pub mod path;
pub mod pipe;
pub mod plan;
pub mod progress;
pub mod remote;
pub mod rerun;
pub mod resume;
pub mod small;
pub mod transfer;
pub mod unchanged;
pub mod upload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use vault_core::crypto::Key32;
use vault_core::proto::{AccountKeys, NsRef, Request, Response};

pub use error::FilesError;
pub use keys::SpaceKeys;
pub use path::RemotePath;

use crate::account::{self, Session};
use crate::groups::{self, Me, PinStore};
use crate::state::StateDir;
use crate::transport::Connection;

/// A logged-in connection with the keys of the spaces it touches, shared by every transfer
/// of one command: the personal space's keys, and each group's keys once asked for
/// ([`Files::keys_for`]). After the connection breaks, [`Files::reconnect`] resumes the
/// session. Key work for others (`crate::groups::heal`) is done when it opens; what went
/// wrong there, and anything else the user should hear about without the command failing,
/// collects as warnings ([`Files::take_warnings`]).
#[derive(Debug)]
pub struct Files {
    state: StateDir,
    conn: Mutex<Arc<Connection>>,
    reconnecting: tokio::sync::Mutex<()>,
    server: String,
    personal: Arc<SpaceKeys>,
    user: String,
    /// The account's sealed keys and the account key that opens them.
    account: AccountKeys,
    account_key: Key32,
    /// The caller's key pair, opened on first use.
    me: OnceLock<Me>,
    pins: PinStore,
    /// Group keys by group name.
    groups: Mutex<HashMap<String, Arc<SpaceKeys>>>,
    warnings: Mutex<Vec<String>>,
    /// Scans of large files, kept across retries of their uploads.
    scans: delta::ScanCache,
}

impl Files {
    /// Resumes the saved session and unlocks the personal space's keys; does the
    /// group-key work the server has for this client (failures become warnings).
    pub async fn open(state: &StateDir) -> Result<Self, FilesError> {
        let session = account::resume(state).await?;
        let key_tasks = session.key_tasks;
        let files = Files::from_session(state, session)?;
        if key_tasks > 0 {
            groups::heal::heal(&files).await;
        }
        Ok(files)
    }

    /// Wraps a resumed session.
    pub fn from_session(state: &StateDir, session: Session) -> Result<Self, FilesError> {
        let account_key = state.account_key()?.ok_or_else(|| {
            FilesError::Usage("the account key is missing: run `vault login USER` again".into())
        })?;
        let personal = Arc::new(SpaceKeys::personal(&session.username, &account_key)?);
        Ok(Files {
            state: state.clone(),
            server: session.config.server.clone().unwrap_or_default(),
            conn: Mutex::new(Arc::new(session.conn)),
            reconnecting: tokio::sync::Mutex::new(()),
            personal,
            user: session.username,
            account: session.keys,
            account_key,
            me: OnceLock::new(),
            pins: PinStore::new(state),
            groups: Mutex::new(HashMap::new()),
            warnings: Mutex::new(Vec::new()),
            scans: delta::ScanCache::default(),
        })
    }

    /// The current connection.
    /// The scans of large files this command made (see [`delta::ScanCache`]).
    pub fn scans(&self) -> &delta::ScanCache {
        &self.scans
    }

    pub fn conn(&self) -> Arc<Connection> {
        Arc::clone(&self.conn.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces a broken connection `failed` with a fresh one (once, however many
    /// transfers noticed).
    pub async fn reconnect(&self, failed: &Arc<Connection>) -> Result<(), FilesError> {
        let _guard = self.reconnecting.lock().await;
        if !Arc::ptr_eq(&self.conn(), failed) {
            return Ok(());
        }
        failed.close();
        let session = account::resume(&self.state).await?;
        if session.username != self.user {
            return Err(FilesError::Usage(format!(
                "the saved session now belongs to {}, not {}; run the command again",
                session.username, self.user
            )));
        }
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(session.conn);
        Ok(())
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// `HOST:PORT` of the server.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The logged-in user (case-folded).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The caller's key pair, opened from the account's sealed private key on first use.
    pub fn me(&self) -> Result<&Me, FilesError> {
        if let Some(me) = self.me.get() {
            return Ok(me);
        }
        let me = Me::open(&self.account, &self.account_key)?;
        Ok(self.me.get_or_init(|| me))
    }

    /// The pin store of other users' public keys.
    pub fn pins(&self) -> &PinStore {
        &self.pins
    }

    /// Notes something the user should hear about without the command failing.
    pub fn warn(&self, message: String) {
        tracing::debug!(%message, "warning");
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
    }

    /// The warnings noted so far (each once).
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Drops the cached keys of group `name`, after its key or membership changed.
    pub fn forget_group_keys(&self, name: &str) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    fn cached_group_keys(&self, name: &str) -> Option<Arc<SpaceKeys>> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The keys of the space `ns`. A group's keys are fetched and checked on first use
    /// (`crate::groups::keyring`) and kept for the command.
    pub async fn keys_for(&self, ns: &NsRef) -> Result<Arc<SpaceKeys>, FilesError> {
        let name = match ns {
            NsRef::Personal => return Ok(Arc::clone(&self.personal)),
            NsRef::Group { name } => name,
        };
        if let Some(keys) = self.cached_group_keys(name) {
            return Ok(keys);
        }
        let ring = groups::keyring::fetch(self, name).await?;
        let keys = Arc::new(SpaceKeys::group(name, ring.group_id, ring.keys())?);
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), Arc::clone(&keys));
        Ok(keys)
    }

    /// The keys of `ns`, fetched again once if the cached ones lack one of `generations`
    /// (the group's key was rotated since). Whatever is still missing afterwards is
    /// reported when a version of it is opened.
    pub async fn keys_with(
        &self,
        ns: &NsRef,
        generations: impl IntoIterator<Item = u32>,
    ) -> Result<Arc<SpaceKeys>, FilesError> {
        let keys = self.keys_for(ns).await?;
        let NsRef::Group { name } = ns else {
            return Ok(keys);
        };
        if generations.into_iter().all(|g| keys.holds(g)) {
            return Ok(keys);
        }
        self.forget_group_keys(name);
        self.keys_for(ns).await
    }

    /// Sends one request and returns the (non-error) answer. When the server asks to slow
    /// down, waits as long as it says and sends the request again (a bounded number of times).
    pub async fn call(&self, request: &Request) -> Result<Response, FilesError> {
        let mut waits = 0;
        loop {
            let error = match self.conn().call(request).await {
                Ok(response) => return Ok(response),
                Err(e) => FilesError::from(e),
            };
            match error.retry_after() {
                Some(seconds) if waits < transfer::THROTTLE_WAITS => {
                    waits += 1;
                    transfer::pause(seconds).await;
                }
                _ => return Err(error),
            }
        }
    }

    /// Closes the connection politely.
    pub fn close(&self) {
        self.conn().close();
    }
}

/// An answer of the wrong kind.
pub(crate) fn unexpected(what: &str, r: &Response) -> FilesError {
    FilesError::Client(crate::ClientError::Protocol(format!(
        "unexpected answer to {what}: {r:?}"
    )))
}
