//! Vault's wire protocol and what both sides share without any key: frames and messages
//! (`proto`), the sizes of sealed data that the server checks without opening it
//! (`sizes`), Argon2 cost parameters as the server hands them out (`kdf`), SHA-256
//! fingerprints (`fingerprint`), and units and calendar helpers. Nothing here can seal or
//! open user data: `vault-server` and `vault-admin` depend on this crate and not on
//! `vault-core`, whose content cryptography only the client links (a check in `.ci/run`
//! keeps it so).

pub mod calendar;
pub mod fingerprint;
pub mod kdf;
pub mod proto;
pub mod sizes;
pub mod units;
