//! Checking and opening the messages the server hands out (docs/FORMAT.md §9.1, client side). Every
//! message goes through the same steps before its text is shown:
//!
//! 1. the key that signed it (`ChatMessage.sender_key`) must be the one trusted for the
//!    sender ([`Trust::signer`]: the own key for the own name, the pin store for others,
//!    trust on first use);
//! 2. the signature must verify over the header (sender, recipient or group and key
//!    generation, time) and the ciphertext ([`chat::verify`]);
//! 3. a direct message must be to or from the caller and open with the key wrapped for
//!    them; a group message opens with the generation of the group key it names, fetched
//!    again once when the keys held lack it ([`Reader`]).
//!
//! A message that fails any step becomes [`Content::Refused`] with the reason: it is shown
//! as refused, never with text. A message that passes may carry a file ([`Received::file`],
//! fetched with [`super::fetch`]).

use std::collections::{HashMap, HashSet};

use vault_core::crypto::Key32;
use vault_core::format::chat::{self, FileRef, MessageBody};
use vault_core::proto::chat::{ChatMessage, ChatTarget, SealedMessage};

use crate::files::{Files, FilesError};
use crate::groups::keyring::{self, Keyring};
use crate::groups::{Me, Trust};

/// What a received message says, or why it is not shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// Checked and opened.
    Text(String),
    /// Failed a check; the reason, for people.
    Refused(String),
}

/// A message from the server after its checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The server's id (increasing in arrival order).
    pub id: i64,
    /// The sender named in the message (signed, so true whenever the content is text).
    pub from: String,
    pub target: ChatTarget,
    /// The sender's clock, Unix milliseconds (signed).
    pub sent_at_ms: i64,
    /// When the server stored it, Unix milliseconds.
    pub received_at_ms: i64,
    pub content: Content,
    /// The file the message carries (only when the content is text: checked and opened).
    pub file: Option<FileRef>,
}

impl Received {
    /// The text, if the message passed every check.
    pub fn text(&self) -> Option<&str> {
        match &self.content {
            Content::Text(text) => Some(text),
            Content::Refused(_) => None,
        }
    }
}

/// How the pin store's refusal of a signer begins; dropped, as the refusal is shown as such.
const WHAT: &str = "the message";

/// Steps 1 and 2: the sender's key is trusted for the sender and the signature verifies.
pub fn check(trust: &Trust<'_>, message: &ChatMessage) -> Result<(), String> {
    let sealed = &message.message;
    trust
        .signer(&sealed.sender, &message.sender_key, WHAT)
        .map_err(|e| {
            let text = e.to_string();
            match text.strip_prefix(&format!("{WHAT} was refused: ")) {
                Some(rest) => rest.to_owned(),
                None => text,
            }
        })?;
    chat::verify(sealed, &message.sender_key).map_err(|e| e.to_string())
}

/// Step 3 for a direct message (checked first): it must be to or from `me`.
pub fn open_direct(me: &Me, sealed: &SealedMessage) -> Result<MessageBody, String> {
    let ChatTarget::User { username } = &sealed.target else {
        return Err("it is not a direct message".into());
    };
    if sealed.sender != me.username() && username != me.username() {
        return Err(format!(
            "it is from {} to {username}, not to or from you",
            sealed.sender
        ));
    }
    chat::open_direct(sealed, me.username(), me.pair()).map_err(|e| e.to_string())
}

/// Step 3 for a group message (checked first), with the generation of the group key it
/// names.
pub fn open_group(sealed: &SealedMessage, group_key: &Key32) -> Result<MessageBody, String> {
    chat::open_group(sealed, group_key).map_err(|e| e.to_string())
}

/// Where a [`Reader`] gets a group's keys: the server (`&Files`), or a fixed set in tests.
pub trait KeySource {
    /// The caller's keys of group `name`, checked and opened.
    fn keyring(&self, name: &str) -> impl Future<Output = Result<Keyring, FilesError>>;
}

