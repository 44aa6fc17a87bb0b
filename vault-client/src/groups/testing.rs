//! Key pairs shared by the tests of this module (RSA key generation is the slow part).

use std::sync::OnceLock;

use vault_core::crypto::UserKeyPair;

use super::identity::Me;

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
