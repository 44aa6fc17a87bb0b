//! Group keys (docs/FORMAT.md §8): the envelopes that carry each generation `GK_g` to each member,
//! the signatures that say which member wrapped them, and the keys a join code carries.
//!
//! An envelope is `RSA-OAEP-SHA256(member public key, GK_g)` with the OAEP label
//!
//! ```text
//! vault/v1/ad/group-key;group=<group_id>;gen=<g>;member=<username>
//! ```
//!
//! so an envelope moved to another group, generation or member does not open. The member
//! who wrapped it signs (RSA-PSS-SHA256) the bytes
//!
//! ```text
//! vault/v1/sig/group-key;group=<group_id>;gen=<g>;member=<username>;signer=<username> 0x00 envelope
//! ```
//!
//! so a server, which can encrypt to anyone's public key, cannot hand a member a group key
//! of its own choosing without also holding a member's private key.
//!
//! A join code is `<invite_id>.<secret>`, the secret 32 random bytes in lowercase unpadded
//! base32. The server keeps only a hash of `HKDF(secret, "vault/v1/invite-auth")`; the
//! group keys travel sealed under `HKDF(secret, "vault/v1/invite-key")` with associated data
//! `vault/v1/ad/invite-keys;group=<group_id>`, as a sequence of `gen (u32 BE) ‖ GK_gen`.

use data_encoding::BASE32_NOPAD;
use zeroize::Zeroizing;

use super::error::{FormatError, Result};
use crate::crypto::kdf::{LABEL_INVITE_AUTH, LABEL_INVITE_KEY};
use crate::crypto::rsa::{UserKeyPair, encrypt_oaep, verify_pss};
use crate::crypto::{Key32, derive_subkey, random_bytes, seal};

/// Refuses a username that could make two slots share associated data.
fn check_user(user: &str) -> Result<()> {
    if user.is_empty() || user.chars().any(|c| c == ';' || c == '=' || c.is_control()) {
        return Err(FormatError::InvalidNamespace(user.to_owned()));
    }
    Ok(())
}

/// Which envelope: the group, the generation of its key and the member it is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EnvelopeSlot {
    /// The server-assigned group id (stable across renames).
    pub group_id: i64,
    /// The key generation `g`.
    pub generation: u32,
    /// The case-folded username of the member who can open it.
    pub member: String,
}

impl EnvelopeSlot {
    /// The OAEP label (see the module documentation).
    pub fn label(&self) -> Result<Vec<u8>> {
        check_user(&self.member)?;
        Ok(format!(
            "vault/v1/ad/group-key;group={};gen={};member={}",
            self.group_id, self.generation, self.member
        )
        .into_bytes())
    }

    /// The bytes `signer` signs for `envelope` (see the module documentation).
    pub fn signed_bytes(&self, signer: &str, envelope: &[u8]) -> Result<Vec<u8>> {
        check_user(&self.member)?;
        check_user(signer)?;
        let mut msg = format!(
            "vault/v1/sig/group-key;group={};gen={};member={};signer={signer}",
            self.group_id, self.generation, self.member
        )
        .into_bytes();
        msg.push(0);
        msg.extend_from_slice(envelope);
        Ok(msg)
    }
}

/// A sealed, signed envelope as it is stored on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEnvelope {
    /// `RSA-OAEP-SHA256(member public key, GK_g)` with the slot's label.
    pub envelope: Vec<u8>,
    /// RSA-PSS-SHA256 by the signer over [`EnvelopeSlot::signed_bytes`].
    pub signature: Vec<u8>,
}

/// Wraps `group_key` for the member of `slot` (whose public key is `member_public_key`)
/// and signs it as `signer` with `signer_keys`.
pub fn seal_envelope(
    slot: &EnvelopeSlot,
    member_public_key: &[u8],
    group_key: &Key32,
    signer: &str,
    signer_keys: &UserKeyPair,
) -> Result<SignedEnvelope> {
    let envelope = encrypt_oaep(
        member_public_key,
        group_key.dangerously_leak_secret(),
        &slot.label()?,
    )?;
    let signature = signer_keys.sign_pss(&slot.signed_bytes(signer, &envelope)?)?;
    Ok(SignedEnvelope {
        envelope,
        signature,
    })
}