impl KeySource for &Files {
    async fn keyring(&self, name: &str) -> Result<Keyring, FilesError> {
        keyring::fetch(self, name).await
    }
}

/// Checks and opens messages, keeping the group keys it fetched for the next ones.
#[derive(Debug)]
pub struct Reader<'a, S> {
    trust: Trust<'a>,
    source: S,
    /// Keyrings by group id.
    rings: HashMap<i64, Keyring>,
    /// Group ids and generations whose keys were fetched after a message named them.
    fetched: HashSet<(i64, u32)>,
}

impl<'a> Reader<'a, &'a Files> {
    /// A reader for the logged-in user of `files`, fetching group keys from the server.
    pub fn new(files: &'a Files) -> Result<Self, FilesError> {
        let trust = Trust {
            me: files.me()?,
            pins: files.pins(),
        };
        Ok(Reader::with_source(trust, files))
    }
}

impl<'a, S: KeySource> Reader<'a, S> {
    /// A reader trusting what `trust` trusts and getting group keys from `source`.
    pub fn with_source(trust: Trust<'a>, source: S) -> Self {
        Reader {
            trust,
            source,
            rings: HashMap::new(),
            fetched: HashSet::new(),
        }
    }

    /// Checks and opens `message`. For a group message the keys are fetched under the group
    /// name the message carries (see [`Reader::read_in`]).
    pub async fn read(&mut self, message: &ChatMessage) -> Received {
        self.read_in(message, None).await
    }

    /// [`Reader::read`], fetching a group's keys under `group` (the name the caller asked
    /// for, which is current even if the message was sent before a rename) instead of the
    /// name in the message.
    pub async fn read_in(&mut self, message: &ChatMessage, group: Option<&str>) -> Received {
        let (content, file) = match self.open(message, group).await {
            Ok(body) => (Content::Text(body.text), body.file),
            Err(reason) => (Content::Refused(reason), None),
        };
        let sealed = &message.message;
        Received {
            id: message.id,
            from: sealed.sender.clone(),
            target: sealed.target.clone(),
            sent_at_ms: sealed.sent_at_ms,
            received_at_ms: message.received_at_ms,
            content,
            file,
        }
    }

    async fn open(
        &mut self,
        message: &ChatMessage,
        group: Option<&str>,
    ) -> Result<MessageBody, String> {
        check(&self.trust, message)?;
        let sealed = &message.message;
        let (name, group_id, generation) =
            match (&sealed.target, sealed.group_id, sealed.generation) {
                (ChatTarget::User { .. }, _, _) => return open_direct(self.trust.me, sealed),
                (ChatTarget::Group { name }, Some(id), Some(g)) => (group.unwrap_or(name), id, g),
                // The signature covers the header, which cannot be made without both.
                (ChatTarget::Group { .. }, _, _) => {
                    return Err("it names no group id or key generation".into());
                }
            };
        let key = self.group_key(name, group_id, generation).await?;
        open_group(sealed, &key)
    }

