//! Chat messages (docs/FORMAT.md §9): sealing, signing, verifying and opening a [`SealedMessage`].
//!
//! Every message has a header that names its sender, its target and the sender's clock:
//!
//! ```text
//! direct: vault/v1/chat;from=<sender>;to=user:<recipient>;at=<sent_at_ms>
//! group:  vault/v1/chat;from=<sender>;to=group:<group_id>;gen=<g>;at=<sent_at_ms>
//! ```
//!
//! The body ([`MessageBody`], CBOR) is sealed (section 2 of docs/FORMAT.md) with the header
//! as associated data under
//! - a direct message: a fresh 32-byte message key, wrapped with RSA-OAEP-SHA256 for the
//!   recipient and for the sender, each with the label `<header>;member=<username>`;
//! - a group message: `HKDF(GK_g, "vault/v1/chat")`.
//!
//! The sender signs (RSA-PSS-SHA256) `vault/v1/sig/` ‖ header ‖ 0x00 ‖ ciphertext, which
//! covers the ciphertext, the recipients and the timestamp. A receiver verifies the
//! signature before it opens anything; a message that fails is shown as such.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::{FormatError, Result};
use crate::crypto::kdf::LABEL_CHAT;
use crate::crypto::rsa::{UserKeyPair, encrypt_oaep, verify_pss};
use crate::crypto::{Key32, derive_subkey, seal};
use crate::proto::ByteBuf;
use crate::proto::chat::{ChatTarget, SealedMessage, WrappedMessageKey};
use crate::proto::secret_bytes::SecretBytes;

/// What a message says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBody {
    /// May be empty when the message carries a file.
    pub text: String,
    /// A file sent with the message (`vault chat send --file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
}

impl MessageBody {
    /// A message with text only.
    pub fn text(text: impl Into<String>) -> Self {
        MessageBody {
            text: text.into(),
            file: None,
        }
    }

    /// The CBOR that is sealed: a map of `text` and, when there is one, `file`.
    pub fn to_cbor(&self) -> Result<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(Vec::new());
        ciborium::into_writer(self, &mut *out)
            .map_err(|e| FormatError::Chat(format!("cannot encode the message: {e}")))?;
        Ok(out)
    }

    /// Reads the CBOR of an opened message.
    pub fn from_cbor(plain: &[u8]) -> Result<MessageBody> {
        ciborium::from_reader(plain)
            .map_err(|e| FormatError::Chat(format!("the message body is malformed: {e}")))
    }
}

/// A file a message carries, as its readers see it: what it is, where the server keeps
/// it (the sender's file id and version; the server serves it by message id), and the key
/// and BLAKE3 that open and check its sealed contents. The key is a secret: wiped on drop
/// and redacted by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// The file's name (no directory).
    pub name: String,
    /// Plaintext bytes.
    pub size: u64,
    pub file_id: i64,
    pub version: u64,
    /// The file key (32 bytes) of that version.
    pub key: SecretBytes,
    /// BLAKE3 of the plaintext (32 bytes).
    pub blake3: ByteBuf,
}

impl FileRef {
    /// The file key; an error if the message carries one that is not 32 bytes.
    pub fn file_key(&self) -> Result<Key32> {
        Key32::from_slice(self.key.dangerously_leak_secret())
            .map_err(|_| FormatError::Chat("the file key in the message is malformed".into()))
    }
}

impl std::fmt::Debug for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRef")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("file_id", &self.file_id)
            .field("version", &self.version)
            .field("key", &"<redacted>")
            .field("blake3", &hex::encode(&self.blake3))
            .finish()
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().any(|c| c == ';' || c == '=' || c.is_control()) {
        return Err(FormatError::InvalidNamespace(name.to_owned()));
    }
    Ok(())
}

/// The header of `msg` (see the module documentation).
pub fn header(msg: &SealedMessage) -> Result<String> {
    check_name(&msg.sender)?;
    let to = match (&msg.target, msg.group_id, msg.generation) {
        (ChatTarget::User { username }, None, None) => {
            check_name(username)?;
            format!("user:{username}")
        }
        (ChatTarget::Group { .. }, Some(id), Some(g)) => format!("group:{id};gen={g}"),
        _ => {
            return Err(FormatError::Chat(
                "a direct message names no group; a group message names its group id and key \
                 generation"
                    .into(),
            ));
        }
    };
    Ok(format!(
        "vault/v1/chat;from={};to={to};at={}",
        msg.sender, msg.sent_at_ms
    ))
}

fn signed_bytes(header: &str, ciphertext: &[u8]) -> Vec<u8> {
    let mut out = format!("vault/v1/sig/{header}").into_bytes();
    out.push(0);
    out.extend_from_slice(ciphertext);
    out
}

fn key_label(header: &str, member: &str) -> Vec<u8> {
    format!("{header};member={member}").into_bytes()
}

