//! Chat messages (`format::chat`), as a receiving client checks them: the CBOR of a
//! `SealedMessage` (`decode_body`, as the server reads its stored bodies), its header,
//! the sender's signature (alice's or bob's key of `chat_v1.txt`), then opening it — a
//! direct message as bob with his TEST-ONLY key, a group message under the group keys of
//! the vectors — and `MessageBody::from_cbor`, the parser behind the opener.
//!
//! Input: a mode byte, then — even: the CBOR of a `SealedMessage`. A header is refused
//! exactly for names that could make two messages share one, and otherwise reads back as
//! the message's sender, target and time; a message that verifies no longer does with its
//! time changed, and a body that opens encodes and decodes to itself. Odd: the CBOR of an
//! opened body, which, if it parses, encodes and decodes to itself.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vault_core::crypto::Key32;
use vault_core::format::chat::{self, MessageBody};
use vault_core::proto::{ChatTarget, SealedMessage, decode_body};
use vault_fuzz::{CHAT_V1, alice_spki, bob, bob_spki, hex, key32, vector_fields};

fn group_keys() -> &'static [Key32] {
    static KEYS: OnceLock<Vec<Key32>> = OnceLock::new();
    KEYS.get_or_init(|| {
        vector_fields(CHAT_V1, "group_key")
            .iter()
            .map(|k| key32(&hex(k)))
            .collect()
    })
}

fn ambiguous(name: &str) -> bool {
    name.is_empty() || name.chars().any(|c| c == ';' || c == '=' || c.is_control())
}

fn body_round_trips(body: &MessageBody) {
    let cbor = body.to_cbor().expect("a body encodes");
    assert_eq!(
        &MessageBody::from_cbor(&cbor).expect("an encoded body decodes"),
        body
    );
}

fn check_header(msg: &SealedMessage) {
    let header = match chat::header(msg) {
        Ok(h) => h,
        Err(_) => {
            let direct_ok = matches!(
                (&msg.target, msg.group_id, msg.generation),
                (ChatTarget::User { username }, None, None) if !ambiguous(username)
            );
            let group_ok = matches!(
                (&msg.target, msg.group_id, msg.generation),
                (ChatTarget::Group { .. }, Some(_), Some(_))
            );
            assert!(
                ambiguous(&msg.sender) || !(direct_ok || group_ok),
                "a valid header refused"
            );
            return;
        }
    };
    assert!(!ambiguous(&msg.sender));
    let rest = header.strip_prefix("vault/v1/chat;from=").expect("prefix");
    let (sender, rest) = rest.split_once(";to=").expect("to");
    assert_eq!(sender, msg.sender);
    let (to, at) = rest.rsplit_once(";at=").expect("at");
    assert_eq!(at.parse::<i64>().expect("time"), msg.sent_at_ms);
    match &msg.target {
        ChatTarget::User { username } => {
            assert!(!ambiguous(username));
            assert_eq!(to.strip_prefix("user:"), Some(username.as_str()));
        }
        ChatTarget::Group { .. } => {
            let (id, generation) = to
                .strip_prefix("group:")
                .and_then(|t| t.split_once(";gen="))
                .expect("group");
            assert_eq!(id.parse::<i64>().ok(), msg.group_id);
            assert_eq!(generation.parse::<u32>().ok(), msg.generation);
        }
    }
}

fn sealed(bytes: &[u8]) {
    let Ok(msg) = decode_body::<SealedMessage>(bytes) else {
        return;
    };
    check_header(&msg);
    let sender_key = if msg.sender == "bob" {
        bob_spki()
    } else {
        alice_spki()
    };
    if chat::verify(&msg, sender_key).is_err() {
        return;
    }
    let mut later = msg.clone();
    later.sent_at_ms = later.sent_at_ms.wrapping_add(1);
    assert!(
        chat::verify(&later, sender_key).is_err(),
        "a changed time still verifies"
    );
    match msg.target {
        ChatTarget::User { .. } => {
            if let Ok(body) = chat::open_direct(&msg, "bob", bob()) {
                body_round_trips(&body);
            }
        }
        ChatTarget::Group { .. } => {
            for key in group_keys() {
                if let Ok(body) = chat::open_group(&msg, key) {
                    body_round_trips(&body);
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        sealed(rest);
    } else if let Ok(body) = MessageBody::from_cbor(rest) {
        body_round_trips(&body);
    }
});
