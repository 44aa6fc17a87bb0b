//! The client state directory (README.md, Command reference): `$VAULT_CONFIG_DIR`, else
//! `$XDG_CONFIG_HOME/vault`, else `~/.config/vault`; mode 0700, every file 0600 and
//! written atomically.
//!
//! - `client.toml`: server address, pinned fingerprint, username, and a registration or
//!   reset in progress (no secrets);
//! - `session`: the session token (hex);
//! - `account.key`: the unlocked account key (hex);
//! - `known_keys.json`: other users' public-key fingerprints (`crate::groups::pins`),
//!   which belong to the server's users: they go when the client moves to another
//!   server or forgets it;
//! - `last-server`: of several server addresses, the one that answered last (a hint the
//!   next command tries first).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vault_core::crypto::{KdfParams, Key32};
use vault_core::proto::SecretBytes;
use zeroize::Zeroizing;

use crate::ClientError;

/// The non-secret client settings in `client.toml`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClientConfig {
    /// `HOST:PORT` of the server.
    pub server: Option<String>,
    /// `SHA256:<hex>` of the server certificate.
    pub fingerprint: Option<String>,
    /// The logged-in (or last) user.
    pub username: Option<String>,
    /// Registration step 1 done, step 2 pending.
    pub pending_registration: Option<PendingRegistration>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingRegistration {
    pub username: String,
    pub email: String,
    /// The KDF strength the server asked for.
    pub kdf: KdfParams,
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

const CONFIG: &str = "client.toml";
const SESSION: &str = "session";
const ACCOUNT_KEY: &str = "account.key";
/// The address of a several-address server (`--server a,b,c`) that answered last: the next
/// command tries it first instead of waiting on one that is down. Only a hint.
pub(crate) const LAST_SERVER: &str = "last-server";

fn state_error(what: &str, path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::State(format!("cannot {what} {}: {e}", path.display()))
}

impl StateDir {
    /// The directory from the environment (see the module docs).
    pub fn from_env() -> Result<StateDir, ClientError> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = var("VAULT_CONFIG_DIR")
            .or_else(|| var("XDG_CONFIG_HOME").map(|d| d.join("vault")))
            .or_else(|| var("HOME").map(|h| h.join(".config").join("vault")))
            .ok_or_else(|| {
                ClientError::State(
                    "cannot find a config directory: set VAULT_CONFIG_DIR or HOME".into(),
                )
            })?;
        Ok(StateDir { dir })
    }

    pub fn at(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn ensure_dir(&self) -> Result<(), ClientError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| state_error("create", &self.dir, e))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| state_error("protect", &self.dir, e))
    }

    /// Writes `name` in the directory atomically (temporary file, fsync, rename), mode 0600.
    pub(crate) fn write(&self, name: &str, data: &[u8]) -> Result<(), ClientError> {
        self.ensure_dir()?;
        write_atomically(&self.dir, name, data)
    }

    /// Writes `name` in the subdirectory `sub` (made 0700 when missing) as [`Self::write`]
    /// does: records that belong together, such as the notes of `crate::files::rerun`.
    pub(crate) fn write_in(&self, sub: &str, name: &str, data: &[u8]) -> Result<(), ClientError> {
        self.ensure_dir()?;
        let dir = self.dir.join(sub);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| state_error("create", &dir, e))?;
        write_atomically(&dir, name, data)
    }

    /// Reads `name` from the directory; `None` when it does not exist.
    pub(crate) fn read(&self, name: &str) -> Result<Option<Zeroizing<String>>, ClientError> {
        let path = self.dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(Zeroizing::new(s))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(state_error("read", &path, e)),
        }
    }

    fn remove(&self, name: &str) -> Result<(), ClientError> {
        let path = self.dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(state_error("remove", &path, e)),
        }
    }

    pub fn config(&self) -> Result<ClientConfig, ClientError> {
        match self.read(CONFIG)? {
            None => Ok(ClientConfig::default()),
            Some(text) => toml::from_str(&text).map_err(|e| {
                ClientError::State(format!(
                    "{} is damaged ({e}); remove it and log in again",
                    self.dir.join(CONFIG).display()
                ))
            }),
        }
    }

    pub fn save_config(&self, config: &ClientConfig) -> Result<(), ClientError> {
        let text = toml::to_string(config).map_err(|e| ClientError::State(e.to_string()))?;
        self.write(CONFIG, text.as_bytes())
    }

    pub fn token(&self) -> Result<Option<SecretBytes>, ClientError> {
        self.read(SESSION)?
            .map(|hex_text| {
                hex::decode(hex_text.trim())
                    .map(SecretBytes::new)
                    .map_err(|_| {
                        ClientError::State(
                            "the saved session is damaged; run `vault login USER` again".into(),
                        )
                    })
            })
            .transpose()
    }

    pub fn account_key(&self) -> Result<Option<Key32>, ClientError> {
        let Some(text) = self.read(ACCOUNT_KEY)? else {
            return Ok(None);
        };
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| {
            ClientError::State(
                "the saved account key is damaged; run `vault login USER` again".into(),
            )
        })?);
        Ok(Some(Key32::from_slice(&bytes)?))
    }

    /// Saves a logged-in session: its token and the unlocked account key.
    pub fn save_session(
        &self,
        token: &SecretBytes,
        account_key: &Key32,
    ) -> Result<(), ClientError> {
        self.write(
            SESSION,
            Zeroizing::new(hex::encode(token.dangerously_leak_secret())).as_bytes(),
        )?;
        self.write(
            ACCOUNT_KEY,
            Zeroizing::new(hex::encode(account_key.dangerously_leak_secret())).as_bytes(),
        )
    }

    /// Removes the session token and the account key.
    pub fn wipe_session(&self) -> Result<(), ClientError> {
        self.remove(SESSION)?;
        self.remove(ACCOUNT_KEY)
    }

    /// Removes everything, including the server address and pinned fingerprint.
    pub fn wipe_all(&self) -> Result<(), ClientError> {
        self.wipe_session()?;
        self.forget_known_keys()?;
        self.remove(LAST_SERVER)?;
        self.remove(CONFIG)
    }

    /// Removes the fingerprints of other users' keys: names on another server are other
    /// people.
    pub fn forget_known_keys(&self) -> Result<(), ClientError> {
        self.remove(crate::groups::pins::FILE)
    }
}