    /// Generation `generation` of the key of group `group_id`, whose name is `name`: from
    /// the keys held, else fetched (once per group and generation).
    async fn group_key(
        &mut self,
        name: &str,
        group_id: i64,
        generation: u32,
    ) -> Result<Key32, String> {
        let held = |rings: &HashMap<i64, Keyring>| {
            rings
                .get(&group_id)
                .and_then(|ring| ring.keys().get(&generation).cloned())
        };
        if let Some(key) = held(&self.rings) {
            return Ok(key);
        }
        if self.fetched.insert((group_id, generation)) {
            let ring = self
                .source
                .keyring(name)
                .await
                .map_err(|e| format!("the key of @{name} could not be fetched: {e}"))?;
            if ring.group_id != group_id {
                return Err(format!(
                    "it names group {group_id}, but @{name} is group {}",
                    ring.group_id
                ));
            }
            self.rings.insert(group_id, ring);
        }
        held(&self.rings).ok_or_else(|| {
            format!(
                "you do not hold generation {generation} of the key of @{name} (it arrives \
                 when another member's vault client next connects)"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use vault_core::format::chat::{MessageBody, seal_direct, seal_group};
    use vault_core::proto::ByteBuf;

    use std::cell::{Cell, RefCell};

    use super::*;
    use crate::chat::testing::ring;
    use crate::groups::testing::{me, pair, public, store};

    // Key pairs: 0 = bob (the caller), 1 = alice, 2 = mallory.
    const BOB: usize = 0;
    const ALICE: usize = 1;
    const MALLORY: usize = 2;

    fn body(text: &str) -> MessageBody {
        MessageBody::text(text)
    }

    /// A message as the server hands it out, with `signer`'s key as the sender key.
    fn stored(message: SealedMessage, signer: usize) -> ChatMessage {
        ChatMessage {
            id: 7,
            received_at_ms: 2_000,
            message,
            sender_key: ByteBuf::from(public(signer)),
        }
    }

    fn alice_to_bob(text: &str) -> SealedMessage {
        seal_direct(
            "alice",
            pair(ALICE),
            "bob",
            &public(BOB),
            1_000,
            &body(text),
        )
        .expect("seal")
    }

    /// Checks and opens `message` for bob as the reader does for a direct message.
    fn read(trust: &Trust<'_>, message: &ChatMessage) -> Result<String, String> {
        check(trust, message)?;
        open_direct(trust.me, &message.message).map(|body| body.text)
    }

    #[test]
    fn a_direct_message_opens_for_its_recipient_and_its_sender() {
        let (_tmp, pins) = store();
        let bob = me("bob", BOB);
        let trust = Trust {
            me: &bob,
            pins: &pins,
        };
        let message = stored(alice_to_bob("hi bob"), ALICE);
        assert_eq!(read(&trust, &message), Ok("hi bob".into()));
        // Alice's key was seen for the first time and is now pinned.
        assert!(pins.get("alice").expect("pins").is_some());
        // Alice reads her own message in her history.
        let (_tmp2, alice_pins) = store();
        let alice = me("alice", ALICE);
        let alice_trust = Trust {
            me: &alice,
            pins: &alice_pins,
        };
        assert_eq!(read(&alice_trust, &message), Ok("hi bob".into()));
    }

    #[test]
    fn a_tampered_message_is_refused_and_never_opened() {
        let (_tmp, pins) = store();
        let bob = me("bob", BOB);
        let trust = Trust {
            me: &bob,
            pins: &pins,
        };
        let good = alice_to_bob("pay 10");
        let mut flipped = good.clone();
        let mut ct = flipped.ciphertext.to_vec();
        ct[30] ^= 1;
        flipped.ciphertext = ByteBuf::from(ct);
        let mut later = good.clone();
        later.sent_at_ms += 60_000;
        let mut forged = good.clone();
        forged.sender = "carol".into();
        for (bad, why) in [(flipped, "ciphertext"), (later, "timestamp")] {
            let reason = read(&trust, &stored(bad, ALICE)).expect_err(why);
            assert!(
                reason.contains("signature of alice does not verify"),
                "{why}: {reason}"
            );
        }
        // Claimed to be from carol, with alice's key: carol's key is first seen here, but the
        // signature over "from=carol" does not verify.
        let reason = read(&trust, &stored(forged, ALICE)).expect_err("sender");
        assert!(
            reason.contains("signature of carol does not verify"),
            "{reason}"
        );
    }

    #[test]
    fn a_message_signed_by_another_key_than_the_pinned_one_is_refused() {
        let (_tmp, pins) = store();
        let bob = me("bob", BOB);
        let trust = Trust {
            me: &bob,
            pins: &pins,
        };
        pins.check_recipient("alice", &public(ALICE))
            .expect("alice pinned");
        // Mallory (or the server) signs a message as alice with a key of their own and hands
        // out that key as alice's.
        let forged = seal_direct(
            "alice",
            pair(MALLORY),
            "bob",
            &public(BOB),
            1_000,
            &body("hi"),
        )
        .expect("seal");
        let reason = read(&trust, &stored(forged.clone(), MALLORY)).expect_err("other key");
        assert!(
            reason.starts_with("it is signed by alice with the key"),
            "{reason}"
        );
        assert!(
            reason.contains(&pair(MALLORY).fingerprint())
                && reason.contains(&pair(ALICE).fingerprint())
                && reason.contains("vault key verify alice"),
            "{reason}"
        );
        // The pinned key as sender key, with mallory's signature.
        let reason = read(&trust, &stored(forged, ALICE)).expect_err("bad signature");
        assert!(reason.contains("does not verify"), "{reason}");
        // A message claiming to be from bob himself, signed by another key.
        let mine = seal_direct(
            "bob",
            pair(MALLORY),
            "alice",
            &public(ALICE),
            1_000,
            &body("x"),
        )
        .expect("seal");
        let reason = read(&trust, &stored(mine, MALLORY)).expect_err("not mine");
        assert!(reason.contains("claims to be signed by you"), "{reason}");
    }

    #[test]
    fn a_direct_message_between_others_is_refused() {
        let (_tmp, pins) = store();
        let bob = me("bob", BOB);
        let trust = Trust {
            me: &bob,
            pins: &pins,
        };
        let other = seal_direct(
            "alice",
            pair(ALICE),
            "mallory",
            &public(MALLORY),
            1_000,
            &body("not for bob"),
        )
        .expect("seal");
        let reason = read(&trust, &stored(other, ALICE)).expect_err("not bob's");
        assert!(reason.contains("not to or from you"), "{reason}");
    }

    #[test]
    fn group_messages_open_with_the_generation_they_name_even_an_old_one() {
        let (_tmp, pins) = store();
        let bob = me("bob", BOB);
        let trust = Trust {
            me: &bob,
            pins: &pins,
        };
        let gk0 = Key32::from_bytes([3; 32]);
        let gk1 = Key32::from_bytes([4; 32]);
        let old = seal_group(
            "alice",
            pair(ALICE),
            ("team", 5),
            (0, &gk0),
            1_000,
            &body("old"),
        )
        .expect("seal");
        let new = seal_group(
            "alice",
            pair(ALICE),
            ("team", 5),
            (1, &gk1),
            2_000,
            &body("new"),
        )
        .expect("seal");
        for (message, key, text) in [(&old, &gk0, "old"), (&new, &gk1, "new")] {
            check(&trust, &stored(message.clone(), ALICE)).expect("verifies");
            assert_eq!(open_group(message, key), Ok(MessageBody::text(text)));
        }
        let reason = open_group(&old, &gk1).expect_err("another generation");
        assert!(reason.contains("does not decrypt"), "{reason}");
        // Relabelled as generation 1 by the server: the signature no longer verifies.
        let mut relabelled = old;
        relabelled.generation = Some(1);
        assert!(check(&trust, &stored(relabelled, ALICE)).is_err());
    }

    /// Group keys as the server would hand them out: the generations in `held` (changed by
    /// the test to model a rotation), counting the fetches.
    struct Fixed<'t> {
        trust: Trust<'t>,
        group_id: i64,
        current: Cell<u32>,
        held: RefCell<Vec<(u32, Key32)>>,
        fetches: Cell<usize>,
    }

    impl KeySource for &Fixed<'_> {
        async fn keyring(&self, name: &str) -> Result<Keyring, FilesError> {
            assert_eq!(name, "team");
            self.fetches.set(self.fetches.get() + 1);
            let held = self.held.borrow();
            let held: Vec<(u32, &Key32)> = held.iter().map(|(g, k)| (*g, k)).collect();
            Ok(ring(
                &self.trust,
                BOB,
                self.group_id,
                Some(self.current.get()),
                &held,
            ))
        }
    }

    fn team_message(generation: u32, key: &Key32, group_id: i64, text: &str) -> ChatMessage {
        let sealed = seal_group(
            "alice",
            pair(ALICE),
            ("team", group_id),
            (generation, key),
            1_000,
            &body(text),
        )
        .expect("seal");
        stored(sealed, ALICE)
    }

    #[tokio::test]
    async fn the_reader_shows_a_tampered_message_as_refused_without_text() {
        let (_tmp, pins) = store();
        let bob = me("bob", BOB);
        let trust = Trust {
            me: &bob,
            pins: &pins,
        };
        let keys = Fixed {
            trust,
            group_id: 5,
            current: Cell::new(0),
            held: RefCell::new(Vec::new()),
            fetches: Cell::new(0),
        };
        let mut reader = Reader::with_source(trust, &keys);
        let good = reader.read(&stored(alice_to_bob("hi"), ALICE)).await;
        assert_eq!(good.text(), Some("hi"));
        assert_eq!((good.id, good.from.as_str()), (7, "alice"));
        let mut bad = alice_to_bob("pay 10");
        bad.sent_at_ms += 1;
        let refused = reader.read(&stored(bad, ALICE)).await;
        assert_eq!(refused.text(), None);
        assert!(
            matches!(&refused.content, Content::Refused(r) if r.contains("does not verify")),
            "{refused:?}"
        );
        // A forged group message is refused before any key is fetched.
        let mut forged = team_message(0, &Key32::from_bytes([1; 32]), 5, "x");
        forged.message.sender = "carol".into();
        assert_eq!(reader.read(&forged).await.text(), None);
        assert_eq!(keys.fetches.get(), 0);
    }

    #[tokio::test]
    async fn the_reader_opens_old_generations_and_fetches_a_missing_one_once() {
        let (_tmp, pins) = store();
        let bob = me("bob", BOB);
        let trust = Trust {
            me: &bob,
            pins: &pins,
        };
        let gk0 = Key32::from_bytes([1; 32]);
        let gk1 = Key32::from_bytes([2; 32]);
        let gk2 = Key32::from_bytes([3; 32]);
        let keys = Fixed {
            trust,
            group_id: 5,
            current: Cell::new(1),
            held: RefCell::new(vec![(0, gk0.clone()), (1, gk1.clone())]),
            fetches: Cell::new(0),
        };
        let mut reader = Reader::with_source(trust, &keys);
        let old = reader.read(&team_message(0, &gk0, 5, "old")).await;
        assert_eq!(old.text(), Some("old"));
        let current = reader.read(&team_message(1, &gk1, 5, "current")).await;
        assert_eq!(current.text(), Some("current"));
        assert_eq!(keys.fetches.get(), 1, "one fetch for both");
        // The key was rotated after the keys were fetched: fetched again, once.
        keys.current.set(2);
        keys.held.borrow_mut().push((2, gk2.clone()));
        let rotated = reader.read(&team_message(2, &gk2, 5, "rotated")).await;
        assert_eq!(rotated.text(), Some("rotated"));
        assert_eq!(keys.fetches.get(), 2);
        // A generation the caller never got: fetched once more, then refused without asking
        // again for every message.
        let gk3 = Key32::from_bytes([4; 32]);
        for _ in 0..2 {
            let missing = reader.read(&team_message(3, &gk3, 5, "later")).await;
            assert!(
                matches!(&missing.content, Content::Refused(r) if r.contains("generation 3")),
                "{missing:?}"
            );
        }
        assert_eq!(keys.fetches.get(), 3);
        // A message naming another group id than the one the name stands for.
        let elsewhere = reader.read(&team_message(0, &gk0, 6, "moved")).await;
        assert!(
            matches!(&elsewhere.content, Content::Refused(r) if r.contains("is group 5")),
            "{elsewhere:?}"
        );
    }
}
