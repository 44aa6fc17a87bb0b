//! Making envelopes for members: every member's public key passes [`Trust::recipient`]
//! (the pin store's rules) before anything is wrapped for it, then each generation is
//! sealed with the slot's OAEP label and signed by the caller
//! (`vault_core::format::seal_envelope`).

use std::collections::BTreeSet;

use vault_core::crypto::Key32;
use vault_core::format::{EnvelopeSlot, seal_envelope};
use vault_core::proto::{ByteBuf, NewEnvelope, Rotation, UserKey};

use super::identity::Trust;
use crate::files::FilesError;

/// The envelope of generation `generation` (`key`) of group `group_id` for `member`,
/// whose key has been checked.
fn seal_one(
    trust: &Trust<'_>,
    group_id: i64,
    generation: u32,
    member: &UserKey,
    key: &Key32,
) -> Result<NewEnvelope, FilesError> {
    let slot = EnvelopeSlot {
        group_id,
        generation,
        member: member.username.clone(),
    };
    let sealed = seal_envelope(
        &slot,
        &member.public_key,
        key,
        trust.me.username(),
        trust.me.pair(),
    )?;
    Ok(NewEnvelope {
        member: member.username.clone(),
        generation,
        envelope: ByteBuf::from(sealed.envelope),
        signature: ByteBuf::from(sealed.signature),
    })
}

/// Envelopes of every generation in `keys` for `member`, after checking their key.
pub fn envelopes_for(
    trust: &Trust<'_>,
    group_id: i64,
    member: &UserKey,
    keys: &[(u32, &Key32)],
) -> Result<Vec<NewEnvelope>, FilesError> {
    trust.recipient(member)?;
    keys.iter()
        .map(|(generation, key)| seal_one(trust, group_id, *generation, member, key))
        .collect()
}

/// A fresh key of generation `generation` with an envelope for each of `members`, after
/// checking every member's key (nothing is made if one fails).
pub fn rotation(
    trust: &Trust<'_>,
    group_id: i64,
    generation: u32,
    members: &[UserKey],
) -> Result<Rotation, FilesError> {
    let mut seen = BTreeSet::new();
    for member in members {
        if !seen.insert(member.username.as_str()) {
            return Err(FilesError::Integrity(format!(
                "the server listed {} twice among the members",
                member.username
            )));
        }
        trust.recipient(member)?;
    }
    let key = Key32::generate().map_err(crate::ClientError::from)?;
    let envelopes = members
        .iter()
        .map(|member| seal_one(trust, group_id, generation, member, &key))
        .collect::<Result<_, _>>()?;
    Ok(Rotation {
        generation,
        envelopes,
    })
}

#[cfg(test)]
mod tests {
    use vault_core::proto::EnvelopeInfo;

    use super::*;
    use crate::groups::keyring::Keyring;
    use crate::groups::pins::Seen;
    use crate::groups::testing::{me, pair, store};

    fn user(name: &str, i: usize) -> UserKey {
        UserKey {
            username: name.into(),
            public_key: ByteBuf::from(pair(i).public_key_der().expect("pk")),
        }
    }

    /// What the server hands back to `member` of what `signer` sent.
    fn as_stored(e: &NewEnvelope, signer: &str, signer_pair: usize) -> EnvelopeInfo {
        EnvelopeInfo {
            generation: e.generation,
            envelope: e.envelope.clone(),
            signature: e.signature.clone(),
            signer: signer.into(),
            signer_key: ByteBuf::from(pair(signer_pair).public_key_der().expect("pk")),
        }
    }

