//! `FormatError`: the one error type of the [`crate::format`] module.

use crate::crypto::CryptoError;

/// Everything that can go wrong while sealing or opening file contents, file keys,
/// metadata, names, or while decrypting legacy data. Messages are written for the person
/// at the keyboard; none of them contains key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A content chunk failed authentication: wrong file key, a chunk of another file, a
    /// chunk moved to another position, a chunk wrongly flagged as last (or not), or
    /// altered bytes. On purpose this does not say which.
    #[error(
        "chunk {index} could not be decrypted: wrong key, or the file was altered, reordered or truncated"
    )]
    ChunkDecrypt {
        /// The chunk index the chunk was opened at.
        index: u64,
    },

    /// A chunk has an impossible size for its position (a non-last chunk that is not
    /// exactly one full chunk, a chunk larger than a full chunk, or one shorter than a tag).
    #[error("chunk {index} has {len} bytes; {expected}")]
    ChunkSize {
        /// The chunk index.
        index: u64,
        /// The size that was supplied (plaintext when sealing, sealed when opening).
        len: usize,
        /// What the size should have been, in words.
        expected: String,
    },

    /// Chunks were presented out of order: after chunk `expected - 1` only chunk
    /// `expected` may come.
    #[error("chunks out of order: expected chunk {expected}, got chunk {got}")]
    ChunkOrder {
        /// The index that had to come next.
        expected: u64,
        /// The index that was supplied.
        got: u64,
    },

    /// A content-defined chunk (format version 2) did not open as the chunk it should be:
    /// wrong space, another chunk in its place, bad padding, or altered bytes.
    #[error(
        "chunk {id} could not be decrypted: wrong key, or the server sent other or altered bytes"
    )]
    ChunkOpen {
        /// The chunk's id, in hex.
        id: String,
    },

    /// A sealed chunk list did not open: wrong file key (another version's list), or
    /// altered.
    #[error("the file's chunk list could not be decrypted: wrong key, or it was altered")]
    ChunkListDecrypt,

    /// A chunk list opened but is not the version-2 grammar.
    #[error("malformed chunk list: {0}")]
    ChunkListFormat(String),

    /// Sealing a content-defined chunk failed in the AEAD itself.
    #[error("a chunk could not be sealed")]
    ChunkSeal,

    /// A chunk was supplied after the one flagged as last.
    #[error("a chunk came after the last chunk of the file")]
    ChunkAfterLast,

    /// An empty chunk flagged as last after data chunks. Only an empty file is written
    /// as a single empty last chunk; a file whose length is a multiple of the chunk size
    /// ends with its final full chunk.
    #[error("an empty last chunk is only allowed as the single chunk of an empty file")]
    EmptyTrailingChunk,

    /// The stream ended without its last chunk: the file was truncated.
    #[error("the file is truncated: its last chunk is missing")]
    Truncated,

    /// The chunk index would exceed what the nonce can hold (2^64 chunks).
    #[error("too many chunks")]
    TooManyChunks,

    /// A wrapped file key did not open: wrong account or group key, or it was moved to
    /// another file, version, namespace or generation, or altered.
    #[error(
        "the file key could not be unwrapped: wrong key, or it belongs to another file or version"
    )]
    FileKeyDecrypt,

    /// A namespace identifier can't be put into associated data unambiguously.
    #[error(
        "invalid namespace {0:?}: it must be non-empty and contain no ';', '=' or control characters"
    )]
    InvalidNamespace(String),

    /// Sealed metadata did not open: wrong file key, or the metadata was altered or
    /// belongs to another version.
    #[error("the file metadata could not be decrypted: wrong key, or it was altered")]
    MetaDecrypt,

    /// Metadata opened but its contents are not the version-1 grammar.
    #[error("malformed file metadata: {0}")]
    MetaFormat(String),

    /// A plaintext path or path segment is not acceptable; the text says what is wrong.
    #[error("invalid name: {0}")]
    InvalidName(String),

    /// An encrypted name is not of the form Vault writes (not lowercase unpadded base32,
    /// or of an impossible length); the text says what is wrong.
    #[error("malformed encrypted name: {0}")]
    MalformedEncryptedName(String),

    /// An encrypted name failed authentication: wrong key, wrong parent directory, or
    /// altered.
    #[error(
        "an encrypted name could not be decrypted: wrong key, wrong parent directory, or it was altered"
    )]
    NameDecrypt,

    /// Legacy ciphertext whose length is not a positive multiple of the DES block size.
    #[error("{}", legacy_length_message(*len))]
    LegacyLength {
        /// The ciphertext length in bytes.
        len: u64,
    },

    /// Legacy data decrypted to invalid PKCS#5 padding.
    #[error("bad padding after decrypting legacy data: wrong key or mode?")]
    LegacyPadding,

    /// A legacy DES key typed by the user could not be read; the text says how it should look.
    #[error("invalid DES key: {0}")]
    InvalidDesKey(String),

    /// A group-key envelope failed its checks: its signature does not verify, or it does
    /// not open for this member, group and generation.
    #[error("the key of group {group_id} generation {generation} was refused: {why}")]
    GroupKey {
        /// The group id the envelope claims.
        group_id: i64,
        /// The generation it claims.
        generation: u32,
        /// What failed, in words.
        why: String,
    },

    /// A chat message failed a check (its signature, its key, its body) or cannot be
    /// made; the text says what.
    #[error("chat message: {0}")]
    Chat(String),

    /// A join code could not be read or used; the text says what is wrong.
    #[error("invalid join code: {0}")]
    InvalidJoinCode(String),

    /// AES-GCM refused to encrypt (for example, an absurdly large input).
    #[error("could not encrypt")]
    Encrypt,

    /// A lower-level cryptographic failure (random number generator, key derivation).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

fn legacy_length_message(len: u64) -> String {
    if len == 0 {
        "legacy data is empty (PKCS#5 padding makes at least 8 bytes): is this a legacy file?"
            .into()
    } else {
        format!("legacy data of {len} bytes is not a multiple of 8 bytes: is this a legacy file?")
    }
}

/// Shorthand for results of this module.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;
