//! Making and sending a message (docs/FORMAT.md §9.1, client side). A direct message is only made
//! for a mutual contact whose public key (from `contact_list`) passes the pin store: trusted on
//! first use, a changed key refused showing both fingerprints. A group message is sealed under the
//! generation of the group key in force; when the server answers that the key changed meanwhile,
//! the keys are fetched again and the message is made again.
//!
//! `chat_send` is not repeated when the server refuses it as a flood: the refusal says how
//! long to wait.

use vault_core::crypto::public_key_fingerprint;
use vault_core::format::chat::{MessageBody, seal_direct, seal_group};
use vault_core::proto::chat::{
    ChatTarget, ContactInfo, ContactState, MAX_MESSAGE_CIPHERTEXT, SealedMessage,
};
use vault_core::proto::{Attachment, Request, Response, UserKey};

use super::contacts;
use super::target::show;
use crate::files::keys::no_group_key;
use crate::files::{Files, FilesError, unexpected};
use crate::groups::pins::{KnownKey, PinSource};
use crate::groups::{Keyring, Me, Trust, keyring};

/// The most text any server accepts in one message (its `[chat] max_text_bytes`, 64 KiB by
/// default, may be lower): what fits in [`MAX_MESSAGE_CIPHERTEXT`] once sealed.
pub const MAX_TEXT_BYTES: usize = MAX_MESSAGE_CIPHERTEXT - 1024;

/// How often a group message refused because the group's key changed is made again.
const ATTEMPTS: usize = 3;

/// Checks a message's text: not empty, not larger than any server accepts.
pub fn check_text(text: &str) -> Result<(), FilesError> {
    if text.trim().is_empty() {
        return Err(FilesError::Usage(
            "the message is empty: give the text as an argument or on standard input".into(),
        ));
    }
    check_length(text)
}

/// Checks a message's body: its text as [`check_text`] does, except that a message that
/// carries a file may have no text.
pub fn check_body(body: &MessageBody) -> Result<(), FilesError> {
    match body.file {
        Some(_) => check_length(&body.text),
        None => check_text(&body.text),
    }
}

/// Checks that a text is not larger than any server accepts.
pub fn check_length(text: &str) -> Result<(), FilesError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(FilesError::Usage(format!(
            "the message has {} bytes of text; a message has at most {MAX_TEXT_BYTES} (send a \
             long text as a file with `vault put`)",
            text.len()
        )));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch by this machine's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The refusal of a recipient whose key is not the one trusted for them.
fn changed_key(user: &str, presented: &str, trusted: &KnownKey) -> FilesError {
    let how = match trusted.source {
        PinSource::Verified => "you verified it with `vault key verify`",
        PinSource::FirstSeen => "it was recorded when you first saw their key",
    };
    FilesError::Integrity(format!(
        "the server gives {user} the public key {presented}, but the key you trust for {user} is \
         {} ({how}). Nothing was sent. If {user} really has new keys (after a password reset \
         without the recovery key), compare {presented} with them in person or by phone (`vault \
         key fingerprint` on their machine) and run `vault key verify {user} {presented}`; \
         otherwise the server may be trying to read your messages",
        trusted.fingerprint
    ))
}

/// Checks the key `contact` carries against the pin store ([`Trust::recipient`]: recorded on
/// first sight, else it must be the trusted one).
pub fn check_recipient(trust: &Trust<'_>, contact: &ContactInfo) -> Result<(), FilesError> {
    let user = &contact.username;
    let presented = public_key_fingerprint(&contact.public_key);
    if let Some(trusted) = trust.pins.get(user)?
        && trusted.fingerprint != presented
    {
        return Err(changed_key(user, &presented, &trusted));
    }
    trust
        .recipient(&UserKey {
            username: user.clone(),
            public_key: contact.public_key.clone(),
        })
        .map(|_| ())
}

/// The refusal of a direct message to someone who is not a mutual contact.
pub fn not_a_contact(user: &str, state: Option<ContactState>) -> FilesError {
    FilesError::Usage(match state {
        Some(ContactState::RequestSent) => format!(
            "{user} is not your contact yet: they have not accepted your request, and direct \
             messages need both sides to agree"
        ),
        Some(ContactState::RequestReceived) => format!(
            "{user} is not your contact yet: accept their request with `vault contact accept \
             {user}`"
        ),
        _ => format!(
            "{user} is not your contact: `vault contact add {user}` and wait for them to accept"
        ),
    })
}

/// A direct message with `text` to `contact` (their entry of `contact_list`), sealed and
/// signed.
pub fn direct(
    trust: &Trust<'_>,
    contact: &ContactInfo,
    text: &str,
    sent_at_ms: i64,
) -> Result<SealedMessage, FilesError> {
    direct_body(trust, contact, &MessageBody::text(text), sent_at_ms)
}

