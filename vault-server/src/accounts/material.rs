//! Checks of the key material clients send. The server cannot verify what it cannot
//! open, but it refuses malformed sizes and KDF parameters weaker than configured.

use vault_proto::kdf::{KdfParams, SALT_LEN};
use vault_proto::proto::{ApiError, NewAccount, PasswordMaterial};

const AUTH_KEY_LEN: usize = 32;
/// Sealed 32-byte key: version + nonce + key + tag.
const SEALED_KEY_LEN: usize = 1 + 12 + 32 + 16;
const MAX_PUBLIC_KEY_LEN: usize = 2048;
const MAX_SEALED_PRIVATE_KEY_LEN: usize = 8192;

/// Whether `kdf` is at least as strong as `minimum` in every parameter that costs an
/// attacker (memory and iterations).
fn at_least(kdf: &KdfParams, minimum: &KdfParams) -> bool {
    kdf.memory_kib >= minimum.memory_kib && kdf.iterations >= minimum.iterations
}

pub fn check_password(m: &PasswordMaterial, minimum: &KdfParams) -> Result<(), ApiError> {
    m.kdf
        .validate()
        .map_err(|e| ApiError::bad_request(format!("KDF parameters: {e}")))?;
    if !at_least(&m.kdf, minimum) {
        return Err(ApiError::bad_request(format!(
            "KDF parameters are weaker than this server requires (memory {} KiB, {} iterations)",
            minimum.memory_kib, minimum.iterations
        )));
    }
    if m.salt.len() != SALT_LEN {
        return Err(ApiError::bad_request(format!(
            "KDF salt must be {SALT_LEN} bytes"
        )));
    }
    if m.auth_key.dangerously_leak_secret().len() != AUTH_KEY_LEN {
        return Err(ApiError::bad_request(format!(
            "auth key must be {AUTH_KEY_LEN} bytes"
        )));
    }
    if m.account_key_by_kek.len() != SEALED_KEY_LEN {
        return Err(ApiError::bad_request(
            "sealed account key has the wrong size",
        ));
    }
    Ok(())
}

pub fn check_account(a: &NewAccount, minimum: &KdfParams) -> Result<(), ApiError> {
    check_password(&a.password, minimum)?;
    if a.account_key_by_recovery.len() != SEALED_KEY_LEN {
        return Err(ApiError::bad_request(
            "recovery-sealed account key has the wrong size",
        ));
    }
    if a.public_key.is_empty() || a.public_key.len() > MAX_PUBLIC_KEY_LEN {
        return Err(ApiError::bad_request("public key has the wrong size"));
    }
    if a.private_key_sealed.is_empty() || a.private_key_sealed.len() > MAX_SEALED_PRIVATE_KEY_LEN {
        return Err(ApiError::bad_request(
            "sealed private key has the wrong size",
        ));
    }
    Ok(())
}
