//! Client-side cryptography (docs/FORMAT.md). Everything here is pure and synchronous.
//!
//! - [`mod@secret`] — [`Key32`], a 32-byte key wiped on drop, and random bytes.
//! - [`kdf`] — Argon2id password hashing ([`PasswordKeys`]) and HKDF-SHA256 subkeys.
//! - [`mod@seal`] — AES-256-GCM sealed blobs (`0x01 ‖ nonce ‖ ciphertext ‖ tag`) and the
//!   associated-data builders in [`seal::ad`].
//! - [`rsa`] — the user's RSA-3072 key pair ([`UserKeyPair`]): OAEP-SHA-256 and PSS-SHA-256.
//! - [`recovery`] — the recovery key and its `vault-rk-XXXX-…` text form.
//! - [`fingerprint`] — SHA-256 and `SHA256:<hex>` fingerprints.
//! - [`error`] — [`CryptoError`].
//!
//! The only crypto provider is `aws-lc-rs` (plus the `argon2` crate for Argon2id). Secrets
//! are held in `Zeroizing` buffers, never printed by `Debug`, and read only through
//! methods named `dangerously_leak_secret`.

pub mod error;
pub mod kdf;
pub mod recovery;
pub mod rsa;
pub mod seal;
pub mod secret;

pub use error::CryptoError;
pub use kdf::{KdfParams, PasswordKeys, SALT_LEN, derive_master_key, derive_subkey, hkdf_sha256};
pub use recovery::RecoveryKey;
pub use rsa::{UserKeyPair, encrypt_oaep, public_key_fingerprint, verify_pss};
pub use seal::{open, seal};
pub use secret::{Key32, random_bytes, random_vec};
pub use vault_proto::fingerprint::{self, sha256, sha256_fingerprint};