/// A direct message with `body` to `contact`, sealed and signed.
pub fn direct_body(
    trust: &Trust<'_>,
    contact: &ContactInfo,
    body: &MessageBody,
    sent_at_ms: i64,
) -> Result<SealedMessage, FilesError> {
    check_body(body)?;
    if contact.state != ContactState::Contact {
        return Err(not_a_contact(&contact.username, Some(contact.state)));
    }
    check_recipient(trust, contact)?;
    let me = trust.me;
    Ok(seal_direct(
        me.username(),
        me.pair(),
        &contact.username,
        &contact.public_key,
        sent_at_ms,
        body,
    )?)
}

/// A message with `text` to the group of `ring`, sealed under the generation in force.
pub fn group(
    me: &Me,
    ring: &Keyring,
    text: &str,
    sent_at_ms: i64,
) -> Result<SealedMessage, FilesError> {
    group_body(me, ring, &MessageBody::text(text), sent_at_ms)
}

/// A message with `body` to the group of `ring`, sealed under the generation in force.
pub fn group_body(
    me: &Me,
    ring: &Keyring,
    body: &MessageBody,
    sent_at_ms: i64,
) -> Result<SealedMessage, FilesError> {
    check_body(body)?;
    let Some(current) = ring.current else {
        return Err(FilesError::Usage(format!(
            "@{} has no key yet; it is made when a member's vault client next connects",
            ring.group
        )));
    };
    let key = ring
        .keys()
        .get(&current)
        .ok_or_else(|| no_group_key(&ring.group))?;
    Ok(seal_group(
        me.username(),
        me.pair(),
        (&ring.group, ring.group_id),
        (current, key),
        sent_at_ms,
        body,
    )?)
}

/// A message the server stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub target: ChatTarget,
    pub id: i64,
    pub received_at_ms: i64,
}

/// Sends one `chat_send` (a refusal, even `throttled`, is returned as it is).
async fn submit(files: &Files, message: SealedMessage) -> Result<(i64, i64), FilesError> {
    let request = Request::ChatSend { message };
    match files.conn().call(&request).await? {
        Response::ChatSent { id, received_at_ms } => Ok((id, received_at_ms)),
        other => Err(unexpected("chat_send", &other)),
    }
}

/// Makes and sends a message with `text` to `target`.
pub async fn send(files: &Files, target: &ChatTarget, text: &str) -> Result<Sent, FilesError> {
    check_text(text)?;
    send_body(files, target, &MessageBody::text(text), None).await
}

