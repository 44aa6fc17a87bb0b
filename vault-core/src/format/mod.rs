//! The file format (docs/FORMAT.md §7): how file contents, file keys, metadata and names
//! are sealed, and how legacy DES files are read. Pure and synchronous, like the rest of
//! `vault-core`; `docs/FORMAT.md` §7 is the byte-level specification.
//!
//! - [`chunks`] — content-defined chunks of a space (format version 2, not yet used by
//!   uploads): keyed chunker, keyed ids, padded chunk seals ([`chunks::ChunkKeys`]).
//! - [`chunklist`] — a version's ordered chunk ids and lengths, sealed under its file key
//!   ([`chunklist::seal_chunk_list`]; format version 2).
//! - [`stream`] — file contents: STREAM over AES-256-GCM in 1 MiB chunks
//!   ([`StreamSealer`], [`StreamOpener`]).
//! - [`filekey`] — per-version file keys wrapped under the account or group key, bound to
//!   namespace, file and version ([`wrap_file_key`], [`unwrap_file_key`]).
//! - [`meta`] — encrypted metadata: size, mtime, mode, BLAKE3 ([`FileMeta`]).
//! - [`names`] — deterministic AES-SIV encryption of path segments ([`NameKey`]).
//! - [`chat`] — chat messages: sealed under a fresh key (direct) or the group key, signed
//!   by the sender ([`chat::seal_direct`], [`chat::seal_group`], [`chat::verify`]).
//! - [`groupkey`] — group-key envelopes (RSA-OAEP with the slot as label, signed by the
//!   member who wrapped them) and the keys a join code carries ([`InviteSecret`]).
//! - [`legacy`] — decryption of the legacy DES-CBC/ECB netdisk format ([`decrypt_legacy`]).
//! - [`error`] — [`FormatError`].

// The sizes the server checks without opening anything (`vault_proto::sizes`) are
// exactly the sizes of these formats.
const _: () = {
    use vault_proto::sizes as checked;
    assert!(stream::CHUNK_LEN == checked::CHUNK_LEN);
    assert!(stream::TAG_LEN == checked::TAG_LEN);
    assert!(stream::SEALED_CHUNK_LEN == checked::SEALED_CHUNK_LEN);
    assert!(crate::crypto::seal::SEAL_OVERHEAD == checked::SEAL_OVERHEAD);
    assert!(filekey::WRAPPED_FILE_KEY_LEN == checked::WRAPPED_FILE_KEY_LEN);
    assert!(meta::SEALED_META_LEN == checked::SEALED_META_LEN);
    assert!(names::MAX_ENCRYPTED_NAME_LEN == checked::MAX_ENCRYPTED_NAME_LEN);
};

pub mod chat;
pub mod chunklist;
pub mod chunks;
pub mod error;
pub mod filekey;
pub mod groupkey;
pub mod legacy;
pub mod meta;
pub mod names;
pub mod stream;

pub use error::FormatError;
pub use filekey::{
    FileKeyAd, Namespace, generate_file_key, unwrap_file_key, unwrap_file_key_with, wrap_file_key,
    wrapping_key_for,
};
pub use groupkey::{EnvelopeSlot, InviteSecret, SignedEnvelope, open_envelope, seal_envelope};
pub use legacy::{LegacyDecryptor, LegacyMode, decrypt_legacy, parse_des_key};
pub use meta::{ContentHasher, FileMeta, content_hash, open_meta, seal_meta};
pub use names::{NameKey, split_path, validate_segment};
pub use stream::{
    CHUNK_LEN, StreamOpener, StreamSealer, chunk_count, open_all, plaintext_len, seal_all,
    sealed_len,
};
