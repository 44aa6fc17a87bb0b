//! The user's RSA-3072 key pair: RSA-OAEP (SHA-256, MGF1-SHA-256) to wrap group and message
//! keys, RSA-PSS-SHA-256 to sign chat messages (docs/FORMAT.md §8.2, §9.1).
//!
//! Public keys travel as X.509 `SubjectPublicKeyInfo` DER, private keys as PKCS#8 v1 DER
//! (sealed under the account key before they leave the client).

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeyPair, KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{self, RSA_PSS_2048_8192_SHA256, RSA_PSS_SHA256};
use zeroize::Zeroizing;

use super::error::CryptoError;
use super::fingerprint::sha256_fingerprint;

/// Size of user keys, in bits. Keys of another size are refused everywhere.
pub const RSA_BITS: usize = 3072;

fn rsa_err(what: &str) -> CryptoError {
    CryptoError::Rsa(what.to_string())
}

fn check_bits(bits: usize) -> Result<(), CryptoError> {
    if bits == RSA_BITS {
        Ok(())
    } else {
        Err(CryptoError::Rsa(format!(
            "key is {bits} bits, expected {RSA_BITS}"
        )))
    }
}

/// Parses and size-checks an SPKI DER public key.
fn parse_public(spki_der: &[u8]) -> Result<PublicEncryptingKey, CryptoError> {
    let key = PublicEncryptingKey::from_der(spki_der)
        .map_err(|_| rsa_err("not an RSA public key (SubjectPublicKeyInfo DER)"))?;
    check_bits(key.key_size_bits())?;
    Ok(key)
}

/// A user's RSA-3072 private key (with its public half). `Debug` shows only the fingerprint.
pub struct UserKeyPair {
    signing: KeyPair,
    decrypting: OaepPrivateDecryptingKey,
    public_spki: Vec<u8>,
}

impl UserKeyPair {
    /// Generates a fresh RSA-3072 key pair (about a second in debug builds).
    pub fn generate() -> Result<Self, CryptoError> {
        let pair =
            KeyPair::generate(KeySize::Rsa3072).map_err(|_| rsa_err("key generation failed"))?;
        let der: Pkcs8V1Der<'static> = pair
            .as_der()
            .map_err(|_| rsa_err("could not encode the private key"))?;
        let der = Zeroizing::new(der.as_ref().to_vec());
        Self::from_pkcs8(&der)
    }

    /// Loads a private key from PKCS#8 v1 DER, as made by [`UserKeyPair::pkcs8_der`].
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, CryptoError> {
        let signing =
            KeyPair::from_pkcs8(der).map_err(|_| rsa_err("not an RSA private key (PKCS#8 DER)"))?;
        check_bits(signing.public_modulus_len() * 8)?;
        let private = PrivateDecryptingKey::from_pkcs8(der)
            .map_err(|_| rsa_err("not an RSA private key (PKCS#8 DER)"))?;
        let public: PublicKeyX509Der<'static> = private
            .public_key()
            .as_der()
            .map_err(|_| rsa_err("could not encode the public key"))?;
        let public_spki = public.as_ref().to_vec();
        let decrypting =
            OaepPrivateDecryptingKey::new(private).map_err(|_| rsa_err("unusable private key"))?;
        Ok(Self {
            signing,
            decrypting,
            public_spki,
        })
    }

