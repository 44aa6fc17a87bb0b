//! Account key material, composed from `vault_core::crypto` (docs/FORMAT.md §1): everything a
//! new account sends, the password material for `passwd` and reset, and unlocking the
//! account key after login.

use vault_core::crypto::seal::ad;
use vault_core::crypto::{
    KdfParams, Key32, PasswordKeys, RecoveryKey, SALT_LEN, UserKeyPair, open, random_bytes, seal,
};
use vault_core::proto::{AccountKeys, ByteBuf, NewAccount, PasswordMaterial, SecretBytes};

use crate::ClientError;

/// A freshly made account: what goes to the server, and the two secrets the user keeps.
#[derive(Debug)]
pub struct CreatedAccount {
    pub account: NewAccount,
    pub account_key: Key32,
    pub recovery_key: RecoveryKey,
}

/// Password material that protects `account_key` under `password`, with a fresh salt.
pub fn password_material(
    username: &str,
    password: &[u8],
    kdf: &KdfParams,
    account_key: &Key32,
) -> Result<PasswordMaterial, ClientError> {
    let salt: [u8; SALT_LEN] = random_bytes()?;
    let keys = PasswordKeys::derive(password, &salt, kdf)?;
    let sealed = seal(
        &keys.kek,
        &ad::account_key_by_kek(username),
        account_key.dangerously_leak_secret(),
    )?;
    Ok(PasswordMaterial {
        salt: ByteBuf::from(salt.to_vec()),
        kdf: *kdf,
        auth_key: SecretBytes::new(keys.auth_key.dangerously_leak_secret().to_vec()),
        account_key_by_kek: ByteBuf::from(sealed),
    })
}

/// Makes all key material of a new account on the client.
pub fn create_account(
    username: &str,
    password: &[u8],
    kdf: &KdfParams,
) -> Result<CreatedAccount, ClientError> {
    let account_key = Key32::generate()?;
    let recovery_key = RecoveryKey::generate()?;
    let password = password_material(username, password, kdf, &account_key)?;
    let by_recovery = seal(
        recovery_key.key(),
        &ad::account_key_by_recovery(username),
        account_key.dangerously_leak_secret(),
    )?;
    let pair = UserKeyPair::generate()?;
    let private_key_sealed = seal(&account_key, &ad::private_key(username), &pair.pkcs8_der()?)?;
    Ok(CreatedAccount {
        account: NewAccount {
            password,
            account_key_by_recovery: ByteBuf::from(by_recovery),
            public_key: ByteBuf::from(pair.public_key_der()?),
            private_key_sealed: ByteBuf::from(private_key_sealed),
        },
        account_key,
        recovery_key,
    })
}

/// The auth key for a login, derived from the password and the prelogin salt.
pub fn derive(password: &[u8], salt: &[u8], kdf: &KdfParams) -> Result<PasswordKeys, ClientError> {
    kdf.validate()
        .map_err(vault_core::crypto::CryptoError::from)?;
    Ok(PasswordKeys::derive(password, salt, kdf)?)
}

/// Opens the account key with the KEK and checks that it opens the private key too, so a
/// server that swapped either blob is caught at login.
pub fn unlock(keys: &AccountKeys, kek: &Key32) -> Result<Key32, ClientError> {
    let ak = open_account_key(keys, kek)?;
    check_private_key(keys, &ak)?;
    Ok(ak)
}

/// Opens the account key with the KEK alone: it fails for a KEK of another password.
pub fn open_account_key(keys: &AccountKeys, kek: &Key32) -> Result<Key32, ClientError> {
    let ak = open(
        kek,
        &ad::account_key_by_kek(&keys.username),
        &keys.account_key_by_kek,
    )?;
    Ok(Key32::from_slice(&ak)?)
}

/// Opens the account key with the recovery key.
pub fn unlock_with_recovery(
    username: &str,
    sealed: &[u8],
    recovery: &RecoveryKey,
) -> Result<Key32, ClientError> {
    let ak = open(
        recovery.key(),
        &ad::account_key_by_recovery(username),
        sealed,
    )
    .map_err(|_| {
        ClientError::Usage(
            "that recovery key does not open this account's key; check it for typos".into(),
        )
    })?;
    Ok(Key32::from_slice(&ak)?)
}

/// Opens the sealed private key and checks it matches the public key.
pub fn check_private_key(
    keys: &AccountKeys,
    account_key: &Key32,
) -> Result<UserKeyPair, ClientError> {
    let der = open(
        account_key,
        &ad::private_key(&keys.username),
        &keys.private_key_sealed,
    )?;
    let pair = UserKeyPair::from_pkcs8(&der)?;
    if pair.public_key_der()? != keys.public_key.as_slice() {
        return Err(ClientError::Protocol(
            "the server's copy of your public key does not match your private key".into(),
        ));
    }
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn account_keys(username: &str, created: &CreatedAccount) -> AccountKeys {
        AccountKeys {
            username: username.into(),
            account_key_by_kek: created.account.password.account_key_by_kek.clone(),
            public_key: created.account.public_key.clone(),
            private_key_sealed: created.account.private_key_sealed.clone(),
        }
    }

    #[test]
    fn a_new_account_unlocks_with_its_password_and_its_recovery_key() {
        let created = create_account("alice", b"correct horse", &CHEAP).expect("create");
        let keys =
            derive(b"correct horse", &created.account.password.salt, &CHEAP).expect("derive");
        let ak = unlock(&account_keys("alice", &created), &keys.kek).expect("unlock");
        assert_eq!(
            ak.dangerously_leak_secret(),
            created.account_key.dangerously_leak_secret()
        );
        let by_rk = unlock_with_recovery(
            "alice",
            &created.account.account_key_by_recovery,
            &created.recovery_key,
        )
        .expect("rk");
        assert_eq!(
            by_rk.dangerously_leak_secret(),
            created.account_key.dangerously_leak_secret()
        );
    }

    #[test]
    fn wrong_password_and_moved_blobs_are_refused() {
        let created = create_account("alice", b"correct horse", &CHEAP).expect("create");
        let wrong = derive(b"wrong horse", &created.account.password.salt, &CHEAP).expect("derive");
        assert!(unlock(&account_keys("alice", &created), &wrong.kek).is_err());
        let right =
            derive(b"correct horse", &created.account.password.salt, &CHEAP).expect("derive");
        // The same blobs presented as another user's fail: the associated data names the user.
        assert!(unlock(&account_keys("mallory", &created), &right.kek).is_err());
        // A sealed account key swapped into the recovery slot does not open.
        assert!(
            unlock_with_recovery(
                "alice",
                &created.account.password.account_key_by_kek,
                &created.recovery_key
            )
            .is_err()
        );
    }
}
