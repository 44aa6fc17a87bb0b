//! The server's hash of the client's auth key: Argon2id in a PHC string. The auth key is
//! already a 256-bit HKDF output, so this is defence in depth against a leaked database,
//! not the password-strength barrier (that is the client's Argon2id).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use vault_proto::kdf::KdfParams;
use vault_proto::proto::{ApiError, SecretBytes};

use std::net::IpAddr;

use crate::error::internal;
use crate::net::address;
use crate::state::ServerState;

/// Hashes an auth key with the given Argon2id parameters and a fresh random salt.
pub fn hash_auth_key(auth_key: &[u8], params: &KdfParams) -> anyhow::Result<String> {
    let mut salt_bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt_bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(auth_key, &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `auth_key` matches the PHC hash (parameters come from the hash itself).
pub fn verify_auth_key(auth_key: &[u8], phc: &str) -> bool {
    PasswordHash::new(phc)
        .is_ok_and(|hash| Argon2::default().verify_password(auth_key, &hash).is_ok())
}

/// Hashes `auth_key` on the blocking pool, when the server's hash queue gives the
/// client at `ip` a turn.
pub async fn hash_bounded(
    state: &ServerState,
    ip: IpAddr,
    auth_key: &SecretBytes,
) -> Result<String, ApiError> {
    let _turn = state.hashing.turn(address::client_key(ip)).await;
    let (key, params) = (auth_key.clone(), state.config.auth_hash);
    tokio::task::spawn_blocking(move || hash_auth_key(key.dangerously_leak_secret(), &params))
        .await
        .map_err(|e| internal("hashing", e))?
        .map_err(|e| internal("hashing", e))
}

/// Verifies `auth_key` against `phc` on the blocking pool, queued like `hash_bounded`.
pub async fn verify_bounded(
    state: &ServerState,
    ip: IpAddr,
    auth_key: SecretBytes,
    phc: String,
) -> Result<bool, ApiError> {
    let _turn = state.hashing.turn(address::client_key(ip)).await;
    tokio::task::spawn_blocking(move || verify_auth_key(auth_key.dangerously_leak_secret(), &phc))
        .await
        .map_err(|e| internal("hashing", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let cheap = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let a = hash_auth_key(b"k1", &cheap).expect("hash");
        let b = hash_auth_key(b"k1", &cheap).expect("hash");
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_auth_key(b"k1", &a));
        assert!(!verify_auth_key(b"k2", &a));
        assert!(!verify_auth_key(b"k1", "not a phc string"));
    }
}