/// Checks the signature of an envelope made by `signer` (public key `signer_public_key`),
/// then opens it with the member's own key pair. Either failing is
/// [`FormatError::GroupKey`] naming the slot.
pub fn open_envelope(
    slot: &EnvelopeSlot,
    sealed: &SignedEnvelope,
    signer: &str,
    signer_public_key: &[u8],
    member_keys: &UserKeyPair,
) -> Result<Key32> {
    let bad = |why: &str| FormatError::GroupKey {
        group_id: slot.group_id,
        generation: slot.generation,
        why: why.to_owned(),
    };
    verify_pss(
        signer_public_key,
        &slot.signed_bytes(signer, &sealed.envelope)?,
        &sealed.signature,
    )
    .map_err(|_| bad(&format!("its signature by {signer} does not verify")))?;
    let key = member_keys
        .decrypt_oaep(&sealed.envelope, &slot.label()?)
        .map_err(|_| {
            bad(&format!(
                "it does not open for {} (an envelope of another group, generation or member)",
                slot.member
            ))
        })?;
    Key32::from_slice(&key).map_err(|_| bad("it does not hold a 32-byte key"))
}

/// The secret half of a join code. Never sent to the server.
pub struct InviteSecret(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for InviteSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InviteSecret(<redacted>)")
    }
}

/// Length of the secret half of a join code in characters.
const SECRET_CHARS: usize = 52;

impl InviteSecret {
    /// A fresh random secret.
    pub fn generate() -> Result<Self> {
        Ok(InviteSecret(Zeroizing::new(random_bytes::<32>()?)))
    }

    /// `HKDF(secret, "vault/v1/invite-auth")`: what the server sees (and stores hashed).
    pub fn auth(&self) -> Result<Key32> {
        Ok(derive_subkey(
            &Key32::from_bytes(*self.0),
            LABEL_INVITE_AUTH,
        )?)
    }

    fn key(&self) -> Result<Key32> {
        Ok(derive_subkey(
            &Key32::from_bytes(*self.0),
            LABEL_INVITE_KEY,
        )?)
    }

    /// The join code `<invite_id>.<secret>`.
    pub fn code(&self, invite_id: i64) -> Zeroizing<String> {
        let secret = BASE32_NOPAD.encode(&self.0[..]).to_ascii_lowercase();
        Zeroizing::new(format!("{invite_id}.{secret}"))
    }

    /// Parses a join code into the invite id and the secret.
    pub fn parse_code(code: &str) -> Result<(i64, InviteSecret)> {
        let bad = || {
            FormatError::InvalidJoinCode(
                "expected ID.SECRET as `vault group invite` printed it".into(),
            )
        };
        let (id, secret) = code.trim().split_once('.').ok_or_else(bad)?;
        let id: i64 = id.parse().map_err(|_| bad())?;
        if id <= 0 || secret.len() != SECRET_CHARS {
            return Err(bad());
        }
        let bytes = Zeroizing::new(
            BASE32_NOPAD
                .decode(secret.to_ascii_uppercase().as_bytes())
                .map_err(|_| bad())?,
        );
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| bad())?;
        Ok((id, InviteSecret(Zeroizing::new(arr))))
    }

    fn ad(group_id: i64) -> Vec<u8> {
        format!("vault/v1/ad/invite-keys;group={group_id}").into_bytes()
    }

    /// Seals every generation of the group key for whoever holds this secret.
    pub fn seal_keys(&self, group_id: i64, keys: &[(u32, Key32)]) -> Result<Vec<u8>> {
        Ok(seal::seal(
            &self.key()?,
            &Self::ad(group_id),
            &encode_invite_keys(keys),
        )?)
    }

    /// [`InviteSecret::seal_keys`] with a caller-chosen nonce. Only for golden test vectors:
    /// a nonce must never repeat under one key.
    #[doc(hidden)]
    pub fn seal_keys_with_nonce(
        &self,
        nonce: [u8; seal::NONCE_LEN],
        group_id: i64,
        keys: &[(u32, Key32)],
    ) -> Result<Vec<u8>> {
        Ok(seal::seal_with_nonce(
            &self.key()?,
            nonce,
            &Self::ad(group_id),
            &encode_invite_keys(keys),
        )?)
    }

    /// Opens what [`InviteSecret::seal_keys`] made for group `group_id`.
    pub fn open_keys(&self, group_id: i64, sealed: &[u8]) -> Result<Vec<(u32, Key32)>> {
        let plain = seal::open(&self.key()?, &Self::ad(group_id), sealed).map_err(|_| {
            FormatError::InvalidJoinCode(
                "the invite's keys do not open with this code (wrong code, or altered by the \
                 server)"
                    .into(),
            )
        })?;
        decode_invite_keys(&plain)
    }
}

/// Bytes of one generation's key in the sealed keys of a join code: `gen (u32 BE) ‖ GK_gen`.
const INVITE_KEY_RECORD: usize = 4 + Key32::LEN;

/// The plaintext a join code seals: `gen (u32 BE) ‖ GK_gen` for each key, in order.
pub fn encode_invite_keys(keys: &[(u32, Key32)]) -> Zeroizing<Vec<u8>> {
    let mut plain = Zeroizing::new(Vec::with_capacity(keys.len() * INVITE_KEY_RECORD));
    for (generation, key) in keys {
        plain.extend_from_slice(&generation.to_be_bytes());
        plain.extend_from_slice(key.dangerously_leak_secret());
    }
    plain
}

