//! Key derivation: Argon2id from the password to the master key, HKDF-SHA256 from a key to
//! labelled subkeys (docs/FORMAT.md §1).
//!
//! ```text
//! MK       = Argon2id v0x13 (password, salt[16], m, t, p) -> 32 bytes
//! auth_key = HKDF-SHA256(ikm = MK, salt = "", info = "vault/v1/auth") -> 32 bytes
//! kek      = HKDF-SHA256(ikm = MK, salt = "", info = "vault/v1/kek")  -> 32 bytes
//! ```

use aws_lc_rs::hkdf;

use super::error::CryptoError;
use super::secret::Key32;

/// HKDF label of the key the client sends to log in (the server stores only its hash).
pub const LABEL_AUTH: &str = "vault/v1/auth";
/// HKDF label of the key-encryption key that seals the account key.
pub const LABEL_KEK: &str = "vault/v1/kek";
/// HKDF label of the key that seals file keys (from the account key or a group key).
pub const LABEL_FILEKEYS: &str = "vault/v1/filekeys";
/// HKDF label of the key that encrypts path segments.
pub const LABEL_NAMES: &str = "vault/v1/names";
/// HKDF label of the key that seals file metadata (from a file key).
pub const LABEL_META: &str = "vault/v1/meta";
/// HKDF label of the key that seals group chat messages (from a group key).
pub const LABEL_CHAT: &str = "vault/v1/chat";
/// HKDF label of the key part of an invite code's secret (seals the group keys).
pub const LABEL_INVITE_KEY: &str = "vault/v1/invite-key";
/// HKDF label of the auth part of an invite code's secret (its hash is kept by the server).
pub const LABEL_INVITE_AUTH: &str = "vault/v1/invite-auth";

pub use vault_proto::kdf::{InvalidKdfParams, KdfParams, SALT_LEN};

impl From<InvalidKdfParams> for CryptoError {
    fn from(e: InvalidKdfParams) -> Self {
        CryptoError::Kdf(e.0)
    }
}

/// `MK = Argon2id v0x13(password, salt)`, 32 bytes. The salt must be [`SALT_LEN`] bytes.
pub fn derive_master_key(
    password: &[u8],
    salt: &[u8],
    params: &KdfParams,
) -> Result<Key32, CryptoError> {
    params.validate()?;
    if salt.len() != SALT_LEN {
        return Err(CryptoError::InvalidLength {
            what: "salt",
            expected: SALT_LEN,
            got: salt.len(),
        });
    }
    let argon_params = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(Key32::LEN),
    )
    .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password, salt, out.as_mut_slice())
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    Key32::from_slice(out.as_slice())
}

/// Output length for `aws_lc_rs::hkdf`, which wants it as a `KeyType`.
struct OutLen(usize);

impl hkdf::KeyType for OutLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 (RFC 5869) with an empty salt and `info`'s UTF-8 bytes as info, filling
/// `out` (at most 255 × 32 = 8160 bytes).
pub fn hkdf_sha256(ikm: &[u8], info: &str, out: &mut [u8]) -> Result<(), CryptoError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(ikm);
    let info = [info.as_bytes()];
    prk.expand(&info, OutLen(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| {
            CryptoError::Kdf(format!(
                "HKDF output of {} bytes is above the maximum of 8160",
                out.len()
            ))
        })
}

/// A 32-byte subkey `HKDF-SHA256(key, info)`; use one of the `LABEL_*` constants as `info`.
pub fn derive_subkey(key: &Key32, info: &str) -> Result<Key32, CryptoError> {
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    hkdf_sha256(key.dangerously_leak_secret(), info, out.as_mut_slice())?;
    Key32::from_slice(out.as_slice())
}

/// The two keys a password yields: `auth_key` (sent to the server to log in) and `kek`
/// (opens the account key; never leaves the client).
#[derive(Debug)]
pub struct PasswordKeys {
    /// `HKDF(MK, "vault/v1/auth")`.
    pub auth_key: Key32,
    /// `HKDF(MK, "vault/v1/kek")`.
    pub kek: Key32,
}

