//! Group-key envelopes (`format::groupkey::open_envelope`), as a client opens the envelopes
//! a server hands it: the signature checked with the signer's public key (alice's or bob's
//! of the vectors), then RSA-OAEP opened with bob's TEST-ONLY private key under the label of
//! the slot.
//!
//! Input: `signer key (bit 0: alice, else bob) ‖ group_id (i64 BE) ‖ generation (u32 BE) ‖
//! member (u8 length + bytes) ‖ signer (u8 length + bytes) ‖ envelope (u16 BE length +
//! bytes) ‖ signature`. The label and the signed bytes are refused exactly for names that
//! could make two slots share them and otherwise read back as their slot; an envelope that
//! opens holds a 32-byte key and opens in no other slot.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_core::format::groupkey::{EnvelopeSlot, SignedEnvelope, open_envelope};
use vault_fuzz::{Reader, alice_spki, bob, bob_spki};

fn ambiguous(name: &str) -> bool {
    name.is_empty() || name.chars().any(|c| c == ';' || c == '=' || c.is_control())
}

/// Reads `…;group=G;gen=N;member=M[;signer=S]` back after `prefix`.
fn read_back(text: &str, prefix: &str) -> (EnvelopeSlot, Option<String>) {
    let rest = text.strip_prefix(prefix).expect("prefix");
    let fields: Vec<&str> = rest.split(';').collect();
    let value = |i: usize, name: &str| -> String {
        let (k, v) = fields[i].split_once('=').expect("key=value");
        assert_eq!(k, name, "{text}");
        v.to_owned()
    };
    let slot = EnvelopeSlot {
        group_id: value(0, "group").parse().expect("group id"),
        generation: value(1, "gen").parse().expect("generation"),
        member: value(2, "member"),
    };
    let signer = (fields.len() == 4).then(|| value(3, "signer"));
    assert!(fields.len() <= 4, "{text}");
    (slot, signer)
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let signer_key = if r.u8() & 1 == 1 {
        alice_spki()
    } else {
        bob_spki()
    };
    let group_id = r.i64();
    let generation = r.u32();
    let (Ok(member), Ok(signer)) = (
        std::str::from_utf8(r.short()).map(str::to_owned),
        std::str::from_utf8(r.short()).map(str::to_owned),
    ) else {
        return;
    };
    let envelope = r.long().to_vec();
    let signature = r.rest().to_vec();
    let slot = EnvelopeSlot {
        group_id,
        generation,
        member,
    };

    match slot.label() {
        Ok(label) => {
            assert!(!ambiguous(&slot.member));
            let label = String::from_utf8(label).expect("text");
            let (back, none) = read_back(&label, "vault/v1/ad/group-key;");
            assert_eq!((back, none), (slot.clone(), None));
        }
        Err(_) => assert!(
            ambiguous(&slot.member),
            "a label refused for a valid member"
        ),
    }
    match slot.signed_bytes(&signer, &envelope) {
        Ok(signed) => {
            assert!(!ambiguous(&slot.member) && !ambiguous(&signer));
            let nul = signed
                .iter()
                .position(|&b| b == 0)
                .expect("a NUL after the text");
            assert_eq!(&signed[nul + 1..], &envelope[..]);
            let text = std::str::from_utf8(&signed[..nul]).expect("text");
            let (back, by) = read_back(text, "vault/v1/sig/group-key;");
            assert_eq!((back, by), (slot.clone(), Some(signer.clone())));
        }
        Err(_) => {
            assert!(ambiguous(&slot.member) || ambiguous(&signer));
            return;
        }
    }

    let sealed = SignedEnvelope {
        envelope,
        signature,
    };
    if let Ok(key) = open_envelope(&slot, &sealed, &signer, signer_key, bob()) {
        assert_eq!(key.dangerously_leak_secret().len(), 32);
        let moved = EnvelopeSlot {
            generation: generation.wrapping_add(1),
            ..slot.clone()
        };
        assert!(open_envelope(&moved, &sealed, &signer, signer_key, bob()).is_err());
    }
});