    #[test]
    fn envelopes_for_a_new_member_open_for_them_only() {
        let (_a, alice_pins) = store();
        let alice = me("alice", 0);
        let trust = Trust {
            me: &alice,
            pins: &alice_pins,
        };
        let keys = [Key32::from_bytes([1; 32]), Key32::from_bytes([2; 32])];
        let held: Vec<(u32, &Key32)> = keys
            .iter()
            .enumerate()
            .map(|(g, k)| (g as u32, k))
            .collect();
        let made = envelopes_for(&trust, 3, &user("bob", 1), &held).expect("seal");
        assert_eq!(made.len(), 2);
        assert!(made.iter().all(|e| e.member == "bob"));
        // Bob was seen for the first time: recorded.
        assert_eq!(
            alice_pins
                .check_recipient("bob", &pair(1).public_key_der().expect("pk"))
                .expect("known"),
            Seen::Known(crate::groups::pins::PinSource::FirstSeen)
        );

        let (_b, bob_pins) = store();
        let bob = me("bob", 1);
        let stored: Vec<EnvelopeInfo> = made.iter().map(|e| as_stored(e, "alice", 0)).collect();
        let bob_trust = Trust {
            me: &bob,
            pins: &bob_pins,
        };
        let ring = Keyring::open(&bob_trust, "team", 3, Some(1), &stored).expect("bob opens");
        assert_eq!(ring.keys()[&1].dangerously_leak_secret(), &[2; 32]);
        // Carol (another key pair) cannot use bob's envelopes.
        let carol = me("bob", 2);
        let carol_trust = Trust {
            me: &carol,
            pins: &bob_pins,
        };
        assert!(Keyring::open(&carol_trust, "team", 3, Some(1), &stored).is_err());
    }

    #[test]
    fn a_swapped_member_key_is_refused_before_anything_is_wrapped() {
        let (_a, pins) = store();
        let alice = me("alice", 0);
        let trust = Trust {
            me: &alice,
            pins: &pins,
        };
        let gk = Key32::from_bytes([5; 32]);
        envelopes_for(&trust, 3, &user("bob", 1), &[(0, &gk)]).expect("first sight");
        // The server now presents another key for bob.
        let err = envelopes_for(&trust, 3, &user("bob", 2), &[(0, &gk)]).expect_err("swapped");
        let text = err.to_string();
        assert!(
            text.contains(&pair(1).fingerprint()) && text.contains(&pair(2).fingerprint()),
            "{text}"
        );
        assert!(text.contains("vault key verify bob"), "{text}");
        // And another key for alice herself.
        let err = envelopes_for(&trust, 3, &user("alice", 2), &[(0, &gk)]).expect_err("own");
        assert!(err.to_string().contains("your own account"), "{err}");
        // A rotation with one swapped key makes nothing.
        let members = [user("alice", 0), user("carol", 1), user("bob", 2)];
        let err = rotation(&trust, 3, 1, &members).expect_err("rotation");
        assert!(err.to_string().contains(&pair(2).fingerprint()), "{err}");
    }

    #[test]
    fn a_rotation_gives_every_member_the_same_new_key() {
        let (_a, pins) = store();
        let alice = me("alice", 0);
        let trust = Trust {
            me: &alice,
            pins: &pins,
        };
        let members = [user("alice", 0), user("bob", 1)];
        let r = rotation(&trust, 3, 2, &members).expect("rotation");
        assert_eq!(r.generation, 2);
        assert_eq!(r.envelopes.len(), 2);
        let mut opened = Vec::new();
        for (name, i) in [("alice", 0), ("bob", 1)] {
            let (_t, member_pins) = store();
            let member = me(name, i);
            let member_trust = Trust {
                me: &member,
                pins: &member_pins,
            };
            let mine: Vec<EnvelopeInfo> = r
                .envelopes
                .iter()
                .filter(|e| e.member == name)
                .map(|e| as_stored(e, "alice", 0))
                .collect();
            let ring = Keyring::open(&member_trust, "team", 3, Some(2), &mine).expect("open");
            opened.push(*ring.keys()[&2].dangerously_leak_secret());
        }
        assert_eq!(opened[0], opened[1]);
        let twice = [user("bob", 1), user("bob", 1)];
        assert!(
            rotation(&trust, 3, 3, &twice).is_err(),
            "a member listed twice"
        );
    }
}
