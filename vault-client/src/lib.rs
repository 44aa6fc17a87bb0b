//! Vault's client library, driven by the `vault` CLI and by tests: a QUIC connection that
//! pins the server certificate (`transport`), the client state directory (`state`), the
//! composition of account keys from the core primitives (`keys`), and account operations
//! (`account`), and the file commands (`files`).

pub mod account;
pub mod error;
pub mod files;
pub mod keys;
pub mod state;
pub mod transport;

pub use error::ClientError;
