//! What the tests of groups and chat share: key pairs (RSA key generation is the slow
//! part) and an empty pin store.

use std::sync::OnceLock;

use vault_core::crypto::UserKeyPair;

use super::identity::Me;
use super::pins::PinStore;
use crate::state::StateDir;

/// Key pair `i` of three made once per test run.
pub fn pair(i: usize) -> &'static UserKeyPair {
    static PAIRS: OnceLock<Vec<UserKeyPair>> = OnceLock::new();
    &PAIRS.get_or_init(|| {
        (0..3)
            .map(|_| UserKeyPair::generate().expect("RSA key generation"))
            .collect()
    })[i]
}

/// `username` acting with key pair `i`.
pub fn me(username: &str, i: usize) -> Me {
    let der = pair(i).pkcs8_der().expect("pkcs8");
    Me::new(username, UserKeyPair::from_pkcs8(&der).expect("key pair")).expect("me")
}

/// The public key (SPKI DER) of key pair `i`.
pub fn public(i: usize) -> Vec<u8> {
    pair(i).public_key_der().expect("public key")
}

/// An empty pin store in a temp state directory (kept while the directory lives).
pub fn store() -> (tempfile::TempDir, PinStore) {
    let tmp = tempfile::tempdir().expect("tmp");
    let pins = PinStore::new(&StateDir::at(tmp.path().join("state")));
    (tmp, pins)
}
