//! Authenticated encryption of small blobs (keys, metadata) with AES-256-GCM.
//!
//! A sealed blob is laid out as
//!
//! ```text
//! version (1 byte, 0x01) ‖ nonce (12 bytes, random) ‖ ciphertext (len(plaintext)) ‖ tag (16 bytes)
//! ```
//!
//! so it is always [`SEAL_OVERHEAD`] = 29 bytes longer than its plaintext. The associated
//! data is not stored: the opener must rebuild it, which is how a blob is bound to its
//! place (see [`ad`]). The version byte is not covered by the tag, but only 0x01 is
//! accepted, so changing it fails anyway.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use super::error::CryptoError;
use super::secret::{Key32, random_bytes};

/// The format version byte that starts every sealed blob.
pub const SEAL_VERSION: u8 = 0x01;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed blob adds to its plaintext: version, nonce and tag.
pub const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

fn aead_key(key: &Key32) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, key.dangerously_leak_secret())
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::Encrypt)
}

/// Seals `plaintext` under `key` with a fresh random nonce, binding it to `ad`.
pub fn seal(key: &Key32, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    seal_with_nonce(key, random_bytes::<NONCE_LEN>()?, ad, plaintext)
}

/// [`seal`] with a caller-chosen nonce. Only for golden test vectors: reusing a nonce under
/// the same key destroys AES-GCM's security.
#[doc(hidden)]
pub fn seal_with_nonce(
    key: &Key32,
    nonce: [u8; NONCE_LEN],
    ad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let aead = aead_key(key)?;
    // Exact capacity, so the plaintext is never left behind in a reallocated buffer; if
    // sealing fails the buffer (still holding plaintext) is wiped.
    let mut out = Zeroizing::new(Vec::with_capacity(SEAL_OVERHEAD + plaintext.len()));
    out.push(SEAL_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = aead
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(ad),
            &mut out[1 + NONCE_LEN..],
        )
        .map_err(|_| CryptoError::Encrypt)?;
    out.extend_from_slice(tag.as_ref());
    Ok(std::mem::take(&mut *out))
}

/// Opens a blob made by [`seal`] with the same `key` and `ad`. Any failure (short input,
/// unknown version, wrong key or AD, altered bytes) is [`CryptoError::Decrypt`].
pub fn open(key: &Key32, ad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    Opener::new(key)?.open(ad, sealed)
}

/// A key made ready to open many blobs: the AES key schedule and the GHASH table are
/// computed once instead of once per blob (a listing opens a wrapped file key per entry
/// under one wrapping key). aws-lc wipes them when it is dropped.
pub struct Opener(LessSafeKey);

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opener(<redacted>)")
    }
}

impl Opener {
    pub fn new(key: &Key32) -> Result<Self, CryptoError> {
        aead_key(key).map(Opener).map_err(|_| CryptoError::Decrypt)
    }

    /// [`open`] under this key.
    pub fn open(&self, ad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < SEAL_OVERHEAD || sealed[0] != SEAL_VERSION {
            return Err(CryptoError::Decrypt);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1..1 + NONCE_LEN]);
        let mut buf = Zeroizing::new(sealed[1 + NONCE_LEN..].to_vec());
        let plain_len = self
            .0
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(ad),
                buf.as_mut_slice(),
            )
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

/// Associated-data builders. Every sealed key names what it seals and for whom, so a blob
/// copied into another slot (another user, the other wrapping) fails to open.
///
/// Formats (`<username>` is inserted verbatim; usernames are validated by `proto`):
///
/// ```text
/// vault/v1/ad/account-key;user=<username>;by=kek
/// vault/v1/ad/account-key;user=<username>;by=recovery
/// vault/v1/ad/private-key;user=<username>
/// ```
pub mod ad {
    /// AD for the account key sealed by the password-derived `kek`.
    pub fn account_key_by_kek(username: &str) -> Vec<u8> {
        format!("vault/v1/ad/account-key;user={username};by=kek").into_bytes()
    }

    /// AD for the account key sealed by the recovery key.
    pub fn account_key_by_recovery(username: &str) -> Vec<u8> {
        format!("vault/v1/ad/account-key;user={username};by=recovery").into_bytes()
    }

