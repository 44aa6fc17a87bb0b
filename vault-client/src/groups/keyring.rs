//! Opening the caller's group keys: `group_keys` returns the caller's envelopes of every
//! generation; each is checked before it is used ([`Keyring::open`]): the signer's key must
//! be one the client trusts for the signer ([`Trust::signer`]), the signature must cover
//! this group, generation and member, and the envelope must open with the OAEP label of
//! exactly that slot. Any failure is an error naming the envelope: a garbage key never
//! comes out of here.

use std::collections::BTreeMap;

use vault_core::crypto::Key32;
use vault_core::format::{EnvelopeSlot, SignedEnvelope, open_envelope};
use vault_core::proto::{EnvelopeInfo, Request, Response};

use super::identity::Trust;
use crate::files::{Files, FilesError, unexpected};

/// The generations of one group's key that the caller holds.
#[derive(Debug)]
pub struct Keyring {
    /// The group's name (case-folded) when the keys were fetched.
    pub group: String,
    pub group_id: i64,
    /// The generation in force, as the server says; `None` before the first key.
    pub current: Option<u32>,
    keys: BTreeMap<u32, Key32>,
}

impl Keyring {
    /// Checks and opens `envelopes`, the caller's envelopes of group `group` (id
    /// `group_id`), whose key generation in force is `current`.
    pub fn open(
        trust: &Trust<'_>,
        group: &str,
        group_id: i64,
        current: Option<u32>,
        envelopes: &[EnvelopeInfo],
    ) -> Result<Keyring, FilesError> {
        let mut keys = BTreeMap::new();
        for e in envelopes {
            let what = format!("the key of @{group} generation {}", e.generation);
            if keys.contains_key(&e.generation) {
                return Err(FilesError::Integrity(format!(
                    "the server returned two envelopes for {what}"
                )));
            }
            trust.signer(&e.signer, &e.signer_key, &what)?;
            let slot = EnvelopeSlot {
                group_id,
                generation: e.generation,
                member: trust.me.username().to_owned(),
            };
            let sealed = SignedEnvelope {
                envelope: e.envelope.to_vec(),
                signature: e.signature.to_vec(),
            };
            let key = open_envelope(&slot, &sealed, &e.signer, &e.signer_key, trust.me.pair())
                .map_err(|err| FilesError::Integrity(format!("@{group}: {err}")))?;
            keys.insert(e.generation, key);
        }
        Ok(Keyring {
            group: group.to_owned(),
            group_id,
            current,
            keys,
        })
    }

    /// Every generation held, oldest first.
    pub fn keys(&self) -> &BTreeMap<u32, Key32> {
        &self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every generation `0..=current`, for a new member who must be able to read every
    /// file; an error names the first one the caller lacks. Empty before the first key.
    pub fn all_generations(&self) -> Result<Vec<(u32, &Key32)>, FilesError> {
        let Some(current) = self.current else {
            return Ok(Vec::new());
        };
        (0..=current)
            .map(|g| {
                self.keys.get(&g).map(|k| (g, k)).ok_or_else(|| {
                    FilesError::Usage(format!(
                        "you do not hold generation {g} of the key of @{}, so you cannot give \
                         all of it to a new member; a member who holds every generation can, \
                         or yours arrives when another member's vault client next connects",
                        self.group
                    ))
                })
            })
            .collect()
    }
}

/// Fetches and opens the caller's keys of group `group` (a case-folded name).
pub async fn fetch(files: &Files, group: &str) -> Result<Keyring, FilesError> {
    let request = Request::GroupKeys {
        group: group.to_owned(),
    };
    match files.call(&request).await? {
        Response::GroupKeys {
            group_id,
            generation,
            envelopes,
        } => {
            let me = files.me()?;
            let trust = Trust {
                me,
                pins: files.pins(),
            };
            Keyring::open(&trust, group, group_id, generation, &envelopes)
        }
        other => Err(unexpected("group_keys", &other)),
    }
}

#[cfg(test)]
mod tests {
    use vault_core::format::seal_envelope;
    use vault_core::proto::ByteBuf;

    use super::*;
    use crate::groups::testing::{me, pair, store};

    /// An envelope of `gk` for `member` in `(group_id, generation)`, signed by `signer`
    /// (who uses key pair `signer_pair`).
    fn envelope(
        group_id: i64,
        generation: u32,
        member: usize,
        member_name: &str,
        gk: &Key32,
        signer: &str,
        signer_pair: usize,
    ) -> EnvelopeInfo {
        let slot = EnvelopeSlot {
            group_id,
            generation,
            member: member_name.into(),
        };
        let member_pk = pair(member).public_key_der().expect("pk");
        let sealed = seal_envelope(&slot, &member_pk, gk, signer, pair(signer_pair)).expect("seal");
        EnvelopeInfo {
            generation,
            envelope: ByteBuf::from(sealed.envelope),
            signature: ByteBuf::from(sealed.signature),
            signer: signer.into(),
            signer_key: ByteBuf::from(pair(signer_pair).public_key_der().expect("pk")),
        }
    }