fn sign(mut msg: SealedMessage, sender_keys: &UserKeyPair) -> Result<SealedMessage> {
    let header = header(&msg)?;
    msg.signature = ByteBuf::from(sender_keys.sign_pss(&signed_bytes(&header, &msg.ciphertext))?);
    Ok(msg)
}

/// A direct message from `sender` to `recipient`, sealed under a fresh key wrapped for both.
pub fn seal_direct(
    sender: &str,
    sender_keys: &UserKeyPair,
    recipient: &str,
    recipient_key: &[u8],
    sent_at_ms: i64,
    body: &MessageBody,
) -> Result<SealedMessage> {
    let mut msg = SealedMessage {
        sender: sender.to_owned(),
        target: ChatTarget::User {
            username: recipient.to_owned(),
        },
        group_id: None,
        generation: None,
        sent_at_ms,
        ciphertext: ByteBuf::new(),
        keys: Vec::new(),
        signature: ByteBuf::new(),
        attachment: None,
    };
    let header = header(&msg)?;
    let message_key = Key32::generate()?;
    msg.ciphertext = ByteBuf::from(seal::seal(
        &message_key,
        header.as_bytes(),
        &body.to_cbor()?,
    )?);
    let own_key = sender_keys.public_key_der()?;
    for (member, public_key) in [(recipient, recipient_key), (sender, own_key.as_slice())] {
        msg.keys.push(WrappedMessageKey {
            member: member.to_owned(),
            wrapped: ByteBuf::from(encrypt_oaep(
                public_key,
                message_key.dangerously_leak_secret(),
                &key_label(&header, member),
            )?),
        });
    }
    sign(msg, sender_keys)
}

/// A message to group `name` (id `group_id`) sealed under generation `generation` of its key.
pub fn seal_group(
    sender: &str,
    sender_keys: &UserKeyPair,
    (name, group_id): (&str, i64),
    (generation, group_key): (u32, &Key32),
    sent_at_ms: i64,
    body: &MessageBody,
) -> Result<SealedMessage> {
    let mut msg = SealedMessage {
        sender: sender.to_owned(),
        target: ChatTarget::Group {
            name: name.to_owned(),
        },
        group_id: Some(group_id),
        generation: Some(generation),
        sent_at_ms,
        ciphertext: ByteBuf::new(),
        keys: Vec::new(),
        signature: ByteBuf::new(),
        attachment: None,
    };
    let header = header(&msg)?;
    let key = derive_subkey(group_key, LABEL_CHAT)?;
    msg.ciphertext = ByteBuf::from(seal::seal(&key, header.as_bytes(), &body.to_cbor()?)?);
    sign(msg, sender_keys)
}

/// Checks the sender's signature with `sender_key` (whose trust the caller checks).
pub fn verify(msg: &SealedMessage, sender_key: &[u8]) -> Result<()> {
    let header = header(msg)?;
    verify_pss(
        sender_key,
        &signed_bytes(&header, &msg.ciphertext),
        &msg.signature,
    )
    .map_err(|_| FormatError::Chat(format!("the signature of {} does not verify", msg.sender)))
}

/// Opens a direct message with the key wrapped for `me` (verify it first).
pub fn open_direct(msg: &SealedMessage, me: &str, my_keys: &UserKeyPair) -> Result<MessageBody> {
    let header = header(msg)?;
    let wrapped = msg
        .keys
        .iter()
        .find(|k| k.member == me)
        .ok_or_else(|| FormatError::Chat(format!("the message carries no key for {me}")))?;
    let key = my_keys
        .decrypt_oaep(&wrapped.wrapped, &key_label(&header, me))
        .map_err(|_| FormatError::Chat("the message key does not open".into()))?;
    let key = Key32::from_slice(&key)?;
    let plain = seal::open(&key, header.as_bytes(), &msg.ciphertext)
        .map_err(|_| FormatError::Chat("the message does not decrypt".into()))?;
    MessageBody::from_cbor(&plain)
}

