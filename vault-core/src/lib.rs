//! Vault's client-side cryptography (`crypto`) and the formats it seals (`format`), with
//! the wire protocol re-exported from `vault-proto` (`proto`, `units`, `calendar`). Pure
//! and synchronous: no sockets, no files, no database. Only the client side links it: the
//! server and `vault-admin` depend on `vault-proto` alone, so they cannot open user data.

pub mod crypto;
pub mod format;

pub use vault_proto::{calendar, proto, units};
