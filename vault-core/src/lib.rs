//! Vault's shared core: the wire protocol (`proto`) and the client-side cryptography
//! (`crypto`). Pure and synchronous: no sockets, no files, no database. The server uses
//! only `proto` and the helpers that name no user key; it never opens user data.

pub mod calendar;
pub mod crypto;
pub mod format;
pub mod proto;
pub mod units;
