//! Chat on the client side (docs/FORMAT.md §9): contacts, end-to-end direct and group messages
//! the server relays but cannot read.
//!
//! - [`target`] — `USER` or `@group` as typed.
//! - [`contacts`] — contact requests, the contact list, the display name.
//! - [`send`] — making a message: a direct one for a mutual contact whose key passes the
//!   pin store, a group one under the group key in force; sending it.
//! - [`attach`] — sending a file: uploaded into the sender's space, its key in the message.
//! - [`fetch`] — fetching the file a message carries, checked against the message.
//! - [`receive`] — checking a received message (trusted sender key, signature) and
//!   opening it; one that fails is kept as refused, never shown as text.
//! - [`history`] — a conversation's messages and the inbox.
//! - [`listen`] — the `subscribe` event stream with reconnects.

pub mod attach;
pub mod contacts;
pub mod fetch;
pub mod history;
pub mod listen;
pub mod receive;
pub mod send;
pub mod target;
#[cfg(test)]
mod testing;

pub use listen::{ListenError, ListenEvent, Listener};
pub use receive::{Content, Received};
