//! `Key32`, a 256-bit secret key wiped from memory on drop, and helpers for random bytes.

use zeroize::Zeroizing;

use super::error::CryptoError;

/// A 32-byte secret key (account key, file key, KEK, recovery key, subkeys…).
///
/// The bytes live in a [`Zeroizing`] buffer and are wiped on drop. `Debug` is redacted and
/// there is deliberately no `Serialize`, `PartialEq` or `Display`: to get at the bytes you
/// have to call [`Key32::dangerously_leak_secret`].
pub struct Key32(Zeroizing<[u8; 32]>);

impl Key32 {
    /// The key length in bytes.
    pub const LEN: usize = 32;

    /// A fresh key from the system random number generator.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut key = Self(Zeroizing::new([0u8; 32]));
        aws_lc_rs::rand::fill(key.0.as_mut_slice()).map_err(|_| CryptoError::Random)?;
        Ok(key)
    }

    /// Wraps existing key bytes. The caller should wipe its own copy if it keeps one.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies a key out of a slice, which must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != Self::LEN {
            return Err(CryptoError::InvalidLength {
                what: "key",
                expected: Self::LEN,
                got: bytes.len(),
            });
        }
        let mut key = Self(Zeroizing::new([0u8; 32]));
        key.0.copy_from_slice(bytes);
        Ok(key)
    }

    /// The raw key bytes. The name is a reminder to keep them out of logs and long-lived copies.
    pub fn dangerously_leak_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Clone for Key32 {
    fn clone(&self) -> Self {
        let mut copy = Self(Zeroizing::new([0u8; 32]));
        copy.0.copy_from_slice(self.0.as_slice());
        copy
    }
}

impl std::fmt::Debug for Key32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key32(<redacted>)")
    }
}

/// `N` bytes from the system random number generator (salts, nonces, tokens).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

/// `len` bytes from the system random number generator.
pub fn random_vec(len: usize) -> Result<Vec<u8>, CryptoError> {
    let mut out = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_gives_distinct_keys() -> Result<(), CryptoError> {
        let a = Key32::generate()?;
        let b = Key32::generate()?;
        assert_ne!(a.dangerously_leak_secret(), b.dangerously_leak_secret());
        assert_ne!(a.dangerously_leak_secret(), &[0u8; 32]);
        Ok(())
    }

    #[test]
    fn from_slice_checks_length() {
        assert!(Key32::from_slice(&[7u8; 32]).is_ok());
        assert_eq!(
            Key32::from_slice(&[7u8; 31]).err(),
            Some(CryptoError::InvalidLength {
                what: "key",
                expected: 32,
                got: 31
            })
        );
        assert!(Key32::from_slice(&[7u8; 33]).is_err());
        assert!(Key32::from_slice(&[]).is_err());
    }

    #[test]
    fn clone_copies_and_debug_is_redacted() {
        let k = Key32::from_bytes([0xab; 32]);
        let c = k.clone();
        assert_eq!(c.dangerously_leak_secret(), &[0xab; 32]);
        let shown = format!("{k:?}");
        assert_eq!(shown, "Key32(<redacted>)");
        assert!(!shown.to_lowercase().contains("ab"));
    }

    #[test]
    fn random_helpers_fill() -> Result<(), CryptoError> {
        let a: [u8; 16] = random_bytes()?;
        let b: [u8; 16] = random_bytes()?;
        assert_ne!(a, b);
        let v = random_vec(40)?;
        assert_eq!(v.len(), 40);
        assert!(random_vec(0)?.is_empty());
        Ok(())
    }
}
