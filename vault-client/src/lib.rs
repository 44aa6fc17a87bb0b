//! Vault's client library, driven by the `vault` CLI and by tests: a QUIC connection that
//! pins the server certificate (`transport`), the client state directory (`state`), the
//! composition of account keys from the core primitives (`keys`), and account operations
//! (`account`), the file commands (`files`), groups and other users' keys (`groups`),
//! `sync`/`push`/`pull` (`sync`), and contacts and end-to-end chat (`chat`).

pub mod account;
pub mod chat;
pub mod closing;
pub mod error;
pub mod files;
pub mod groups;
pub mod keys;
pub mod state;
pub mod sync;
pub mod transport;

pub use error::ClientError;
