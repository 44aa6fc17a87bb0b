//! Helpers shared by the tests of this module: group keyrings made from real envelopes.

use vault_core::crypto::Key32;
use vault_core::format::{EnvelopeSlot, seal_envelope};
use vault_core::proto::{ByteBuf, EnvelopeInfo};

use crate::groups::testing::pair;
use crate::groups::{Keyring, Trust};

/// The keyring of group `team` (id `group_id`) for `trust.me`, whose key pair is `me_pair`:
/// the generations in `held`, each in an envelope the caller signed; `current` in force.
pub fn ring(
    trust: &Trust<'_>,
    me_pair: usize,
    group_id: i64,
    current: Option<u32>,
    held: &[(u32, &Key32)],
) -> Keyring {
    let me = trust.me.username();
    let public = pair(me_pair).public_key_der().expect("pk");
    let envelopes: Vec<EnvelopeInfo> = held
        .iter()
        .map(|(generation, gk)| {
            let slot = EnvelopeSlot {
                group_id,
                generation: *generation,
                member: me.into(),
            };
            let sealed = seal_envelope(&slot, &public, gk, me, pair(me_pair)).expect("seal");
            EnvelopeInfo {
                generation: *generation,
                envelope: ByteBuf::from(sealed.envelope),
                signature: ByteBuf::from(sealed.signature),
                signer: me.into(),
                signer_key: ByteBuf::from(public.clone()),
            }
        })
        .collect();
    Keyring::open(trust, "team", group_id, current, &envelopes).expect("keyring")
}
