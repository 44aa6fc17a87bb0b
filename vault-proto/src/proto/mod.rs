//! The wire protocol (docs/PROTOCOL.md): one bidirectional QUIC stream per request, each carrying
//! a frame of `u32` big-endian length + CBOR. `frame` encodes and decodes frames,
//! `messages` holds the `Request`/`Response` types (`files` those of the file requests,
//! `groups` those of the group and key requests, `chat` those of
//! contacts and chat), `error` the stable error codes.

pub mod chat;
pub mod error;
pub mod files;
pub mod frame;
pub mod groups;
pub mod messages;
pub mod names;
pub mod secret_bytes;

pub use chat::{
    Attachment, ChatMessage, ChatTarget, ContactInfo, ContactState, Conversation, Event,
    SealedMessage, WrappedMessageKey,
};
pub use error::{ApiError, ErrorCode};
pub use files::{
    BATCH_MAX_FILES, BATCH_MAX_PATH_BYTES, BATCH_MAX_SEALED, BATCH_TOKEN_LEN, BatchResult,
    CHUNKS_PER_QUERY, Change, CommittedFile, EntryInfo, EntryKind, MAX_COMMIT_CHUNKS, NsRef,
    OpenFile, OpenedUpload, PutFile, Rename, SMALL_FILE_MAX, TrashItem, Usage, VersionInfo,
    check_encrypted_path, is_batch_token, parent_of,
};
pub use frame::{FrameError, MAX_FRAME_LEN, decode_body, encode_frame, parse_header};
pub use groups::{
    EnvelopeInfo, GroupDetails, GroupRole, GroupSummary, InviteInfo, KeyTask, MemberInfo,
    NewEnvelope, Rotation, UserKey,
};
pub use messages::*;
pub use secret_bytes::SecretBytes;

/// The protocol version a client announces in `hello`. Bumped on incompatible change.
pub const PROTOCOL_VERSION: u32 = 3;

/// The QUIC application close code for "your session ended" (logout elsewhere, a newer
/// login with `single_session`, an operator's kick or lock); the reason text says why.
pub const CLOSE_SESSION_ENDED: u32 = 0x10;
/// The QUIC application close code for a server shutting down.
pub const CLOSE_SHUTDOWN: u32 = 0x11;
/// The QUIC application close code for a connection that did not say `hello` or log in
/// within the server's deadlines; the reason text says which.
pub const CLOSE_TOO_SLOW: u32 = 0x12;

/// The TLS application protocol name (ALPN) both sides require.
pub const ALPN: &[u8] = b"vault/1";
