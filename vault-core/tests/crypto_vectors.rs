//! Golden vectors for `vault_core::crypto`, one test per file in `tests/vectors/`. The
//! expected values were computed independently (Python `cryptography`, `hmac`, `base64`), so
//! a change to any byte format or derivation fails here, naming the vector file and case.

use vault_core::crypto::kdf::{self, KdfParams, LABEL_AUTH, LABEL_KEK, PasswordKeys};
use vault_core::crypto::rsa::{self, UserKeyPair};
use vault_core::crypto::seal::{self, ad};
use vault_core::crypto::{CryptoError, RecoveryKey};

mod case;

use case::cases;

fn hexs(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[test]
fn seal_v1() -> Result<(), CryptoError> {
    for c in cases("seal_v1.txt", include_str!("vectors/seal_v1.txt")) {
        let key = c.key("key");
        let nonce: [u8; 12] = c.hex("nonce").try_into().expect("nonce is 12 bytes");
        let (ad, pt, sealed) = (c.hex("ad"), c.hex("plaintext"), c.hex("sealed"));
        assert_eq!(
            hexs(&seal::seal_with_nonce(&key, nonce, &ad, &pt)?),
            hexs(&sealed),
            "{}: seal",
            c.at()
        );
        assert_eq!(
            hexs(&seal::open(&key, &ad, &sealed)?),
            hexs(&pt),
            "{}: open",
            c.at()
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            seal::open(&key, &ad, &tampered).err(),
            Some(CryptoError::Decrypt),
            "{}",
            c.at()
        );
    }
    Ok(())
}

#[test]
fn ad_v1() {
    for c in cases("ad_v1.txt", include_str!("vectors/ad_v1.txt")) {
        let user = c.text("username");
        let want = |f: &str| c.text(f).as_bytes().to_vec();
        assert_eq!(
            ad::account_key_by_kek(user),
            want("account_key_by_kek"),
            "{}",
            c.at()
        );
        assert_eq!(
            ad::account_key_by_recovery(user),
            want("account_key_by_recovery"),
            "{}",
            c.at()
        );
        assert_eq!(ad::private_key(user), want("private_key"), "{}", c.at());
    }
}

#[test]
fn password_keys_v1() -> Result<(), CryptoError> {
    for c in cases(
        "password_keys_v1.txt",
        include_str!("vectors/password_keys_v1.txt"),
    ) {
        let params = KdfParams {
            memory_kib: c.num("memory_kib"),
            iterations: c.num("iterations"),
            parallelism: c.num("parallelism"),
        };
        let (password, salt) = (c.hex("password"), c.hex("salt"));
        let mk = kdf::derive_master_key(&password, &salt, &params)?;
        assert_eq!(
            hexs(mk.dangerously_leak_secret()),
            c.text("master_key"),
            "{}: master key",
            c.at()
        );
        let keys = PasswordKeys::derive(&password, &salt, &params)?;
        assert_eq!(
            hexs(keys.auth_key.dangerously_leak_secret()),
            c.text("auth_key"),
            "{}: auth_key",
            c.at()
        );
        assert_eq!(
            hexs(keys.kek.dangerously_leak_secret()),
            c.text("kek"),
            "{}: kek",
            c.at()
        );
        let sub = kdf::derive_subkey(&mk, LABEL_AUTH)?;
        assert_eq!(
            sub.dangerously_leak_secret(),
            keys.auth_key.dangerously_leak_secret(),
            "{}",
            c.at()
        );
        let sub = kdf::derive_subkey(&mk, LABEL_KEK)?;
        assert_eq!(
            sub.dangerously_leak_secret(),
            keys.kek.dangerously_leak_secret(),
            "{}",
            c.at()
        );
    }
    Ok(())
}

#[test]
fn hkdf_v1() -> Result<(), CryptoError> {
    for c in cases("hkdf_v1.txt", include_str!("vectors/hkdf_v1.txt")) {
        let mut okm = vec![0u8; c.num::<usize>("length")];
        kdf::hkdf_sha256(&c.hex("ikm"), c.text("info"), &mut okm)?;
        assert_eq!(hexs(&okm), c.text("okm"), "{}", c.at());
        if okm.len() == 32 {
            let sub = kdf::derive_subkey(&c.key("ikm"), c.text("info"))?;
            assert_eq!(
                hexs(sub.dangerously_leak_secret()),
                c.text("okm"),
                "{}: derive_subkey",
                c.at()
            );
        }
    }
    Ok(())
}

#[test]
fn recovery_key_v1() -> Result<(), CryptoError> {
    for c in cases(
        "recovery_key_v1.txt",
        include_str!("vectors/recovery_key_v1.txt"),
    ) {
        let rk = RecoveryKey::from_key(c.key("key"));
        assert_eq!(
            rk.to_display().as_str(),
            c.text("display"),
            "{}: display",
            c.at()
        );
        let mut inputs = vec![c.text("display")];
        if c.get("typed").is_some() {
            inputs.push(c.text("typed"));
        }
        for input in inputs {
            let back = RecoveryKey::parse(input)?;
            assert_eq!(
                hexs(back.key().dangerously_leak_secret()),
                c.text("key"),
                "{}: parse {input:?}",
                c.at()
            );
        }
    }
    Ok(())
}

#[test]
fn rsa_v1() -> Result<(), CryptoError> {
    for c in cases("rsa_v1.txt", include_str!("vectors/rsa_v1.txt")) {
        let pair = UserKeyPair::from_pkcs8(&c.hex("pkcs8"))?;
        let spki = c.hex("spki");
        assert_eq!(
            hexs(&pair.public_key_der()?),
            hexs(&spki),
            "{}: public key",
            c.at()
        );
        assert_eq!(
            rsa::public_key_fingerprint(&spki),
            c.text("fingerprint"),
            "{}: fingerprint",
            c.at()
        );
        // Python encrypted, we decrypt.
        let pt = pair.decrypt_oaep(&c.hex("oaep_ciphertext"), b"")?;
        assert_eq!(hexs(&pt), c.text("oaep_plaintext"), "{}: OAEP", c.at());
        // Python signed, we verify; our own signature verifies too.
        let (msg, sig) = (c.hex("pss_message"), c.hex("pss_signature"));
        rsa::verify_pss(&spki, &msg, &sig)?;
        rsa::verify_pss(&spki, &msg, &pair.sign_pss(&msg)?)?;
        assert!(
            rsa::verify_pss(&spki, b"other message", &sig).is_err(),
            "{}",
            c.at()
        );
    }
    Ok(())
}