/// Opens a group message with generation `msg.generation` of the group key (verify it
/// first).
pub fn open_group(msg: &SealedMessage, group_key: &Key32) -> Result<MessageBody> {
    let header = header(msg)?;
    let key = derive_subkey(group_key, LABEL_CHAT)?;
    let plain = seal::open(&key, header.as_bytes(), &msg.ciphertext)
        .map_err(|_| FormatError::Chat("the message does not decrypt".into()))?;
    MessageBody::from_cbor(&plain)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    fn pair(i: usize) -> &'static UserKeyPair {
        static PAIRS: OnceLock<Vec<UserKeyPair>> = OnceLock::new();
        &PAIRS.get_or_init(|| {
            (0..3)
                .map(|_| UserKeyPair::generate().expect("keygen"))
                .collect()
        })[i]
    }

    fn body(text: &str) -> MessageBody {
        MessageBody::text(text)
    }

    #[test]
    fn direct_messages_open_for_both_ends_only_and_verify() {
        let (alice, bob, carol) = (pair(0), pair(1), pair(2));
        let bob_pk = bob.public_key_der().expect("pk");
        let alice_pk = alice.public_key_der().expect("pk");
        let msg =
            seal_direct("alice", alice, "bob", &bob_pk, 1_000, &body("hi bob")).expect("seal");
        verify(&msg, &alice_pk).expect("verify");
        assert_eq!(open_direct(&msg, "bob", bob).expect("bob").text, "hi bob");
        assert_eq!(
            open_direct(&msg, "alice", alice).expect("alice").text,
            "hi bob"
        );
        assert!(
            open_direct(&msg, "carol", carol).is_err(),
            "no key for carol"
        );
        assert!(
            open_direct(&msg, "bob", carol).is_err(),
            "carol's private key"
        );
        assert!(verify(&msg, &bob_pk).is_err(), "signed by alice, not bob");
    }

    #[test]
    fn tampering_with_any_signed_field_is_detected() {
        let (alice, bob) = (pair(0), pair(1));
        let bob_pk = bob.public_key_der().expect("pk");
        let alice_pk = alice.public_key_der().expect("pk");
        let msg =
            seal_direct("alice", alice, "bob", &bob_pk, 1_000, &body("pay 10")).expect("seal");
        let mut flipped = msg.clone();
        let mut ct = flipped.ciphertext.to_vec();
        ct[20] ^= 1;
        flipped.ciphertext = ByteBuf::from(ct);
        let mut later = msg.clone();
        later.sent_at_ms += 1;
        let mut forged = msg.clone();
        forged.sender = "carol".into();
        let mut elsewhere = msg.clone();
        elsewhere.target = ChatTarget::User {
            username: "dave".into(),
        };
        for (bad, why) in [
            (flipped, "ciphertext"),
            (later, "timestamp"),
            (forged, "sender"),
            (elsewhere, "recipient"),
        ] {
            assert!(verify(&bad, &alice_pk).is_err(), "{why}");
        }
    }

    #[test]
    fn group_messages_open_with_their_generation_only() {
        let alice = pair(0);
        let alice_pk = alice.public_key_der().expect("pk");
        let gk1 = Key32::from_bytes([1; 32]);
        let gk2 = Key32::from_bytes([2; 32]);
        let msg =
            seal_group("alice", alice, ("team", 7), (1, &gk1), 5, &body("hi team")).expect("seal");
        verify(&msg, &alice_pk).expect("verify");
        assert_eq!(open_group(&msg, &gk1).expect("open").text, "hi team");
        assert!(open_group(&msg, &gk2).is_err(), "another generation's key");
        let mut moved = msg.clone();
        moved.group_id = Some(8);
        assert!(verify(&moved, &alice_pk).is_err(), "another group");
        assert!(open_group(&moved, &gk1).is_err(), "another group");
        let mut mixed = msg;
        mixed.group_id = None;
        assert!(header(&mixed).is_err());
    }

    fn file_ref() -> FileRef {
        FileRef {
            name: "report.pdf".into(),
            size: 1234,
            file_id: 42,
            version: 3,
            key: SecretBytes::new(vec![0xAB; 32]),
            blake3: ByteBuf::from(vec![0xCD; 32]),
        }
    }

    #[test]
    fn a_file_ref_travels_in_the_sealed_body() {
        let (alice, bob) = (pair(0), pair(1));
        let bob_pk = bob.public_key_der().expect("pk");
        let sent = MessageBody {
            text: String::new(),
            file: Some(file_ref()),
        };
        let msg = seal_direct("alice", alice, "bob", &bob_pk, 9, &sent).expect("seal");
        let got = open_direct(&msg, "bob", bob).expect("open");
        assert_eq!(got, sent);
        let file = got.file.expect("file");
        assert_eq!(
            file.file_key().expect("key").dangerously_leak_secret(),
            &[0xAB; 32]
        );
        // A body without a file encodes as before (no `file` field).
        let plain = MessageBody::text("hi").to_cbor().expect("encode");
        let old: std::collections::BTreeMap<String, String> =
            ciborium::from_reader(plain.as_slice()).expect("map");
        assert_eq!(old.keys().collect::<Vec<_>>(), ["text"]);
    }

    #[test]
    fn a_file_ref_debug_never_shows_the_key() {
        let shown = format!(
            "{:?}",
            MessageBody {
                text: "x".into(),
                file: Some(file_ref()),
            }
        );
        assert!(
            shown.contains("report.pdf") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(
            !shown.contains("171"),
            "the key's bytes in decimal: {shown}"
        );
        let mut short = file_ref();
        short.key = SecretBytes::new(vec![1; 31]);
        assert!(short.file_key().is_err());
    }
}
