//! The pin store of other users' public keys: `<state dir>/known_keys.json` (0600, written
//! atomically, read-modify-write under `known_keys.lock`). Per username it keeps the
//! fingerprint the user trusts, whether it was verified (`vault key verify`) or recorded
//! the first time the key was seen, since when, and the fingerprints trusted before it
//! (so that envelopes signed with an earlier key still verify).
//!
//! The rules (docs/FORMAT.md §8.4, client side):
//! - a key to wrap a group key for ([`KnownKeys::check_recipient`]) must be the trusted
//!   one; a user never seen before is recorded (trust on first use); a different key is
//!   refused with both fingerprints and what to do;
//! - a key that signed an envelope ([`KnownKeys::check_signer`]) must be the trusted one
//!   or one trusted earlier; a signer never seen before is recorded the same way;
//! - `vault key verify` ([`KnownKeys::verify`]) pins a fingerprint as verified; a
//!   different fingerprint trusted until then moves to the earlier ones.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use vault_core::crypto::public_key_fingerprint;

use crate::files::FilesError;
use crate::state::StateDir;

/// The file in the state directory.
pub const FILE: &str = "known_keys.json";
/// Held (advisory lock) during a read-modify-write of [`FILE`].
const LOCK: &str = "known_keys.lock";
const FORMAT: u32 = 1;

/// How a trusted fingerprint came to be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinSource {
    /// The user compared it and ran `vault key verify`.
    Verified,
    /// Recorded the first time the key was seen (trust on first use).
    FirstSeen,
}

/// What is known about one user's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownKey {
    /// The trusted `SHA256:<hex>` fingerprint.
    pub fingerprint: String,
    pub source: PinSource,
    /// Unix seconds when it was recorded or verified.
    pub since: i64,
    /// Fingerprints trusted before this one, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<String>,
}

impl KnownKey {
    /// How the trusted fingerprint came about, in words.
    fn how(&self, user: &str) -> String {
        match self.source {
            PinSource::Verified => format!(
                "you verified {} for {user} (`vault key verify`)",
                self.fingerprint
            ),
            PinSource::FirstSeen => format!(
                "{} was recorded for {user} when you first saw their key",
                self.fingerprint
            ),
        }
    }
}

/// A key that differs from the one trusted for its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub user: String,
    /// The fingerprint of the key the server presented.
    pub presented: String,
    /// What is trusted instead.
    pub trusted: KnownKey,
}

impl Mismatch {
    /// The refusal for a key to wrap a group key for.
    pub fn recipient_error(&self) -> FilesError {
        let Mismatch {
            user, presented, ..
        } = self;
        FilesError::Integrity(format!(
            "the server gives {user} the public key {presented}, but {}. Nothing was sent. If \
             {user} really has new keys (after a password reset without the recovery key), \
             compare {presented} with them in person or by phone (`vault key fingerprint` on \
             their machine) and run `vault key verify {user} {presented}`; otherwise the \
             server may be trying to read the group's files",
            self.trusted.how(user)
        ))
    }

    /// The refusal for the key that signed an envelope; `what` names the envelope.
    pub fn signer_error(&self, what: &str) -> FilesError {
        let Mismatch {
            user, presented, ..
        } = self;
        FilesError::Integrity(format!(
            "{what} was refused: it is signed by {user} with the key {presented}, but {}. If \
             {user} really has new keys, compare {presented} with them in person or by phone \
             and run `vault key verify {user} {presented}`, then run the command again; \
             otherwise the server may be handing you a key of its own choosing",
            self.trusted.how(user)
        ))
    }
}

/// Whether a key was known or just recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The trusted key (or, for a signer, one trusted earlier).
    Known(PinSource),
    /// Never seen before: recorded now.
    FirstSight,
}

/// The contents of [`FILE`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownKeys {
    format: u32,
    users: BTreeMap<String, KnownKey>,
}

impl KnownKeys {
    /// What is known about `user`.
    pub fn get(&self, user: &str) -> Option<&KnownKey> {
        self.users.get(user)
    }

    fn record(&mut self, user: &str, fingerprint: &str, now: i64) {
        self.users.insert(
            user.to_owned(),
            KnownKey {
                fingerprint: fingerprint.to_owned(),
                source: PinSource::FirstSeen,
                since: now,
                previous: Vec::new(),
            },
        );
    }

    /// Checks the key of someone to wrap a group key for: only the trusted key passes.
    pub fn check_recipient(
        &mut self,
        user: &str,
        fingerprint: &str,
        now: i64,
    ) -> Result<Seen, Mismatch> {
        match self.users.get(user) {
            None => {
                self.record(user, fingerprint, now);
                Ok(Seen::FirstSight)
            }
            Some(k) if k.fingerprint == fingerprint => Ok(Seen::Known(k.source)),
            Some(k) => Err(Mismatch {
                user: user.to_owned(),
                presented: fingerprint.to_owned(),
                trusted: k.clone(),
            }),
        }
    }