    /// The private key as PKCS#8 v1 DER. Seal it before it goes anywhere.
    pub fn pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let der: Pkcs8V1Der<'static> = self
            .signing
            .as_der()
            .map_err(|_| rsa_err("could not encode the private key"))?;
        Ok(Zeroizing::new(der.as_ref().to_vec()))
    }

    /// The public key as X.509 `SubjectPublicKeyInfo` DER.
    pub fn public_key_der(&self) -> Result<Vec<u8>, CryptoError> {
        Ok(self.public_spki.clone())
    }

    /// `SHA256:<hex>` of the public key, see [`public_key_fingerprint`].
    pub fn fingerprint(&self) -> String {
        public_key_fingerprint(&self.public_spki)
    }

    /// Decrypts an RSA-OAEP (SHA-256, MGF1-SHA-256) ciphertext made with `label` (the
    /// associated data that names what is wrapped; empty for none). A ciphertext made with
    /// another label fails like any other bad ciphertext.
    pub fn decrypt_oaep(
        &self,
        ciphertext: &[u8],
        label: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut out = Zeroizing::new(vec![0u8; self.decrypting.min_output_size()]);
        let len = self
            .decrypting
            .decrypt(
                &OAEP_SHA256_MGF1SHA256,
                ciphertext,
                out.as_mut_slice(),
                Some(label),
            )
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// Signs `msg` with RSA-PSS-SHA-256 (salt length = 32). The signature is 384 bytes.
    pub fn sign_pss(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut sig = vec![0u8; self.signing.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.signing
            .sign(&RSA_PSS_SHA256, &rng, msg, &mut sig)
            .map_err(|_| rsa_err("signing failed"))?;
        Ok(sig)
    }
}

impl std::fmt::Debug for UserKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "UserKeyPair(<private key redacted>, public {})",
            self.fingerprint()
        )
    }
}

/// Encrypts `plaintext` (at most 318 bytes) to an RSA-3072 public key given as SPKI DER,
/// with RSA-OAEP, SHA-256, MGF1-SHA-256 and `label` (empty for none; the group-key
/// envelopes of docs/FORMAT.md §8.2 put their associated data here).
pub fn encrypt_oaep(
    public_spki_der: &[u8],
    plaintext: &[u8],
    label: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key = OaepPublicEncryptingKey::new(parse_public(public_spki_der)?)
        .map_err(|_| rsa_err("unusable public key"))?;
    let max = key.max_plaintext_size(&OAEP_SHA256_MGF1SHA256);
    if plaintext.len() > max {
        return Err(CryptoError::Rsa(format!(
            "plaintext of {} bytes is too long for RSA-OAEP (at most {max})",
            plaintext.len()
        )));
    }
    let mut out = vec![0u8; key.ciphertext_size()];
    let len = key
        .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, Some(label))
        .map_err(|_| rsa_err("encryption failed"))?
        .len();
    out.truncate(len);
    Ok(out)
}

/// Checks an RSA-PSS-SHA-256 signature over `msg` by the RSA-3072 key `public_spki_der`.
pub fn verify_pss(public_spki_der: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    parse_public(public_spki_der)?;
    signature::UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, public_spki_der)
        .verify(msg, sig)
        .map_err(|_| rsa_err("signature does not verify"))
}

