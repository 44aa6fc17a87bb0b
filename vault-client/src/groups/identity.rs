//! Who the client acts as ([`Me`]: the username and the RSA key pair opened from the
//! account's sealed private key) and which public keys it trusts for whom ([`Trust`]:
//! the own key for the own name, the pin store for everyone else).

use vault_core::crypto::{Key32, UserKeyPair, public_key_fingerprint};
use vault_core::proto::{AccountKeys, UserKey};

use super::pins::{PinStore, Seen};
use crate::files::FilesError;
use crate::keys;

/// The logged-in user with their key pair.
#[derive(Debug)]
pub struct Me {
    username: String,
    public_key: Vec<u8>,
    pair: UserKeyPair,
}

impl Me {
    /// Opens the private key sealed under the account key and checks that it matches the
    /// public key the server holds for the account.
    pub fn open(keys: &AccountKeys, account_key: &Key32) -> Result<Me, FilesError> {
        let pair = keys::check_private_key(keys, account_key)?;
        Me::new(&keys.username, pair)
    }

    /// `username` with the key pair `pair`.
    pub fn new(username: &str, pair: UserKeyPair) -> Result<Me, FilesError> {
        Ok(Me {
            username: username.to_owned(),
            public_key: pair.public_key_der().map_err(crate::ClientError::from)?,
            pair,
        })
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// The public key, SPKI DER.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    pub fn pair(&self) -> &UserKeyPair {
        &self.pair
    }

    /// `SHA256:<hex>` of the public key.
    pub fn fingerprint(&self) -> String {
        public_key_fingerprint(&self.public_key)
    }
}

/// The keys the client trusts: its own for its own name, the pin store's for others.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    pub me: &'a Me,
    pub pins: &'a PinStore,
}

impl Trust<'_> {
    /// Checks the key of a user to wrap a group key for (see
    /// [`super::pins::KnownKeys::check_recipient`]); the own key must be exactly the own.
    pub fn recipient(&self, user: &UserKey) -> Result<Seen, FilesError> {
        if user.username == self.me.username {
            if user.public_key.as_slice() != self.me.public_key() {
                return Err(FilesError::Integrity(format!(
                    "the server gives your own account the public key {}, but your key is {}; \
                     nothing was sent, the server may be trying to read the group's files",
                    public_key_fingerprint(&user.public_key),
                    self.me.fingerprint()
                )));
            }
            return Ok(Seen::Known(super::pins::PinSource::Verified));
        }
        self.pins.check_recipient(&user.username, &user.public_key)
    }

    /// Checks the key that signed an envelope (`what` names it in the refusal).
    pub fn signer(&self, signer: &str, signer_key: &[u8], what: &str) -> Result<(), FilesError> {
        if signer == self.me.username {
            if signer_key != self.me.public_key() {
                return Err(FilesError::Integrity(format!(
                    "{what} was refused: it claims to be signed by you, with the key {}, but \
                     your key is {}; the server may be handing you a key of its own choosing",
                    public_key_fingerprint(signer_key),
                    self.me.fingerprint()
                )));
            }
            return Ok(());
        }
        self.pins.check_signer(signer, signer_key, what).map(|_| ())
    }
}