    /// Checks the key that signed an envelope: the trusted key or one trusted earlier.
    pub fn check_signer(
        &mut self,
        user: &str,
        fingerprint: &str,
        now: i64,
    ) -> Result<Seen, Mismatch> {
        match self.users.get(user) {
            None => {
                self.record(user, fingerprint, now);
                Ok(Seen::FirstSight)
            }
            Some(k)
                if k.fingerprint == fingerprint || k.previous.iter().any(|p| p == fingerprint) =>
            {
                Ok(Seen::Known(k.source))
            }
            Some(k) => Err(Mismatch {
                user: user.to_owned(),
                presented: fingerprint.to_owned(),
                trusted: k.clone(),
            }),
        }
    }

    /// Pins `fingerprint` as verified for `user`; returns what was trusted before.
    pub fn verify(&mut self, user: &str, fingerprint: &str, now: i64) -> Option<KnownKey> {
        let before = self.users.get(user).cloned();
        let mut previous = before
            .as_ref()
            .map(|k| k.previous.clone())
            .unwrap_or_default();
        if let Some(old) = &before
            && old.fingerprint != fingerprint
            && !previous.contains(&old.fingerprint)
        {
            previous.push(old.fingerprint.clone());
        }
        previous.retain(|p| p != fingerprint);
        self.users.insert(
            user.to_owned(),
            KnownKey {
                fingerprint: fingerprint.to_owned(),
                source: PinSource::Verified,
                since: now,
                previous,
            },
        );
        before
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// [`KnownKeys`] on disk in a state directory.
#[derive(Debug)]
pub struct PinStore {
    state: StateDir,
    /// Serializes the read-modify-writes of this process (the file lock, of processes).
    busy: Mutex<()>,
}

impl PinStore {
    pub fn new(state: &StateDir) -> Self {
        PinStore {
            state: state.clone(),
            busy: Mutex::new(()),
        }
    }

    fn damaged(&self, e: impl std::fmt::Display) -> FilesError {
        FilesError::Usage(format!(
            "{} is damaged ({e}); move it aside and run the command again (every key in it \
             will then be trusted on first sight again, so check fingerprints with `vault key \
             fingerprint USER`)",
            self.state.path().join(FILE).display()
        ))
    }

    /// The store as it is on disk (empty when there is none yet).
    pub fn load(&self) -> Result<KnownKeys, FilesError> {
        match self.state.read(FILE)? {
            None => Ok(KnownKeys {
                format: FORMAT,
                users: BTreeMap::new(),
            }),
            Some(text) => {
                let keys: KnownKeys = serde_json::from_str(&text).map_err(|e| self.damaged(e))?;
                if keys.format != FORMAT {
                    return Err(self.damaged(format!("unknown format {}", keys.format)));
                }
                Ok(keys)
            }
        }
    }

    /// Runs `change` on the stored keys under the lock and saves them if they changed.
    fn update<T>(&self, change: impl FnOnce(&mut KnownKeys) -> T) -> Result<T, FilesError> {
        let _busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        // Writing the lock file also creates the state directory (0700) if needed.
        if !self.state.path().join(LOCK).exists() {
            self.state.write(LOCK, b"")?;
        }
        let lock_path = self.state.path().join(LOCK);
        let lock =
            std::fs::File::open(&lock_path).map_err(|e| FilesError::io("open", &lock_path, e))?;
        lock.lock()
            .map_err(|e| FilesError::io("lock", &lock_path, e))?;
        let mut keys = self.load()?;
        let before = keys.clone();
        let out = change(&mut keys);
        if keys != before {
            let text = serde_json::to_vec_pretty(&keys)
                .map_err(|e| FilesError::Usage(format!("cannot encode the known keys: {e}")))?;
            self.state.write(FILE, &text)?;
        }
        Ok(out)
    }

    /// What is known about `user`.
    pub fn get(&self, user: &str) -> Result<Option<KnownKey>, FilesError> {
        Ok(self.load()?.get(user).cloned())
    }

    /// [`KnownKeys::check_recipient`] for the public key (SPKI DER) `public_key`.
    pub fn check_recipient(&self, user: &str, public_key: &[u8]) -> Result<Seen, FilesError> {
        let fingerprint = public_key_fingerprint(public_key);
        self.update(|k| k.check_recipient(user, &fingerprint, unix_now()))?
            .map_err(|m| m.recipient_error())
    }

    /// [`KnownKeys::check_signer`] for the public key `public_key`; `what` names the
    /// envelope in the refusal.
    pub fn check_signer(
        &self,
        user: &str,
        public_key: &[u8],
        what: &str,
    ) -> Result<Seen, FilesError> {
        let fingerprint = public_key_fingerprint(public_key);
        self.update(|k| k.check_signer(user, &fingerprint, unix_now()))?
            .map_err(|m| m.signer_error(what))
    }

    /// [`KnownKeys::verify`]: pins `fingerprint` (checked `SHA256:<hex>`) as verified.
    pub fn verify(&self, user: &str, fingerprint: &str) -> Result<Option<KnownKey>, FilesError> {
        self.update(|k| k.verify(user, fingerprint, unix_now()))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    const A: &str = "SHA256:aaaa";
    const B: &str = "SHA256:bbbb";
    const C: &str = "SHA256:cccc";

    #[test]
    fn a_recipient_is_trusted_on_first_sight_then_held_to_that_key() {
        let mut k = KnownKeys::default();
        assert_eq!(k.check_recipient("bob", A, 1), Ok(Seen::FirstSight));
        assert_eq!(
            k.check_recipient("bob", A, 2),
            Ok(Seen::Known(PinSource::FirstSeen))
        );
        let m = k.check_recipient("bob", B, 3).expect_err("a swapped key");
        assert_eq!(m.presented, B);
        assert_eq!(m.trusted.fingerprint, A);
        let text = m.recipient_error().to_string();
        for needle in [A, B, "vault key verify bob SHA256:bbbb", "first saw"] {
            assert!(text.contains(needle), "{needle:?} in {text}");
        }
        // A refusal records nothing.
        assert_eq!(k.get("bob").map(|p| p.fingerprint.as_str()), Some(A));
    }

    #[test]
    fn verifying_a_new_key_keeps_the_old_one_for_old_signatures_only() {
        let mut k = KnownKeys::default();
        k.check_recipient("bob", A, 1).expect("first sight");
        assert_eq!(k.verify("bob", B, 2).map(|p| p.fingerprint), Some(A.into()));
        let pin = k.get("bob").expect("pinned").clone();
        assert_eq!(pin.source, PinSource::Verified);
        assert_eq!(pin.previous, [A]);
        // New envelopes go only to the verified key...
        let m = k.check_recipient("bob", A, 3).expect_err("the old key");
        assert!(
            m.recipient_error().to_string().contains("you verified"),
            "{m:?}"
        );
        assert_eq!(
            k.check_recipient("bob", B, 3),
            Ok(Seen::Known(PinSource::Verified))
        );
        // ...but what bob signed with his old key still verifies; a third key does not.
        assert!(k.check_signer("bob", A, 3).is_ok());
        assert!(k.check_signer("bob", B, 3).is_ok());
        let m = k.check_signer("bob", C, 3).expect_err("an unknown key");
        let text = m.signer_error("the key of @team generation 0").to_string();
        assert!(text.contains(C) && text.contains(B), "{text}");
        // Verifying the old key again brings it back without duplicates.
        k.verify("bob", A, 4);
        assert_eq!(
            k.get("bob").map(|p| p.previous.clone()),
            Some(vec![B.to_owned()])
        );
        // A signer never seen before is recorded.
        assert_eq!(k.check_signer("carol", C, 5), Ok(Seen::FirstSight));
        assert!(k.check_recipient("carol", A, 5).is_err());
    }

    #[test]
    fn the_store_is_private_survives_and_refuses_damage() {
        let tmp = tempfile::tempdir().expect("tmp");
        let state = StateDir::at(tmp.path().join("vault"));
        let store = PinStore::new(&state);
        assert_eq!(store.get("bob").expect("empty"), None);
        let key = b"a public key".to_vec();
        assert_eq!(
            store.check_recipient("bob", &key).expect("first"),
            Seen::FirstSight
        );
        let path = state.path().join(FILE);
        assert_eq!(
            std::fs::metadata(&path).expect("meta").mode() & 0o777,
            0o600
        );
        let again = PinStore::new(&state);
        assert_eq!(
            again.check_recipient("bob", &key).expect("known"),
            Seen::Known(PinSource::FirstSeen)
        );
        let err = again
            .check_recipient("bob", b"another key")
            .expect_err("swapped");
        assert!(
            err.to_string().contains(&public_key_fingerprint(&key)),
            "{err}"
        );
        let fp = public_key_fingerprint(b"another key");
        again.verify("bob", &fp).expect("verify");
        assert_eq!(
            store.get("bob").expect("read").map(|k| k.fingerprint),
            Some(fp)
        );
        std::fs::write(&path, b"{").expect("damage");
        let err = store.get("bob").expect_err("damaged");
        assert!(err.to_string().contains("move it aside"), "{err}");
    }
}