/// Makes and sends a message with `body` to `target`; `attachment` names the file the body
/// refers to in the sender's space (see [`super::attach`]).
pub async fn send_body(
    files: &Files,
    target: &ChatTarget,
    body: &MessageBody,
    attachment: Option<&Attachment>,
) -> Result<Sent, FilesError> {
    check_body(body)?;
    let (id, received_at_ms) = match target {
        ChatTarget::User { username } => {
            if username == files.user() {
                return Err(FilesError::Usage(
                    "you cannot send a direct message to yourself".into(),
                ));
            }
            let contact = contacts::get(files, username)
                .await?
                .ok_or_else(|| not_a_contact(username, None))?;
            let trust = Trust {
                me: files.me()?,
                pins: files.pins(),
            };
            let mut message = direct_body(&trust, &contact, body, now_ms())?;
            message.attachment = attachment.cloned();
            submit(files, message).await?
        }
        ChatTarget::Group { name } => {
            let mut attempt = 1;
            loop {
                let ring = keyring::fetch(files, name).await?;
                let mut message = group_body(files.me()?, &ring, body, now_ms())?;
                message.attachment = attachment.cloned();
                match submit(files, message).await {
                    Err(e) if e.api_code() == Some("conflict") && attempt < ATTEMPTS => {
                        files.forget_group_keys(name);
                        attempt += 1;
                    }
                    other => break other?,
                }
            }
        }
    };
    tracing::debug!(target = %show(target), id, "message sent");
    Ok(Sent {
        target: target.clone(),
        id,
        received_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use vault_core::crypto::Key32;
    use vault_core::format::chat::{open_direct, open_group, verify};
    use vault_core::proto::ByteBuf;

    use super::*;
    use crate::chat::testing::ring;
    use crate::groups::testing::{me, pair, public, store};

    // Key pairs: 0 = alice (the caller), 1 = bob, 2 = mallory.
    const ALICE: usize = 0;
    const BOB: usize = 1;
    const MALLORY: usize = 2;

    fn contact(user: &str, key: usize, state: ContactState) -> ContactInfo {
        ContactInfo {
            username: user.into(),
            display_name: None,
            state,
            online: false,
            last_seen: None,
            public_key: ByteBuf::from(public(key)),
        }
    }

    #[test]
    fn a_direct_message_opens_for_the_contact_and_the_sender() {
        let (_tmp, pins) = store();
        let alice = me("alice", ALICE);
        let trust = Trust {
            me: &alice,
            pins: &pins,
        };
        let bob = contact("bob", BOB, ContactState::Contact);
        let message = direct(&trust, &bob, "hello", 1_234).expect("made");
        assert_eq!(message.sender, "alice");
        assert_eq!(message.sent_at_ms, 1_234);
        verify(&message, &public(ALICE)).expect("signed by alice");
        assert_eq!(
            open_direct(&message, "bob", pair(BOB)).expect("bob").text,
            "hello"
        );
        assert_eq!(
            open_direct(&message, "alice", pair(ALICE))
                .expect("alice")
                .text,
            "hello"
        );
        // Bob's key is pinned now.
        assert_eq!(
            pins.get("bob").expect("pins").map(|k| k.fingerprint),
            Some(pair(BOB).fingerprint())
        );
    }

    #[test]
    fn a_contact_whose_key_changed_is_refused_with_both_fingerprints() {
        let (_tmp, pins) = store();
        let alice = me("alice", ALICE);
        let trust = Trust {
            me: &alice,
            pins: &pins,
        };
        direct(
            &trust,
            &contact("bob", BOB, ContactState::Contact),
            "first",
            1,
        )
        .expect("first sight");
        let swapped = contact("bob", MALLORY, ContactState::Contact);
        let err = direct(&trust, &swapped, "second", 2).expect_err("changed key");
        let text = err.to_string();
        for needle in [
            pair(BOB).fingerprint(),
            pair(MALLORY).fingerprint(),
            format!("vault key verify bob {}", pair(MALLORY).fingerprint()),
            "Nothing was sent".to_owned(),
            "read your messages".to_owned(),
        ] {
            assert!(text.contains(&needle), "{needle:?} in {text}");
        }
        // The refusal changed nothing: bob's first key is still the trusted one.
        assert_eq!(
            pins.get("bob").expect("pins").map(|k| k.fingerprint),
            Some(pair(BOB).fingerprint())
        );
    }

    #[test]
    fn only_mutual_contacts_get_direct_messages_and_empty_text_is_refused() {
        let (_tmp, pins) = store();
        let alice = me("alice", ALICE);
        let trust = Trust {
            me: &alice,
            pins: &pins,
        };
        let asked = contact("bob", BOB, ContactState::RequestSent);
        let err = direct(&trust, &asked, "hi", 1).expect_err("not yet");
        assert!(err.to_string().contains("is not your contact yet"), "{err}");
        let asking = contact("bob", BOB, ContactState::RequestReceived);
        let err = direct(&trust, &asking, "hi", 1).expect_err("accept first");
        assert!(
            err.to_string().contains("vault contact accept bob"),
            "{err}"
        );
        assert!(
            not_a_contact("carol", None)
                .to_string()
                .contains("`vault contact add carol` and wait for them to accept")
        );
        let friend = contact("bob", BOB, ContactState::Contact);
        for empty in ["", "  \n"] {
            let err = direct(&trust, &friend, empty, 1).expect_err("empty");
            assert!(err.to_string().contains("the message is empty"), "{err}");
        }
        let err = check_text(&"x".repeat(MAX_TEXT_BYTES + 1)).expect_err("too long");
        assert!(err.to_string().contains("at most"), "{err}");
        check_text(&"x".repeat(MAX_TEXT_BYTES)).expect("at the limit");
        // Nothing was pinned by the refusals.
        assert!(pins.get("bob").expect("pins").is_none());
    }

    #[test]
    fn a_group_message_is_sealed_under_the_generation_in_force() {
        let (_tmp, pins) = store();
        let alice = me("alice", ALICE);
        let trust = Trust {
            me: &alice,
            pins: &pins,
        };
        let gk0 = Key32::from_bytes([1; 32]);
        let gk1 = Key32::from_bytes([2; 32]);
        let both = ring(&trust, ALICE, 9, Some(1), &[(0, &gk0), (1, &gk1)]);
        let message = group(&alice, &both, "hi team", 5).expect("made");
        assert_eq!((message.group_id, message.generation), (Some(9), Some(1)));
        assert_eq!(
            message.target,
            ChatTarget::Group {
                name: "team".into()
            }
        );
        verify(&message, &public(ALICE)).expect("signed");
        assert_eq!(open_group(&message, &gk1).expect("open").text, "hi team");
        // The key in force is not held yet, or there is none.
        let old_only = ring(&trust, ALICE, 9, Some(1), &[(0, &gk0)]);
        let err = group(&alice, &old_only, "hi", 5).expect_err("waiting");
        assert!(err.to_string().contains("do not hold its key yet"), "{err}");
        let none = ring(&trust, ALICE, 9, None, &[]);
        let err = group(&alice, &none, "hi", 5).expect_err("no key");
        assert!(err.to_string().contains("has no key yet"), "{err}");
    }
}
