//! The envelopes a request carries: their shape ([`parse`]), whether they are exactly the
//! set the request needs (a rotation: one per member of the new generation; an addition:
//! one per generation for the new member), and storing them with the name and public key
//! of the member who sent them ([`store`]). The server cannot open an envelope; it checks
//! only which slot each one claims to fill, and clients check the signature on the way
//! out.

use std::collections::{BTreeSet, HashMap, HashSet};

use vault_proto::proto::groups::MAX_ENVELOPES;
use vault_proto::proto::{ApiError, ErrorCode, NewEnvelope, Rotation, names};

use crate::db::DbConn;
use crate::db::groups::{self, NewEnvelopeRow};
use crate::error::Failure;

/// The most bytes an envelope or its signature may have (an RSA-3072 one has 384).
pub const MAX_ENVELOPE_LEN: usize = 2048;

/// One envelope whose shape was checked, for a case-folded member name.
#[derive(Clone, Debug)]
pub struct Checked {
    pub member: String,
    pub generation: u32,
    pub envelope: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The answer when the set of envelopes no longer matches the group (a member joined or
/// left, or a key was made, since the client looked).
pub fn changed() -> ApiError {
    ApiError::conflict("the group key or its members changed; run the command again")
}

/// Checks each envelope's shape: at most [`MAX_ENVELOPES`], a valid member name, an
/// envelope and a signature of sensible length, and no slot twice.
pub fn parse(list: Vec<NewEnvelope>) -> Result<Vec<Checked>, ApiError> {
    if list.len() > MAX_ENVELOPES {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "a request carries at most {MAX_ENVELOPES} envelopes; this one has {}",
                list.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    list.into_iter()
        .map(|e| {
            let member = names::normalize_username(&e.member).map_err(ApiError::bad_request)?;
            for (what, bytes) in [("an envelope", &e.envelope), ("a signature", &e.signature)] {
                if bytes.is_empty() || bytes.len() > MAX_ENVELOPE_LEN {
                    return Err(ApiError::bad_request(format!(
                        "{what} has 1 to {MAX_ENVELOPE_LEN} bytes, not {}",
                        bytes.len()
                    )));
                }
            }
            if !seen.insert((member.clone(), e.generation)) {
                return Err(ApiError::bad_request(format!(
                    "two envelopes of generation {} for {member}; send each once",
                    e.generation
                )));
            }
            Ok(Checked {
                member,
                generation: e.generation,
                envelope: e.envelope.into_vec(),
                signature: e.signature.into_vec(),
            })
        })
        .collect()
}

/// Checks a new generation: it must be `expected`, and carry exactly one envelope of it
/// for each of `members`. Anything else means the group changed meanwhile (`conflict`).
pub fn check_rotation(
    rotation: Rotation,
    expected: u32,
    members: &BTreeSet<String>,
) -> Result<Vec<Checked>, ApiError> {
    let generation = rotation.generation;
    let list = parse(rotation.envelopes)?;
    if generation != expected {
        return Err(changed());
    }
    if list.iter().any(|e| e.generation != generation) {
        return Err(ApiError::bad_request(format!(
            "every envelope of a new key is of its generation {generation}"
        )));
    }
    let covered: BTreeSet<String> = list.iter().map(|e| e.member.clone()).collect();
    if &covered != members {
        return Err(changed());
    }
    Ok(list)
}

/// Checks the envelopes of `group_add`: all for `member`, exactly one per generation
/// `0..=current` (none while the group has no key).
pub fn check_add(
    current: Option<u32>,
    member: &str,
    list: Vec<NewEnvelope>,
) -> Result<Vec<Checked>, ApiError> {
    let list = parse(list)?;
    if let Some(other) = list.iter().find(|e| e.member != member) {
        return Err(ApiError::bad_request(format!(
            "an envelope for {} came with the addition of {member}; send only theirs",
            other.member
        )));
    }
    let have: BTreeSet<u32> = list.iter().map(|e| e.generation).collect();
    let want: BTreeSet<u32> = current.map_or_else(BTreeSet::new, |g| (0..=g).collect());
    if have != want {
        return Err(changed());
    }
    Ok(list)
}

/// Stores envelopes of `group_id` for the members named in them (`ids` maps a member's
/// name to their user id; every name must be in it), signed by `signer`.
pub fn store(
    conn: &mut DbConn,
    group_id: i64,
    list: &[Checked],
    ids: &HashMap<String, i64>,
    signer: (&str, &[u8]),
    now: i64,
) -> Result<(), Failure> {
    for e in list {
        let user_id = *ids
            .get(&e.member)
            .ok_or_else(|| crate::error::internal("envelope for an unchecked member", &e.member))?;
        groups::insert_envelope(
            conn,
            &NewEnvelopeRow {
                group_id,
                generation: i64::from(e.generation),
                user_id,
                envelope: &e.envelope,
                signature: &e.signature,
                signer: signer.0,
                signer_key: signer.1,
                created_at: now,
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(member: &str, generation: u32) -> NewEnvelope {
        NewEnvelope {
            member: member.into(),
            generation,
            envelope: vec![1; 384].into(),
            signature: vec![2; 384].into(),
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shapes_are_checked() {
        assert_eq!(parse(vec![env("Alice", 0)]).expect("ok")[0].member, "alice");
        let mut empty = env("alice", 0);
        empty.envelope = Vec::new().into();
        assert_eq!(
            parse(vec![empty]).expect_err("empty").code,
            ErrorCode::BadRequest
        );
        let mut long = env("alice", 0);
        long.signature = vec![0; MAX_ENVELOPE_LEN + 1].into();
        assert_eq!(
            parse(vec![long]).expect_err("long").code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            parse(vec![env("alice", 0), env("ALICE", 0)])
                .expect_err("twice")
                .code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            parse(vec![env("a/b", 0)]).expect_err("bad name").code,
            ErrorCode::BadRequest
        );
        let many = (0..=MAX_ENVELOPES as u32)
            .map(|g| env("alice", g))
            .collect();
        assert_eq!(parse(many).expect_err("many").code, ErrorCode::TooLarge);
    }

    #[test]
    fn a_rotation_covers_exactly_the_members() {
        let members = names(&["alice", "bob"]);
        let rotation = |generation, who: &[&str]| Rotation {
            generation,
            envelopes: who.iter().map(|m| env(m, generation)).collect(),
        };
        assert!(check_rotation(rotation(3, &["alice", "bob"]), 3, &members).is_ok());
        for (r, why) in [
            (rotation(4, &["alice", "bob"]), "wrong generation"),
            (rotation(3, &["alice"]), "a member missing"),
            (rotation(3, &["alice", "bob", "carol"]), "a non-member"),
        ] {
            let e = check_rotation(r, 3, &members).expect_err(why);
            assert_eq!(e.code, ErrorCode::Conflict, "{why}");
        }
        let mixed = Rotation {
            generation: 3,
            envelopes: vec![env("alice", 3), env("bob", 2)],
        };
        assert_eq!(
            check_rotation(mixed, 3, &members).expect_err("mixed").code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn an_addition_brings_every_generation() {
        assert!(check_add(None, "bob", vec![]).is_ok());
        assert!(check_add(Some(1), "bob", vec![env("bob", 0), env("bob", 1)]).is_ok());
        for (current, list) in [
            (None, vec![env("bob", 0)]),
            (Some(1), vec![env("bob", 0)]),
            (Some(0), vec![env("bob", 0), env("bob", 1)]),
            (Some(0), vec![]),
        ] {
            let e = check_add(current, "bob", list).expect_err("mismatch");
            assert_eq!(e.code, ErrorCode::Conflict);
        }
        let e = check_add(Some(0), "bob", vec![env("carol", 0)]).expect_err("other");
        assert_eq!(e.code, ErrorCode::BadRequest);
    }
}
