//! `CryptoError`: the one error type of the `crypto` module.

/// Everything that can go wrong in [`crate::crypto`]. Messages are written for the person
/// at the keyboard; none of them contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Authenticated decryption failed. On purpose this does not say why: a wrong key, wrong
    /// associated data, a truncated blob and a flipped bit all look the same.
    #[error("could not decrypt: wrong key, or the data was altered")]
    Decrypt,

    /// Authenticated encryption failed (for example, the input was absurdly large).
    #[error("could not encrypt")]
    Encrypt,

    /// The password hash (Argon2id) or the key-derivation parameters were refused.
    #[error("key derivation failed: {0}")]
    Kdf(String),

    /// An RSA key could not be generated, parsed or used, or a signature did not verify.
    #[error("RSA: {0}")]
    Rsa(String),

    /// A recovery key typed by the user could not be read. The message says how it should look.
    #[error("invalid recovery key: {0}")]
    InvalidRecoveryKey(String),

    /// An input had the wrong size.
    #[error("{what} must be {expected} bytes, got {got}")]
    InvalidLength {
        /// What was being read, e.g. "key" or "salt".
        what: &'static str,
        /// The required length in bytes.
        expected: usize,
        /// The length that was supplied.
        got: usize,
    },

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}