/// Reads the plaintext of a join code's sealed keys ([`encode_invite_keys`]): one or more
/// whole records, anything else is refused.
pub fn decode_invite_keys(plain: &[u8]) -> Result<Vec<(u32, Key32)>> {
    if plain.is_empty() || !plain.len().is_multiple_of(INVITE_KEY_RECORD) {
        return Err(FormatError::InvalidJoinCode(
            "the invite's keys are malformed".into(),
        ));
    }
    plain
        .chunks_exact(INVITE_KEY_RECORD)
        .map(|c| {
            let generation = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            Ok((generation, Key32::from_slice(&c[4..])?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    fn pair(i: usize) -> &'static UserKeyPair {
        static PAIRS: OnceLock<Vec<UserKeyPair>> = OnceLock::new();
        &PAIRS.get_or_init(|| {
            (0..2)
                .map(|_| UserKeyPair::generate().expect("keygen"))
                .collect()
        })[i]
    }

    fn slot(group_id: i64, generation: u32, member: &str) -> EnvelopeSlot {
        EnvelopeSlot {
            group_id,
            generation,
            member: member.into(),
        }
    }

    #[test]
    fn envelopes_open_only_in_their_slot_and_with_their_signer() {
        let (alice, bob) = (pair(0), pair(1));
        let gk = Key32::from_bytes([7; 32]);
        let s = slot(3, 1, "bob");
        let bob_pk = bob.public_key_der().expect("pk");
        let alice_pk = alice.public_key_der().expect("pk");
        let env = seal_envelope(&s, &bob_pk, &gk, "alice", alice).expect("seal");
        let opened = open_envelope(&s, &env, "alice", &alice_pk, bob).expect("open");
        assert_eq!(
            opened.dangerously_leak_secret(),
            gk.dangerously_leak_secret()
        );

        // Another group, generation or member: the signature no longer covers it.
        for other in [slot(4, 1, "bob"), slot(3, 2, "bob"), slot(3, 1, "carol")] {
            let err = open_envelope(&other, &env, "alice", &alice_pk, bob).expect_err("moved");
            assert!(matches!(err, FormatError::GroupKey { .. }), "{err}");
        }
        // Claimed by another signer, or signed by a key that is not the signer's.
        assert!(open_envelope(&s, &env, "carol", &alice_pk, bob).is_err());
        assert!(open_envelope(&s, &env, "alice", &bob_pk, bob).is_err());
        // A key the signer made for another slot, re-signed for this one, still does not
        // open: the OAEP label names the slot.
        let moved = seal_envelope(&slot(4, 1, "bob"), &bob_pk, &gk, "alice", alice).expect("seal");
        let resigned = SignedEnvelope {
            signature: alice
                .sign_pss(&s.signed_bytes("alice", &moved.envelope).expect("msg"))
                .expect("sign"),
            envelope: moved.envelope,
        };
        let err = open_envelope(&s, &resigned, "alice", &alice_pk, bob).expect_err("re-signed");
        assert!(err.to_string().contains("does not open"), "{err}");
        // Only the member's private key opens it.
        assert!(open_envelope(&s, &env, "alice", &alice_pk, alice).is_err());
    }

    #[test]
    fn join_codes_round_trip_and_reject_garbage() {
        let secret = InviteSecret::generate().expect("secret");
        let code = secret.code(42);
        let (id, parsed) = InviteSecret::parse_code(&code).expect("parse");
        assert_eq!(id, 42);
        assert_eq!(
            parsed.auth().expect("auth").dangerously_leak_secret(),
            secret.auth().expect("auth").dangerously_leak_secret()
        );
        assert_ne!(
            secret.auth().expect("auth").dangerously_leak_secret(),
            secret.key().expect("key").dangerously_leak_secret()
        );
        for bad in ["", "42", "x.abc", "0.abc", &format!("{}x", code.as_str())] {
            assert!(InviteSecret::parse_code(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invite_keys_open_only_with_the_secret_and_for_the_group() {
        let secret = InviteSecret::generate().expect("secret");
        let keys = vec![
            (0, Key32::from_bytes([1; 32])),
            (1, Key32::from_bytes([2; 32])),
        ];
        let sealed = secret.seal_keys(9, &keys).expect("seal");
        let opened = secret.open_keys(9, &sealed).expect("open");
        assert_eq!(opened.len(), 2);
        assert_eq!(opened[1].0, 1);
        assert_eq!(opened[1].1.dangerously_leak_secret(), &[2; 32]);
        assert!(secret.open_keys(10, &sealed).is_err(), "another group");
        let other = InviteSecret::generate().expect("secret");
        assert!(other.open_keys(9, &sealed).is_err(), "another code");
    }
}