/// `SHA256:` + lowercase hex of SHA-256 over the SPKI DER, as shown to users for pinning.
pub fn public_key_fingerprint(spki_der: &[u8]) -> String {
    sha256_fingerprint(spki_der)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use aws_lc_rs::signature::KeyPair as _;

    use super::*;

    /// One generated key shared by the tests (key generation is the slow part).
    fn pair() -> &'static UserKeyPair {
        static PAIR: OnceLock<UserKeyPair> = OnceLock::new();
        PAIR.get_or_init(|| UserKeyPair::generate().expect("RSA key generation"))
    }

    #[test]
    fn pkcs8_round_trip_keeps_the_key() -> Result<(), CryptoError> {
        let p = pair();
        let der = p.pkcs8_der()?;
        let back = UserKeyPair::from_pkcs8(&der)?;
        assert_eq!(back.public_key_der()?, p.public_key_der()?);
        assert_eq!(back.pkcs8_der()?.as_slice(), der.as_slice());
        Ok(())
    }

    #[test]
    fn public_key_is_spki_3072() -> Result<(), CryptoError> {
        let spki = pair().public_key_der()?;
        let parsed = PublicEncryptingKey::from_der(&spki).map_err(|_| rsa_err("parse"))?;
        assert_eq!(parsed.key_size_bits(), 3072);
        // An SPKI for RSA-3072 is ~422 bytes; a private key would be far larger.
        assert!(spki.len() < 500, "{}", spki.len());
        assert_eq!(spki[0], 0x30);
        Ok(())
    }

    #[test]
    fn oaep_round_trip() -> Result<(), CryptoError> {
        let p = pair();
        let spki = p.public_key_der()?;
        let secret = [0x5au8; 32];
        let ct = encrypt_oaep(&spki, &secret, b"")?;
        assert_eq!(ct.len(), 384);
        assert_eq!(p.decrypt_oaep(&ct, b"")?.as_slice(), &secret);
        // Randomised padding: the same plaintext encrypts differently.
        assert_ne!(encrypt_oaep(&spki, &secret, b"")?, ct);
        assert!(
            p.decrypt_oaep(&encrypt_oaep(&spki, b"", b"")?, b"")?
                .is_empty()
        );
        Ok(())
    }

    #[test]
    fn oaep_rejects_tampering_and_oversize() -> Result<(), CryptoError> {
        let p = pair();
        let spki = p.public_key_der()?;
        let mut ct = encrypt_oaep(&spki, b"key", b"")?;
        ct[100] ^= 1;
        assert_eq!(p.decrypt_oaep(&ct, b"").err(), Some(CryptoError::Decrypt));
        assert_eq!(
            p.decrypt_oaep(&ct[..383], b"").err(),
            Some(CryptoError::Decrypt)
        );
        assert!(encrypt_oaep(&spki, &[0u8; 318], b"").is_ok());
        assert!(matches!(
            encrypt_oaep(&spki, &[0u8; 319], b""),
            Err(CryptoError::Rsa(_))
        ));
        Ok(())
    }

    #[test]
    fn pss_sign_verify() -> Result<(), CryptoError> {
        let p = pair();
        let spki = p.public_key_der()?;
        let sig = p.sign_pss(b"message")?;
        assert_eq!(sig.len(), 384);
        verify_pss(&spki, b"message", &sig)?;
        assert!(verify_pss(&spki, b"messagf", &sig).is_err());
        let mut bad = sig.clone();
        bad[0] ^= 0x80;
        assert!(verify_pss(&spki, b"message", &bad).is_err());
        assert!(verify_pss(&spki, b"message", &sig[..383]).is_err());
        Ok(())
    }

    #[test]
    fn garbage_keys_are_refused() {
        assert!(matches!(
            UserKeyPair::from_pkcs8(b"not a key"),
            Err(CryptoError::Rsa(_))
        ));
        assert!(matches!(
            encrypt_oaep(b"not a key", b"x", b""),
            Err(CryptoError::Rsa(_))
        ));
        assert!(matches!(
            verify_pss(b"not a key", b"x", &[0u8; 384]),
            Err(CryptoError::Rsa(_))
        ));
    }

    #[test]
    fn other_key_sizes_are_refused() -> Result<(), CryptoError> {
        let small = KeyPair::generate(KeySize::Rsa2048).map_err(|_| rsa_err("keygen"))?;
        let der: Pkcs8V1Der<'static> = small.as_der().map_err(|_| rsa_err("der"))?;
        assert!(
            matches!(UserKeyPair::from_pkcs8(der.as_ref()), Err(CryptoError::Rsa(m)) if m.contains("2048"))
        );
        let spki: PublicKeyX509Der<'static> =
            small.public_key().as_der().map_err(|_| rsa_err("der"))?;
        assert!(encrypt_oaep(spki.as_ref(), b"x", b"").is_err());
        Ok(())
    }

    #[test]
    fn fingerprint_format_and_debug() -> Result<(), CryptoError> {
        let p = pair();
        let fp = public_key_fingerprint(&p.public_key_der()?);
        assert!(fp.starts_with("SHA256:"));
        assert_eq!(fp.len(), 7 + 64);
        assert!(fp[7..].chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_eq!(fp, p.fingerprint());
        let shown = format!("{p:?}");
        assert!(shown.contains("redacted") && shown.contains(&fp));
        Ok(())
    }
}