impl PasswordKeys {
    /// Runs Argon2id once, then derives both subkeys. The master key is wiped on return.
    pub fn derive(password: &[u8], salt: &[u8], params: &KdfParams) -> Result<Self, CryptoError> {
        let mk = derive_master_key(password, salt, params)?;
        Ok(Self {
            auth_key: derive_subkey(&mk, LABEL_AUTH)?,
            kek: derive_subkey(&mk, LABEL_KEK)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfParams = KdfParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn default_params_are_the_spec_ones() {
        assert_eq!(
            KdfParams::DEFAULT,
            KdfParams {
                memory_kib: 65536,
                iterations: 3,
                parallelism: 1
            }
        );
        assert_eq!(KdfParams::default(), KdfParams::DEFAULT);
        assert!(KdfParams::DEFAULT.validate().is_ok());
    }

    #[test]
    fn validate_refuses_bad_params() {
        let bad = [
            (
                KdfParams {
                    parallelism: 0,
                    ..CHEAP
                },
                "parallelism",
            ),
            (
                KdfParams {
                    parallelism: 17,
                    memory_kib: 1024,
                    ..CHEAP
                },
                "parallelism",
            ),
            (
                KdfParams {
                    iterations: 0,
                    ..CHEAP
                },
                "iterations",
            ),
            (
                KdfParams {
                    iterations: 101,
                    ..CHEAP
                },
                "iterations",
            ),
            (
                KdfParams {
                    memory_kib: 7,
                    ..CHEAP
                },
                "memory",
            ),
            (
                KdfParams {
                    memory_kib: 31,
                    parallelism: 4,
                    ..CHEAP
                },
                "memory",
            ),
            (
                KdfParams {
                    memory_kib: 4 * 1024 * 1024 + 1,
                    ..CHEAP
                },
                "memory",
            ),
        ];
        for (params, word) in bad {
            match params.validate() {
                Err(InvalidKdfParams(msg)) => assert!(msg.contains(word), "{params:?}: {msg}"),
                other => panic!("{params:?} was not refused: {other:?}"),
            }
            assert!(derive_master_key(b"pw", &[0u8; SALT_LEN], &params).is_err());
        }
        assert!(
            KdfParams {
                memory_kib: 32,
                parallelism: 4,
                ..CHEAP
            }
            .validate()
            .is_ok()
        );
        assert!(
            KdfParams {
                memory_kib: 4 * 1024 * 1024,
                iterations: 100,
                parallelism: 16
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn master_key_is_deterministic_and_input_sensitive() -> Result<(), CryptoError> {
        let salt = [1u8; SALT_LEN];
        let a = derive_master_key(b"correct horse", &salt, &CHEAP)?;
        let b = derive_master_key(b"correct horse", &salt, &CHEAP)?;
        assert_eq!(a.dangerously_leak_secret(), b.dangerously_leak_secret());
        let other_pw = derive_master_key(b"correct horsf", &salt, &CHEAP)?;
        let other_salt = derive_master_key(b"correct horse", &[2u8; SALT_LEN], &CHEAP)?;
        let other_cost = derive_master_key(
            b"correct horse",
            &salt,
            &KdfParams {
                iterations: 2,
                ..CHEAP
            },
        )?;
        for k in [other_pw, other_salt, other_cost] {
            assert_ne!(a.dangerously_leak_secret(), k.dangerously_leak_secret());
        }
        Ok(())
    }

    #[test]
    fn salt_length_is_checked() {
        assert_eq!(
            derive_master_key(b"pw", &[0u8; 8], &CHEAP).err(),
            Some(CryptoError::InvalidLength {
                what: "salt",
                expected: SALT_LEN,
                got: 8
            })
        );
    }

    #[test]
    fn hkdf_rfc5869_test_case_3() -> Result<(), CryptoError> {
        // RFC 5869 A.3: SHA-256, IKM = 22 × 0x0b, empty salt, empty info, L = 42.
        let mut okm = [0u8; 42];
        hkdf_sha256(&[0x0b; 22], "", &mut okm)?;
        assert_eq!(
            hex::encode(okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        );
        Ok(())
    }

    #[test]
    fn hkdf_rejects_oversized_output() {
        let mut big = vec![0u8; 255 * 32 + 1];
        assert!(hkdf_sha256(b"k", "x", &mut big).is_err());
        let mut max = vec![0u8; 255 * 32];
        assert!(hkdf_sha256(b"k", "x", &mut max).is_ok());
    }

    #[test]
    fn subkeys_differ_by_label() -> Result<(), CryptoError> {
        let k = Key32::from_bytes([9u8; 32]);
        let labels = [
            LABEL_AUTH,
            LABEL_KEK,
            LABEL_FILEKEYS,
            LABEL_NAMES,
            LABEL_META,
            LABEL_CHAT,
            LABEL_INVITE_KEY,
            LABEL_INVITE_AUTH,
        ];
        let keys: Vec<[u8; 32]> = labels
            .iter()
            .map(|l| derive_subkey(&k, l).map(|s| *s.dangerously_leak_secret()))
            .collect::<Result<_, _>>()?;
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let mut manual = [0u8; 32];
        hkdf_sha256(&[9u8; 32], LABEL_KEK, &mut manual)?;
        assert_eq!(keys[1], manual);
        Ok(())
    }

    #[test]
    fn password_keys_match_manual_derivation() -> Result<(), CryptoError> {
        let salt = [3u8; SALT_LEN];
        let keys = PasswordKeys::derive(b"pw", &salt, &CHEAP)?;
        let mk = derive_master_key(b"pw", &salt, &CHEAP)?;
        assert_eq!(
            keys.auth_key.dangerously_leak_secret(),
            derive_subkey(&mk, LABEL_AUTH)?.dangerously_leak_secret()
        );
        assert_eq!(
            keys.kek.dangerously_leak_secret(),
            derive_subkey(&mk, LABEL_KEK)?.dangerously_leak_secret()
        );
        assert_ne!(
            keys.auth_key.dangerously_leak_secret(),
            keys.kek.dangerously_leak_secret()
        );
        assert!(format!("{keys:?}").contains("<redacted>"));
        Ok(())
    }
}