    /// AD for the user's RSA private key (PKCS#8 DER) sealed by the account key.
    pub fn private_key(username: &str) -> Vec<u8> {
        format!("vault/v1/ad/private-key;user={username}").into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key32 {
        Key32::from_bytes([b; 32])
    }

    #[test]
    fn round_trip() -> Result<(), CryptoError> {
        let k = key(1);
        let sealed = seal(&k, b"ad", b"hello world")?;
        assert_eq!(sealed.len(), SEAL_OVERHEAD + 11);
        assert_eq!(sealed[0], SEAL_VERSION);
        assert_eq!(open(&k, b"ad", &sealed)?.as_slice(), b"hello world");
        Ok(())
    }

    #[test]
    fn empty_plaintext_and_empty_ad() -> Result<(), CryptoError> {
        let k = key(2);
        let sealed = seal(&k, b"", b"")?;
        assert_eq!(sealed.len(), SEAL_OVERHEAD);
        assert!(open(&k, b"", &sealed)?.is_empty());
        Ok(())
    }

    #[test]
    fn nonces_are_fresh() -> Result<(), CryptoError> {
        let k = key(3);
        let a = seal(&k, b"", b"same")?;
        let b = seal(&k, b"", b"same")?;
        assert_ne!(a[1..1 + NONCE_LEN], b[1..1 + NONCE_LEN]);
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn wrong_key_or_ad_fails() -> Result<(), CryptoError> {
        let sealed = seal(&key(4), b"ad", b"secret")?;
        assert_eq!(
            open(&key(5), b"ad", &sealed).err(),
            Some(CryptoError::Decrypt)
        );
        assert_eq!(
            open(&key(4), b"ae", &sealed).err(),
            Some(CryptoError::Decrypt)
        );
        assert_eq!(
            open(&key(4), b"", &sealed).err(),
            Some(CryptoError::Decrypt)
        );
        Ok(())
    }

    #[test]
    fn one_opener_opens_many_blobs_and_checks_each() -> Result<(), CryptoError> {
        let k = key(5);
        let opener = Opener::new(&k)?;
        for i in 0..3u8 {
            let sealed = seal(&k, &[i], &[i; 40])?;
            assert_eq!(opener.open(&[i], &sealed)?.as_slice(), &[i; 40]);
            assert_eq!(opener.open(b"other", &sealed), Err(CryptoError::Decrypt));
        }
        let foreign = seal(&key(9), b"", b"x")?;
        assert_eq!(opener.open(b"", &foreign), Err(CryptoError::Decrypt));
        Ok(())
    }

    #[test]
    fn every_tampered_byte_fails() -> Result<(), CryptoError> {
        let k = key(6);
        let sealed = seal(&k, b"ad", b"some plaintext")?;
        // Covers the version byte, every nonce byte, every ciphertext byte and every tag byte.
        for i in 0..sealed.len() {
            for flip in [0x01u8, 0x80] {
                let mut bad = sealed.clone();
                bad[i] ^= flip;
                assert_eq!(
                    open(&k, b"ad", &bad).err(),
                    Some(CryptoError::Decrypt),
                    "byte {i}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn unknown_version_fails() -> Result<(), CryptoError> {
        let k = key(7);
        let mut sealed = seal(&k, b"", b"x")?;
        for v in [0x00u8, 0x02, 0xff] {
            sealed[0] = v;
            assert_eq!(open(&k, b"", &sealed).err(), Some(CryptoError::Decrypt));
        }
        Ok(())
    }

    #[test]
    fn truncated_or_extended_input_fails() -> Result<(), CryptoError> {
        let k = key(8);
        let sealed = seal(&k, b"", b"abc")?;
        for len in 0..sealed.len() {
            assert_eq!(
                open(&k, b"", &sealed[..len]).err(),
                Some(CryptoError::Decrypt),
                "len {len}"
            );
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(open(&k, b"", &longer).err(), Some(CryptoError::Decrypt));
        Ok(())
    }

    #[test]
    fn seal_with_nonce_is_deterministic() -> Result<(), CryptoError> {
        let k = key(9);
        let a = seal_with_nonce(&k, [7; NONCE_LEN], b"ad", b"pt")?;
        let b = seal_with_nonce(&k, [7; NONCE_LEN], b"ad", b"pt")?;
        assert_eq!(a, b);
        assert_eq!(a[1..1 + NONCE_LEN], [7; NONCE_LEN]);
        assert_eq!(open(&k, b"ad", &a)?.as_slice(), b"pt");
        Ok(())
    }

    #[test]
    fn ad_builders_name_their_target() {
        assert_eq!(
            ad::account_key_by_kek("alice"),
            b"vault/v1/ad/account-key;user=alice;by=kek"
        );
        assert_eq!(
            ad::account_key_by_recovery("alice"),
            b"vault/v1/ad/account-key;user=alice;by=recovery"
        );
        assert_eq!(
            ad::private_key("alice"),
            b"vault/v1/ad/private-key;user=alice"
        );
        assert_ne!(
            ad::account_key_by_kek("alice"),
            ad::account_key_by_kek("bob")
        );
    }

    #[test]
    fn blob_moved_between_slots_fails() -> Result<(), CryptoError> {
        let k = key(10);
        let ak = [0x42u8; 32];
        let sealed = seal(&k, &ad::account_key_by_kek("alice"), &ak)?;
        assert!(open(&k, &ad::account_key_by_kek("bob"), &sealed).is_err());
        assert!(open(&k, &ad::account_key_by_recovery("alice"), &sealed).is_err());
        assert_eq!(
            open(&k, &ad::account_key_by_kek("alice"), &sealed)?.as_slice(),
            &ak
        );
        Ok(())
    }
}