    // Key pairs: 0 = bob (the caller), 1 = alice, 2 = mallory.
    const BOB: usize = 0;
    const ALICE: usize = 1;
    const MALLORY: usize = 2;

    #[test]
    fn good_envelopes_open_to_the_keys_that_were_sealed() {
        let (_tmp, pins) = store();
        let bob = me("bob", BOB);
        let trust = Trust {
            me: &bob,
            pins: &pins,
        };
        let gk0 = Key32::from_bytes([1; 32]);
        let gk1 = Key32::from_bytes([2; 32]);
        let envelopes = [
            envelope(3, 0, BOB, "bob", &gk0, "alice", ALICE),
            envelope(3, 1, BOB, "bob", &gk1, "bob", BOB),
        ];
        let ring = Keyring::open(&trust, "team", 3, Some(1), &envelopes).expect("open");
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(ring.keys()[&1].dangerously_leak_secret(), &[2; 32]);
        assert_eq!(ring.all_generations().expect("all").len(), 2);
        // Alice's key was seen for the first time and recorded.
        assert!(pins.get("alice").expect("pins").is_some());
    }

    #[test]
    fn an_envelope_of_another_group_or_generation_is_refused() {
        let (_tmp, pins) = store();
        let bob = me("bob", BOB);
        let trust = Trust {
            me: &bob,
            pins: &pins,
        };
        let gk = Key32::from_bytes([1; 32]);
        // Another group's envelope served as this group's.
        let other_group = envelope(4, 0, BOB, "bob", &gk, "alice", ALICE);
        let err = Keyring::open(&trust, "team", 3, Some(0), &[other_group]).expect_err("group");
        assert!(
            err.to_string().contains("group 3 generation 0 was refused"),
            "{err}"
        );
        // Generation 0's envelope relabelled as generation 1.
        let mut moved = envelope(3, 0, BOB, "bob", &gk, "alice", ALICE);
        moved.generation = 1;
        let err = Keyring::open(&trust, "team", 3, Some(1), &[moved]).expect_err("generation");
        assert!(
            err.to_string().contains("generation 1 was refused"),
            "{err}"
        );
        // Carol's envelope handed to bob.
        let carols = envelope(3, 0, MALLORY, "carol", &gk, "alice", ALICE);
        assert!(Keyring::open(&trust, "team", 3, Some(0), &[carols]).is_err());
        // Two envelopes for one generation.
        let one = envelope(3, 0, BOB, "bob", &gk, "alice", ALICE);
        let err =
            Keyring::open(&trust, "team", 3, Some(0), &[one.clone(), one]).expect_err("duplicate");
        assert!(err.to_string().contains("two envelopes"), "{err}");
    }

    #[test]
    fn an_envelope_signed_by_an_untrusted_key_for_a_pinned_signer_is_refused() {
        let (_tmp, pins) = store();
        let bob = me("bob", BOB);
        let trust = Trust {
            me: &bob,
            pins: &pins,
        };
        let alice_pk = pair(ALICE).public_key_der().expect("pk");
        pins.check_recipient("alice", &alice_pk)
            .expect("alice seen");
        let gk = Key32::from_bytes([9; 32]);
        // The server made an envelope with its own key and claims alice signed it.
        let forged = envelope(3, 0, BOB, "bob", &gk, "alice", MALLORY);
        let err = Keyring::open(&trust, "team", 3, Some(0), &[forged]).expect_err("forged");
        let text = err.to_string();
        assert!(text.contains("vault key verify alice"), "{text}");
        assert!(
            text.contains(&pair(MALLORY).fingerprint())
                && text.contains(&pair(ALICE).fingerprint()),
            "{text}"
        );
        // The right key for the claimed signer, with a signature by another key.
        let mut resigned = envelope(3, 0, BOB, "bob", &gk, "alice", MALLORY);
        resigned.signer_key = ByteBuf::from(alice_pk);
        let err = Keyring::open(&trust, "team", 3, Some(0), &[resigned]).expect_err("bad sig");
        assert!(err.to_string().contains("signature by alice"), "{err}");
        // An envelope claiming to be signed by bob himself with another key.
        let mine = envelope(3, 0, BOB, "bob", &gk, "bob", MALLORY);
        let err = Keyring::open(&trust, "team", 3, Some(0), &[mine]).expect_err("not mine");
        assert!(
            err.to_string().contains("claims to be signed by you"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_generation_is_named_when_all_are_needed() {
        let (_tmp, pins) = store();
        let bob = me("bob", BOB);
        let trust = Trust {
            me: &bob,
            pins: &pins,
        };
        let gk = Key32::from_bytes([1; 32]);
        let only_1 = envelope(3, 1, BOB, "bob", &gk, "alice", ALICE);
        let ring = Keyring::open(&trust, "team", 3, Some(2), &[only_1]).expect("open");
        let err = ring.all_generations().expect_err("missing");
        assert!(
            err.to_string().contains("generation 0 of the key of @team"),
            "{err}"
        );
        let none = Keyring::open(&trust, "team", 3, None, &[]).expect("no key yet");
        assert!(none.all_generations().expect("nothing").is_empty());
    }
}
