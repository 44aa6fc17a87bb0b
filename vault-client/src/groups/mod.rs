//! Groups on the client side (docs/FORMAT.md §8): shared spaces whose key the server never
//! holds.
//!
//! - [`pins`] — the pin store of other users' public keys (`known_keys.json`).
//! - [`identity`] — the caller's key pair ([`Me`]) and which keys it trusts for whom
//!   ([`Trust`]).
//! - [`keyring`] — the caller's envelopes, checked and opened into the generations of a
//!   group key ([`Keyring`]).
//! - [`seal`] — envelopes for members and new key generations.
//! - [`heal`] — the key work the server hands out (first keys, rotations, missing
//!   envelopes), done with warnings instead of failures.
//! - [`ops`] — the `vault group` commands.
//! - [`people`] — `vault key fingerprint` and `vault key verify`.
//!
//! File commands in a group space get the group's keys from
//! [`crate::files::Files::keys_for`], which opens them through [`keyring`].

pub mod heal;
pub mod identity;
pub mod keyring;
pub mod ops;
pub mod people;
pub mod pins;
pub mod seal;
#[cfg(test)]
pub(crate) mod testing;

pub use identity::{Me, Trust};
pub use keyring::Keyring;
pub use pins::PinStore;
