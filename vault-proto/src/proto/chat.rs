//! Message types of the contact, profile and chat requests (docs/PROTOCOL.md §6.4, docs/FORMAT.md
//! §9): contacts and presence, sealed chat messages, history and the inbox, and the events a
//! `subscribe` stream carries.
//!
//! A message travels as a [`SealedMessage`]: made, sealed and signed by the sender's
//! client (`vault_core::format::chat`), checked by the server only for who may send what to
//! whom (the sender named inside must be the session's user, the recipient a mutual
//! contact, the group one the sender is a member of, the sizes within limits), stored as
//! it came, and opened and verified by each receiver's client.
//!
//! `subscribe` turns its stream into an event stream: the server answers `subscribed`,
//! then writes one `event` frame per [`Event`] (first every message not yet delivered to
//! the user, oldest first, then new ones as they arrive) until the connection ends.

use serde::{Deserialize, Serialize};

use super::ByteBuf;

/// At most this many bytes of ciphertext in one message (64 KiB of text, sealed, plus
/// room for the message's other fields); the server's `[chat] max_text_bytes` may be lower.
pub const MAX_MESSAGE_CIPHERTEXT: usize = 96 * 1024;
/// At most this many messages in one `chat_history` page.
pub const MAX_HISTORY_PAGE: u32 = 500;
/// The longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;

/// Whom a message is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatTarget {
    /// A direct message to a mutual contact (case-folded username).
    User { username: String },
    /// A message to every member of a group (case-folded group name).
    Group { name: String },
}

/// Where a contact relationship stands, as seen by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactState {
    /// Both accepted: direct messages may flow.
    Contact,
    /// The caller asked; the other has not answered.
    RequestSent,
    /// The other asked; the caller may accept or reject.
    RequestReceived,
}

/// One entry of `contact_list`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContactInfo {
    pub username: String,
    pub display_name: Option<String>,
    pub state: ContactState,
    /// Has a live `subscribe` stream now (only shown for mutual contacts).
    pub online: bool,
    /// Unix seconds when they were last connected (only for mutual contacts).
    pub last_seen: Option<i64>,
    /// RSA-3072 SubjectPublicKeyInfo DER (to wrap message keys for them).
    pub public_key: ByteBuf,
}

/// A message key wrapped for one reader of a direct message (the recipient, and the
/// sender so that they can read their own history).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WrappedMessageKey {
    pub member: String,
    pub wrapped: ByteBuf,
}

/// A message as the sender's client made it; the server stores it as it came.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SealedMessage {
    /// The sender's username; must be the session's user.
    pub sender: String,
    pub target: ChatTarget,
    /// For a group message: the group's id and the key generation that seals it.
    pub group_id: Option<i64>,
    pub generation: Option<u32>,
    /// The sender's clock, Unix milliseconds (signed; the server refuses one far off).
    pub sent_at_ms: i64,
    /// The sealed body (see `format::chat`).
    pub ciphertext: ByteBuf,
    /// Direct messages: the message key for the recipient and the sender. Group messages:
    /// empty.
    pub keys: Vec<WrappedMessageKey>,
    /// RSA-PSS-SHA256 by the sender over ciphertext, recipients and timestamp.
    pub signature: ByteBuf,
    /// A file sent with the message (`vault chat send --file`): where it is kept in the
    /// sender's space. Not covered by the signature: the file's key and BLAKE3 travel in
    /// the signed, sealed body, which authenticates the contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
}

/// The file a message carries, as the server sees it: the encrypted path of a file in the
/// sender's personal space and the version sent. The server keeps the version readable to
/// the message's readers (`chat_file_download`) while the sender keeps the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub path: String,
    pub version: u64,
}

/// A stored message as the server hands it out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Server-assigned, increasing in arrival order.
    pub id: i64,
    /// Unix milliseconds when the server stored it.
    pub received_at_ms: i64,
    pub message: SealedMessage,
    /// The sender's public key when the message arrived (to verify the signature).
    pub sender_key: ByteBuf,
}

/// One conversation of `chat_inbox`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// For a direct conversation, the other user.
    pub target: ChatTarget,
    pub last_id: i64,
    pub last_received_at_ms: i64,
    /// Messages from others the caller has not read.
    pub unread: u64,
}

/// What a `subscribe` stream carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A message for the user (or sent by another session of theirs).
    Message(ChatMessage),
    /// Someone asked to become a contact.
    ContactRequest { from: String },
    /// A contact relationship changed (`None`: it ended).
    ContactChanged {
        username: String,
        state: Option<ContactState>,
    },
    /// A mutual contact came online or went offline.
    Presence {
        username: String,
        online: bool,
        last_seen: Option<i64>,
    },
}