/// Writes `dir/name` through a temporary file that is synced and renamed into place, then
/// syncs the directory; mode 0600.
fn write_atomically(dir: &Path, name: &str, data: &[u8]) -> Result<(), ClientError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| state_error("write", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn files_are_private_and_round_trip() {
        let tmp = tempfile::tempdir().expect("tmp");
        let state = StateDir::at(tmp.path().join("vault"));
        let key = Key32::generate().expect("key");
        state
            .save_session(&SecretBytes::new(vec![7; 32]), &key)
            .expect("save");
        state
            .save_config(&ClientConfig {
                server: Some("h:1".into()),
                ..Default::default()
            })
            .expect("config");
        for name in [SESSION, ACCOUNT_KEY, CONFIG] {
            let mode = std::fs::metadata(state.path().join(name))
                .expect("meta")
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        assert_eq!(
            std::fs::metadata(state.path()).expect("meta").mode() & 0o777,
            0o700
        );
        assert_eq!(
            state
                .token()
                .expect("token")
                .expect("some")
                .dangerously_leak_secret(),
            &[7; 32]
        );
        assert_eq!(
            state
                .account_key()
                .expect("ak")
                .expect("some")
                .dangerously_leak_secret(),
            key.dangerously_leak_secret()
        );
        state.wipe_session().expect("wipe");
        assert!(state.token().expect("token").is_none());
        assert_eq!(state.config().expect("cfg").server.as_deref(), Some("h:1"));
    }
}
