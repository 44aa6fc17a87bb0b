//! File commands on the client side (SPEC §3, §7): remote paths (`path`), the keys of a
//! space (`keys`), the connection shared by concurrent transfers (`Files`, here), typed
//! requests (`remote`), uploads with resume records (`upload`, `resume`), small files in
//! batches of two round trips (`small`), downloads into part files (`download`), planning
//! of `put`/`get` over files and trees (`plan`), running several transfers at once with
//! reconnects (`transfer`), progress and rate limits (`progress`), and the legacy DES
//! import (`legacy`).

pub mod download;
pub mod error;
pub mod keys;
pub mod legacy;
pub mod path;
pub mod plan;
pub mod progress;
pub mod remote;
pub mod resume;
pub mod small;
pub mod transfer;
pub mod upload;

use std::sync::{Arc, Mutex};

use vault_core::proto::{NsRef, Request, Response};

pub use error::FilesError;
pub use keys::SpaceKeys;
pub use path::RemotePath;

use crate::account;
use crate::state::StateDir;
use crate::transport::Connection;

/// A logged-in connection with the keys of the personal space, shared by every transfer
/// of one command. After the connection breaks, [`Files::reconnect`] resumes the session.
#[derive(Debug)]
pub struct Files {
    state: StateDir,
    conn: Mutex<Arc<Connection>>,
    reconnecting: tokio::sync::Mutex<()>,
    server: String,
    keys: SpaceKeys,
    user: String,
}

impl Files {
    /// Resumes the saved session and unlocks the personal space's keys.
    pub async fn open(state: &StateDir) -> Result<Self, FilesError> {
        let session = account::resume(state).await?;
        let account_key = state.account_key()?.ok_or_else(|| {
            FilesError::Usage("the account key is missing: run `vault login USER` again".into())
        })?;
        let keys = SpaceKeys::personal(&session.username, &account_key)?;
        Ok(Files {
            state: state.clone(),
            server: session.config.server.clone().unwrap_or_default(),
            conn: Mutex::new(Arc::new(session.conn)),
            reconnecting: tokio::sync::Mutex::new(()),
            keys,
            user: session.username,
        })
    }

    /// The current connection.
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

    /// The keys of the space `ns`. Group spaces are not available yet: the server is asked
    /// about the group so that its answer (usually "does not exist") reaches the user.
    pub async fn keys_for(&self, ns: &NsRef) -> Result<&SpaceKeys, FilesError> {
        match ns {
            NsRef::Personal => Ok(&self.keys),
            NsRef::Group { name } => {
                self.conn().call(&Request::Usage { ns: ns.clone() }).await?;
                Err(FilesError::Usage(format!(
                    "group spaces (@{name}) are not supported by this client yet"
                )))
            }
        }
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
