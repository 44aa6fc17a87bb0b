//! Request and response messages. Encoded as CBOR with serde's external tagging:
//! a unit variant is a text string (`"logout"`), any other a one-entry map
//! (`{"hello": {"protocol_version": 1}}`). Byte fields are CBOR byte strings.
//! `tests/vectors/wire/` pins the encoding; change it only with a protocol version bump.

use serde::{Deserialize, Serialize};

use super::{ApiError, SecretBytes};
use crate::crypto::kdf::KdfParams;

/// Everything a client can ask. The first request on a connection must be `Hello`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Hello {
        protocol_version: u32,
    },
    /// The salt and KDF parameters for a username (a stable fake for unknown names).
    Prelogin {
        username: String,
    },
    /// Registration step 1: mail a verification code to `email`.
    RegisterStart {
        username: String,
        email: String,
    },
    /// Registration step 2: the mailed code and the client-made key material.
    RegisterFinish {
        username: String,
        code: String,
        account: NewAccount,
    },
    Login {
        username: String,
        auth_key: SecretBytes,
    },
    /// Binds an existing session to this connection.
    Resume {
        token: SecretBytes,
    },
    Logout,
    Whoami,
    /// Proves the old password and replaces the password material. Ends other sessions.
    ChangePassword {
        old_auth_key: SecretBytes,
        new: PasswordMaterial,
    },
    /// Password reset step 1: mail a code to the account's address (the answer does not
    /// say whether the account exists).
    ResetStart {
        username: String,
    },
    /// With a valid reset code, returns the account key sealed by the recovery key.
    ResetRecovery {
        username: String,
        code: String,
    },
    /// Password reset step 2: consumes the code and installs the new material.
    ResetFinish {
        username: String,
        code: String,
        reset: ResetMaterial,
    },
}

impl Request {
    /// A short name for logs and spans; never includes field values.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Prelogin { .. } => "prelogin",
            Self::RegisterStart { .. } => "register_start",
            Self::RegisterFinish { .. } => "register_finish",
            Self::Login { .. } => "login",
            Self::Resume { .. } => "resume",
            Self::Logout => "logout",
            Self::Whoami => "whoami",
            Self::ChangePassword { .. } => "change_password",
            Self::ResetStart { .. } => "reset_start",
            Self::ResetRecovery { .. } => "reset_recovery",
            Self::ResetFinish { .. } => "reset_finish",
        }
    }
}

/// Everything a server can answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Hello {
        protocol_version: u32,
        server_version: String,
    },
    Ok,
    Prelogin {
        salt: ByteBuf,
        kdf: KdfParams,
    },
    /// A code was mailed; new accounts must use KDF parameters at least this strong.
    RegisterStarted {
        kdf: KdfParams,
        code_ttl_s: u64,
    },
    /// A session was opened or resumed on this connection.
    LoggedIn(LoggedIn),
    Whoami(AccountInfo),
    ResetRecovery {
        account_key_by_recovery: ByteBuf,
    },
    /// A reset code was mailed if the account exists.
    ResetStarted {
        code_ttl_s: u64,
    },
    Error(ApiError),
}

/// Byte strings that are not secret (sealed blobs, public keys, salts).
pub type ByteBuf = serde_bytes::ByteBuf;

/// The password-derived material the server stores: the salt and parameters, the auth
/// key (which the server hashes again), and the account key sealed under the KEK.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PasswordMaterial {
    pub salt: ByteBuf,
    pub kdf: KdfParams,
    pub auth_key: SecretBytes,
    pub account_key_by_kek: ByteBuf,
}

/// Everything a new account (or a reset that discards old data) sends. All of it is made
/// by the client; nothing here opens user data without the password or recovery key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewAccount {
    pub password: PasswordMaterial,
    pub account_key_by_recovery: ByteBuf,
    /// RSA-3072 public key, SubjectPublicKeyInfo DER.
    pub public_key: ByteBuf,
    /// PKCS#8 DER of the private key, sealed under the account key.
    pub private_key_sealed: ByteBuf,
}

/// How a password reset treats the existing keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetMaterial {
    /// The client opened the account key with the recovery key: keep all keys, replace
    /// only the password material.
    KeepKeys { password: PasswordMaterial },
    /// Fresh keys: everything sealed under the old account key becomes unreadable.
    DiscardEncryptedData { account: NewAccount },
}

/// The answer to `login` and `resume`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedIn {
    /// The session token (only on `login`; `resume` already has it).
    pub token: Option<SecretBytes>,
    pub keys: AccountKeys,
}

/// The sealed key material a client needs to unlock an account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountKeys {
    pub username: String,
    pub account_key_by_kek: ByteBuf,
    pub public_key: ByteBuf,
    pub private_key_sealed: ByteBuf,
}

/// The answer to `whoami`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub username: String,
    pub email: String,
    pub quota_bytes: u64,
    pub used_bytes: u64,
    pub created_at: i64,
    pub sessions: u64,
}
