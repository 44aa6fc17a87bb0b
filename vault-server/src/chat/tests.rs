//! Handler-level tests of chat: a temp SQLite database (or a fresh PostgreSQL one with
//! `VAULT_TEST_POSTGRES_URL`), driven through the chat and group dispatchers without QUIC.
//! Subscriptions run [`subscribe::serve`] on one end of an in-memory pipe; the tests read
//! the frames from the other end. Messages are arbitrary bytes: the server never opens
//! them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use tokio::io::{AsyncReadExt, DuplexStream};
use vault_proto::proto::{
    ApiError, Attachment, ByteBuf, ChatMessage, ChatTarget, ContactInfo, ContactState,
    Conversation, EntryInfo, ErrorCode, Event, NewEnvelope, NsRef, Request, Response, Rotation,
    SealedMessage, WrappedMessageKey,
};

use super::{files, now_ms, subscribe};
use crate::accounts::session_refusal;
use crate::config::Config;
use crate::db;
use crate::db::schema::{chat_attachments, chat_deliveries, chat_messages, contacts, profiles};
use crate::groups::Caller;
use crate::maintenance::stats::message_stats;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

use crate::testing::{self, R};

const USERS: &[&str] = &["alice", "bob", "carol", "dave", "erin"];

struct Fixture {
    _dir: tempfile::TempDir,
    state: Arc<ServerState>,
    users: HashMap<String, SessionCtx>,
}

fn fixture() -> R<Fixture> {
    fixture_with(|_| {})
}

fn fixture_with(adjust: impl FnOnce(&mut Config)) -> R<Fixture> {
    let dir = tempfile::tempdir()?;
    let state = Arc::new(testing::state(&dir, "chat", adjust, |s| Arc::new(s))?);
    let mut f = Fixture {
        _dir: dir,
        state,
        users: HashMap::new(),
    };
    for (i, name) in USERS.iter().enumerate() {
        f.add_user(name, i as u8 + 1)?;
    }
    Ok(f)
}

fn err<T: std::fmt::Debug>(r: Result<T, ApiError>) -> ApiError {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

fn user(name: &str) -> ChatTarget {
    ChatTarget::User {
        username: name.into(),
    }
}

fn group(name: &str) -> ChatTarget {
    ChatTarget::Group { name: name.into() }
}

/// A direct message as a client would make it (the bytes say who wrote what).
fn direct(from: &str, to: &str, text: &str) -> SealedMessage {
    let key = |member: &str| WrappedMessageKey {
        member: member.into(),
        wrapped: ByteBuf::from(format!("key for {member}").into_bytes()),
    };
    SealedMessage {
        sender: from.into(),
        target: user(to),
        group_id: None,
        generation: None,
        sent_at_ms: now_ms(),
        ciphertext: ByteBuf::from(format!("sealed {text}").into_bytes()),
        keys: vec![key(to), key(from)],
        signature: ByteBuf::from(format!("signature of {from}").into_bytes()),
        attachment: None,
    }
}

fn to_group(from: &str, name: &str, id: i64, generation: u32, text: &str) -> SealedMessage {
    SealedMessage {
        sender: from.into(),
        target: group(name),
        group_id: Some(id),
        generation: Some(generation),
        sent_at_ms: now_ms(),
        ciphertext: ByteBuf::from(format!("sealed {text}").into_bytes()),
        keys: Vec::new(),
        signature: ByteBuf::from(format!("signature of {from}").into_bytes()),
        attachment: None,
    }
}

fn envelope(member: &str, generation: u32) -> NewEnvelope {
    NewEnvelope {
        member: member.into(),
        generation,
        envelope: format!("envelope {member} {generation}")
            .into_bytes()
            .into(),
        signature: b"signature".to_vec().into(),
    }
}

/// The texts of messages (from the ciphertexts `direct` and `to_group` make).
fn texts(messages: &[ChatMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            String::from_utf8_lossy(&m.message.ciphertext)
                .trim_start_matches("sealed ")
                .to_owned()
        })
        .collect()
}

impl Fixture {
    fn add_user(&mut self, name: &str, seed: u8) -> R<()> {
        let mut conn = self.state.db.conn()?;
        let session = testing::add_user_with_session(&mut conn, name, &[seed; 24], 100 << 20)?;
        self.users.insert(name.to_owned(), session);
        Ok(())
    }

    fn who(&self, name: &str) -> &SessionCtx {
        self.users
            .get(name)
            .unwrap_or_else(|| panic!("no test user {name}"))
    }

    fn id(&self, name: &str) -> i64 {
        self.who(name).user_id
    }

    /// A one-frame request of `who`, through the router, after the check
    /// `router::require_session` makes (an ended session is refused).
    async fn call(&self, who: &str, request: Request) -> Result<Response, ApiError> {
        let session = self.who(who);
        if let Some(refusal) = session_refusal(&self.state, session.session_id).await? {
            return Err(refusal);
        }
        let caller = Caller {
            session: session.clone(),
            ip: "127.0.0.1".into(),
        };
        crate::router::serve_session(&self.state, &caller, request).await
    }

    async fn ok(&self, who: &str, request: Request) -> R<Response> {
        Ok(self.call(who, request).await?)
    }

    async fn add(&self, who: &str, other: &str) -> Result<Response, ApiError> {
        let username = other.into();
        self.call(who, Request::ContactAdd { username }).await
    }

    async fn accept(&self, who: &str, other: &str) -> Result<Response, ApiError> {
        let username = other.into();
        self.call(who, Request::ContactAccept { username }).await
    }

    async fn befriend(&self, a: &str, b: &str) -> R<()> {
        self.add(a, b).await?;
        self.accept(b, a).await?;
        Ok(())
    }

    async fn contacts(&self, who: &str) -> R<Vec<ContactInfo>> {
        match self.ok(who, Request::ContactList).await? {
            Response::Contacts { contacts } => Ok(contacts),
            other => Err(format!("unexpected {other:?}").into()),
        }
    }

    /// `who`'s view of their relationships, as (username, state).
    async fn states(&self, who: &str) -> R<Vec<(String, ContactState)>> {
        Ok(self
            .contacts(who)
            .await?
            .into_iter()
            .map(|c| (c.username, c.state))
            .collect())
    }

    async fn send(&self, who: &str, message: SealedMessage) -> Result<i64, ApiError> {
        match self.call(who, Request::ChatSend { message }).await? {
            Response::ChatSent { id, .. } => Ok(id),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn history(
        &self,
        who: &str,
        target: ChatTarget,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<ChatMessage>, ApiError> {
        let request = Request::ChatHistory {
            target,
            limit,
            before,
        };
        match self.call(who, request).await? {
            Response::ChatMessages { messages } => Ok(messages),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn inbox(&self, who: &str) -> R<Vec<Conversation>> {
        match self.ok(who, Request::ChatInbox).await? {
            Response::Inbox { conversations } => Ok(conversations),
            other => Err(format!("unexpected {other:?}").into()),
        }
    }

    /// Creates group `name` owned by `owner` with a key (generation 0) and `members`.
    async fn team(&self, owner: &str, name: &str, members: &[&str]) -> R<i64> {
        let id = match self
            .ok(owner, Request::GroupCreate { name: name.into() })
            .await?
        {
            Response::GroupCreated { group_id, .. } => group_id,
            other => return Err(format!("unexpected {other:?}").into()),
        };
        let rotation = Rotation {
            generation: 0,
            envelopes: vec![envelope(owner, 0)],
        };
        self.ok(
            owner,
            Request::GroupRotate {
                group: name.into(),
                rotation,
            },
        )
        .await?;
        for m in members {
            self.ok(
                owner,
                Request::GroupAdd {
                    group: name.into(),
                    username: (*m).into(),
                    envelopes: vec![envelope(m, 0)],
                },
            )
            .await?;
        }
        Ok(id)
    }

    /// (messages, deliveries) stored.
    fn stored(&self) -> R<(i64, i64)> {
        let mut conn = self.state.db.conn()?;
        let messages = chat_messages::table.count().get_result(&mut *conn)?;
        let deliveries = chat_deliveries::table.count().get_result(&mut *conn)?;
        Ok((messages, deliveries))
    }

    /// Starts a subscription of `who` on an in-memory pipe.
    fn subscribe(&self, who: &str) -> Sub {
        let (writer, reader) = tokio::io::duplex(1 << 20);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::clone(&self.state);
        let session = self.who(who).clone();
        let task = tokio::spawn(async move {
            let mut writer = writer;
            let ended = async {
                let _ = stopped.await;
            };
            subscribe::serve(&state, &session, &mut writer, ended, || true).await
        });
        Sub {
            reader,
            stop: Some(stop),
            task,
        }
    }
}

/// A running subscription: read its frames, stop it.
struct Sub {
    reader: DuplexStream,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<subscribe::Ended, ApiError>>,
}

impl Sub {
    /// The next frame, or `None` if none comes within `wait`.
    async fn frame(&mut self, wait: Duration) -> R<Option<Response>> {
        let read = async {
            let mut header = [0u8; 4];
            self.reader.read_exact(&mut header).await?;
            let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
            self.reader.read_exact(&mut body).await?;
            Ok::<_, std::io::Error>(body)
        };
        match tokio::time::timeout(wait, read).await {
            Ok(body) => Ok(Some(vault_proto::proto::decode_body(&body?)?)),
            Err(_) => Ok(None),
        }
    }

    async fn event(&mut self) -> R<Event> {
        match self.frame(Duration::from_secs(5)).await? {
            Some(Response::Event(e)) => Ok(e),
            other => Err(format!("expected an event, got {other:?}").into()),
        }
    }

    async fn message(&mut self) -> R<ChatMessage> {
        match self.event().await? {
            Event::Message(m) => Ok(m),
            other => Err(format!("expected a message, got {other:?}").into()),
        }
    }

    async fn subscribed(&mut self) -> R<()> {
        match self.frame(Duration::from_secs(5)).await? {
            Some(Response::Subscribed) => Ok(()),
            other => Err(format!("expected subscribed, got {other:?}").into()),
        }
    }

    /// Asserts that nothing comes for a while.
    async fn quiet(&mut self, wait: Duration) -> R<()> {
        match self.frame(wait).await? {
            None => Ok(()),
            Some(other) => Err(format!("expected nothing, got {other:?}").into()),
        }
    }

    async fn stop(mut self) -> R<subscribe::Ended> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        Ok(self.task.await??)
    }
}

#[tokio::test]
async fn contacts_are_asked_accepted_rejected_and_removed_on_both_sides() -> R<()> {
    let f = fixture()?;
    use ContactState::{Contact, RequestReceived, RequestSent};
    let pair = |name: &str, s| vec![(name.to_owned(), s)];

    f.add("alice", "bob").await?;
    assert_eq!(f.states("alice").await?, pair("bob", RequestSent));
    assert_eq!(f.states("bob").await?, pair("alice", RequestReceived));
    // Asking again changes nothing; accepting one's own request is not possible.
    f.add("alice", "bob").await?;
    let e = err(f.accept("alice", "bob").await);
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.message.contains("no contact request from bob"), "{e}");
    f.accept("bob", "alice").await?;
    assert_eq!(f.states("alice").await?, pair("bob", Contact));
    assert_eq!(f.states("bob").await?, pair("alice", Contact));
    let e = err(f.add("bob", "alice").await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("alice is already your contact"), "{e}");

    // A rejected request leaves nothing on either side.
    f.add("carol", "alice").await?;
    f.call(
        "alice",
        Request::ContactReject {
            username: "carol".into(),
        },
    )
    .await?;
    assert!(f.states("carol").await?.is_empty());
    assert_eq!(f.states("alice").await?, pair("bob", Contact));

    // Adding someone who asked first makes a mutual contact at once.
    f.add("dave", "erin").await?;
    f.add("erin", "dave").await?;
    assert_eq!(f.states("dave").await?, pair("erin", Contact));
    assert_eq!(f.states("erin").await?, pair("dave", Contact));

    // Either side removes, in any state; both rows go.
    f.call(
        "bob",
        Request::ContactRemove {
            username: "alice".into(),
        },
    )
    .await?;
    assert!(f.states("alice").await?.is_empty());
    assert!(f.states("bob").await?.is_empty());
    f.add("carol", "dave").await?;
    f.call(
        "dave",
        Request::ContactRemove {
            username: "carol".into(),
        },
    )
    .await?;
    assert!(f.states("carol").await?.is_empty());
    let e = err(f
        .call(
            "dave",
            Request::ContactRemove {
                username: "carol".into(),
            },
        )
        .await);
    assert_eq!(e.code, ErrorCode::NotFound);

    // Unknown users, oneself, and names that cannot be usernames.
    let e = err(f.add("alice", "nobody").await);
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.message.contains("no user named nobody"), "{e}");
    assert_eq!(
        err(f.add("alice", "alice").await).code,
        ErrorCode::BadRequest
    );
    assert_eq!(err(f.add("alice", "a;b").await).code, ErrorCode::BadRequest);
    // Names are case-folded.
    f.add("alice", "BOB").await?;
    assert_eq!(f.states("bob").await?, pair("alice", RequestReceived));
    Ok(())
}

#[tokio::test]
async fn the_contact_list_shows_names_keys_and_presence_of_mutual_contacts_only() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    f.add("alice", "carol").await?;
    for (who, name) in [("bob", "Bob B."), ("carol", "  Carol  ")] {
        f.ok(
            who,
            Request::ProfileSet {
                display_name: Some(name.into()),
            },
        )
        .await?;
    }
    let mut bob_sub = f.subscribe("bob");
    bob_sub.subscribed().await?;
    let mut carol_sub = f.subscribe("carol");
    carol_sub.subscribed().await?;
    let list = f.contacts("alice").await?;
    assert_eq!(list.len(), 2);
    let (bob, carol) = (&list[0], &list[1]);
    assert_eq!(bob.username, "bob");
    assert_eq!(bob.display_name.as_deref(), Some("Bob B."));
    assert!(bob.online);
    assert!(bob.last_seen.is_some());
    assert_eq!(bob.public_key.as_ref(), &[2u8; 24]);
    assert_eq!(carol.display_name.as_deref(), Some("Carol"));
    assert_eq!(carol.state, ContactState::RequestSent);
    assert!(!carol.online, "presence is for mutual contacts only");
    assert_eq!(carol.last_seen, None);
    bob_sub.stop().await?;
    carol_sub.stop().await?;
    assert!(!f.contacts("alice").await?[0].online);

    // Clearing the name; bad names are refused.
    f.ok("bob", Request::ProfileSet { display_name: None })
        .await?;
    assert_eq!(f.contacts("alice").await?[0].display_name, None);
    let e = err(f
        .call(
            "bob",
            Request::ProfileSet {
                display_name: Some("a\nb".into()),
            },
        )
        .await);
    assert_eq!(e.code, ErrorCode::BadRequest);
    Ok(())
}

#[tokio::test]
async fn direct_messages_are_refused_with_nothing_stored() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    f.add("alice", "carol").await?;

    let refused = |e: ApiError, code: ErrorCode, says: &str| {
        assert_eq!(e.code, code, "{e}");
        assert!(e.message.contains(says), "{e}");
    };
    refused(
        err(f.send("alice", direct("alice", "dave", "hi")).await),
        ErrorCode::Forbidden,
        "dave is not your contact: `vault contact add dave`",
    );
    refused(
        err(f.send("alice", direct("alice", "carol", "hi")).await),
        ErrorCode::Forbidden,
        "carol is not your contact",
    );
    refused(
        err(f.send("carol", direct("carol", "alice", "hi")).await),
        ErrorCode::Forbidden,
        "alice is not your contact",
    );
    refused(
        err(f.send("alice", direct("alice", "nobody", "hi")).await),
        ErrorCode::NotFound,
        "no user named nobody",
    );
    refused(
        err(f.send("alice", direct("bob", "alice", "hi")).await),
        ErrorCode::BadRequest,
        "names sender bob but you are logged in as alice",
    );
    let mut m = direct("alice", "bob", "hi");
    m.keys.pop();
    refused(
        err(f.send("alice", m).await),
        ErrorCode::BadRequest,
        "exactly two readers",
    );
    let mut m = direct("alice", "bob", "hi");
    m.sent_at_ms -= 11 * 60 * 1000;
    refused(
        err(f.send("alice", m).await),
        ErrorCode::BadRequest,
        "behind the server's clock",
    );
    let mut m = direct("alice", "bob", "hi");
    m.ciphertext = ByteBuf::from(vec![0; 65536 + 257]);
    refused(
        err(f.send("alice", m).await),
        ErrorCode::TooLarge,
        "messages have at most 65536 bytes of text",
    );
    // The largest allowed passes.
    let mut m = direct("alice", "bob", "hi");
    m.ciphertext = ByteBuf::from(vec![0; 65536 + 256]);
    f.send("alice", m).await?;
    assert_eq!(f.stored()?, (1, 2));
    Ok(())
}

#[tokio::test]
async fn a_flood_is_throttled_with_nothing_stored() -> R<()> {
    let f = fixture_with(|c| c.chat.messages_per_minute = 3)?;
    f.befriend("alice", "bob").await?;
    for i in 0..3 {
        f.send("alice", direct("alice", "bob", &format!("m{i}")))
            .await?;
    }
    let e = err(f.send("alice", direct("alice", "bob", "m3")).await);
    assert_eq!(e.code, ErrorCode::Throttled { retry_after_s: 20 });
    assert_eq!(e.message, "too many messages: wait 20 s");
    assert_eq!(f.stored()?, (3, 6));
    // Others are not held back.
    f.send("bob", direct("bob", "alice", "hello")).await?;
    Ok(())
}

#[tokio::test]
async fn group_messages_need_membership_and_the_key_in_force() -> R<()> {
    let f = fixture()?;
    let id = f.team("alice", "team", &["bob", "carol"]).await?;
    let sent = f
        .send("bob", to_group("bob", "team", id, 0, "hello"))
        .await?;
    // One delivery per member; the sender's is read and delivered.
    let mut conn = f.state.db.conn()?;
    let rows: Vec<(i64, bool, bool)> = chat_deliveries::table
        .filter(chat_deliveries::message_id.eq(sent))
        .order(chat_deliveries::user_id.asc())
        .select((
            chat_deliveries::user_id,
            chat_deliveries::delivered,
            chat_deliveries::read,
        ))
        .load(&mut *conn)?;
    drop(conn);
    assert_eq!(
        rows,
        [
            (f.id("alice"), false, false),
            (f.id("bob"), true, true),
            (f.id("carol"), false, false)
        ]
    );
    assert_eq!(f.stored()?, (1, 3));

    let e = err(f.send("dave", to_group("dave", "team", id, 0, "x")).await);
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert_eq!(e.message, "you are not a member of group team");
    let e = err(f.send("bob", to_group("bob", "nope", id, 0, "x")).await);
    assert_eq!(e.code, ErrorCode::NotFound);
    let e = err(f
        .send("bob", to_group("bob", "team", id + 100, 0, "x"))
        .await);
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(
        e.message.contains(&format!("group team has id {id}")),
        "{e}"
    );
    let e = err(f.send("bob", to_group("bob", "team", id, 1, "x")).await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert_eq!(e.message, "the key of group team changed; send again");

    // A removed member is refused at once; the key moves on and old generations are stale.
    let rotation = Rotation {
        generation: 1,
        envelopes: vec![envelope("alice", 1), envelope("bob", 1)],
    };
    f.ok(
        "alice",
        Request::GroupRemove {
            group: "team".into(),
            username: "carol".into(),
            rotation: Some(rotation),
        },
    )
    .await?;
    let e = err(f.send("carol", to_group("carol", "team", id, 1, "x")).await);
    assert_eq!(e.code, ErrorCode::Forbidden);
    let e = err(f.send("bob", to_group("bob", "team", id, 0, "x")).await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert_eq!(f.stored()?, (1, 3));
    f.send("bob", to_group("bob", "team", id, 1, "again"))
        .await?;
    assert_eq!(f.stored()?, (2, 5));
    // The removed member's history of the group is closed to them.
    let e = err(f.history("carol", group("team"), 10, None).await);
    assert_eq!(e.code, ErrorCode::Forbidden);
    Ok(())
}

#[tokio::test]
async fn history_is_newest_first_in_pages_and_marks_read() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (from, to) = if i % 2 == 0 {
            ("alice", "bob")
        } else {
            ("bob", "alice")
        };
        ids.push(f.send(from, direct(from, to, &format!("m{i}"))).await?);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let page = f.history("bob", user("alice"), 2, None).await?;
    assert_eq!(texts(&page), ["m4", "m3"]);
    assert_eq!(page[0].message.sender, "alice");
    assert_eq!(page[0].sender_key.as_ref(), &[1u8; 24]);
    assert_eq!(page[0].id, ids[4]);
    let page = f.history("bob", user("alice"), 2, Some(page[1].id)).await?;
    assert_eq!(texts(&page), ["m2", "m1"]);
    // Bob read m4, m3 (his own), m2: one unread (m0) left for him; alice has read none.
    let inbox = f.inbox("bob").await?;
    assert_eq!(inbox[0].unread, 1);
    assert_eq!(f.inbox("alice").await?[0].unread, 2);
    let page = f.history("bob", user("alice"), 500, Some(ids[1])).await?;
    assert_eq!(texts(&page), ["m0"]);
    assert_eq!(f.inbox("bob").await?[0].unread, 0);
    // The message is stored as it came.
    let all = f.history("alice", user("bob"), 10, None).await?;
    assert_eq!(all.len(), 5);
    let mut want = direct("alice", "bob", "m0");
    want.sent_at_ms = all[4].message.sent_at_ms;
    assert_eq!(all[4].message, want);

    // Paging limits, and who may read what.
    for limit in [0, 501] {
        let e = err(f.history("bob", user("alice"), limit, None).await);
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("1 to 500"), "{e}");
    }
    assert!(
        f.history("carol", user("alice"), 10, None)
            .await?
            .is_empty()
    );
    let e = err(f.history("bob", user("nobody"), 10, None).await);
    assert_eq!(e.code, ErrorCode::NotFound);
    // A direct conversation stays readable after the contact ends.
    f.call(
        "alice",
        Request::ContactRemove {
            username: "bob".into(),
        },
    )
    .await?;
    assert_eq!(f.history("bob", user("alice"), 10, None).await?.len(), 5);
    Ok(())
}

#[tokio::test]
async fn the_inbox_counts_unread_and_puts_the_newest_conversation_first() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    f.befriend("alice", "carol").await?;
    let id = f.team("dave", "team", &["alice"]).await?;
    f.send("bob", direct("bob", "alice", "b1")).await?;
    f.send("bob", direct("bob", "alice", "b2")).await?;
    let c1 = f.send("carol", direct("carol", "alice", "c1")).await?;
    let t1 = f
        .send("dave", to_group("dave", "team", id, 0, "t1"))
        .await?;
    let a1 = f.send("alice", direct("alice", "bob", "a1")).await?;
    let inbox = f.inbox("alice").await?;
    let view: Vec<(ChatTarget, i64, u64)> = inbox
        .iter()
        .map(|c| (c.target.clone(), c.last_id, c.unread))
        .collect();
    assert_eq!(
        view,
        [
            (user("bob"), a1, 2),
            (group("team"), t1, 1),
            (user("carol"), c1, 1)
        ]
    );
    assert!(inbox.iter().all(|c| c.last_received_at_ms > 0));
    // Reading one conversation clears its count only; a renamed group shows its new name.
    f.history("alice", user("bob"), 10, None).await?;
    f.ok(
        "dave",
        Request::GroupRename {
            group: "team".into(),
            new_name: "crew".into(),
        },
    )
    .await?;
    let unread: Vec<(ChatTarget, u64)> = f
        .inbox("alice")
        .await?
        .into_iter()
        .map(|c| (c.target, c.unread))
        .collect();
    assert_eq!(
        unread,
        [(user("bob"), 0), (group("crew"), 1), (user("carol"), 1)]
    );
    assert!(f.inbox("erin").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_subscriber_gets_the_backlog_first_then_new_messages_at_once() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    let first = f
        .send("alice", direct("alice", "bob", "while away 1"))
        .await?;
    f.send("alice", direct("alice", "bob", "while away 2"))
        .await?;

    let mut bob = f.subscribe("bob");
    bob.subscribed().await?;
    let m = bob.message().await?;
    assert_eq!(m.id, first);
    assert_eq!(m.message.sender, "alice");
    assert_eq!(m.sender_key.as_ref(), &[1u8; 24]);
    assert_eq!(
        texts(&[m, bob.message().await?]),
        ["while away 1", "while away 2"]
    );
    bob.quiet(Duration::from_millis(100)).await?;

    // A new message arrives well before the 2-second poll: the hub woke the subscription.
    let sent_at = std::time::Instant::now();
    let id = f.send("alice", direct("alice", "bob", "live")).await?;
    let m = bob.message().await?;
    assert!(
        sent_at.elapsed() < Duration::from_millis(1000),
        "{:?}",
        sent_at.elapsed()
    );
    assert_eq!(m.id, id);
    assert_eq!(bob.stop().await?, subscribe::Ended::Closed);

    // What a subscription carried is not carried again; a new one gets only what is new.
    let mut bob = f.subscribe("bob");
    bob.subscribed().await?;
    bob.quiet(Duration::from_millis(200)).await?;
    f.send("alice", direct("alice", "bob", "next")).await?;
    assert_eq!(texts(&[bob.message().await?]), ["next"]);
    bob.stop().await?;
    Ok(())
}

#[tokio::test]
async fn every_subscription_of_a_user_gets_every_message() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    let mut sender = f.subscribe("alice");
    sender.subscribed().await?;
    let mut one = f.subscribe("bob");
    let mut two = f.subscribe("bob");
    for s in [&mut one, &mut two] {
        s.subscribed().await?;
    }
    assert!(matches!(
        sender.event().await?,
        Event::Presence { online: true, .. }
    ));
    for i in 0..3 {
        f.send("alice", direct("alice", "bob", &format!("m{i}")))
            .await?;
    }
    for s in [&mut one, &mut two] {
        let got = [s.message().await?, s.message().await?, s.message().await?];
        assert_eq!(texts(&got), ["m0", "m1", "m2"]);
    }
    // The sender's own subscriptions see what they sent (from another session, too).
    assert_eq!(texts(&[sender.message().await?]), ["m0"]);
    for s in [one, two, sender] {
        s.stop().await?;
    }
    let mut conn = f.state.db.conn()?;
    let undelivered: i64 = chat_deliveries::table
        .filter(chat_deliveries::delivered.eq(false))
        .count()
        .get_result(&mut *conn)?;
    assert_eq!(undelivered, 0);
    Ok(())
}

#[tokio::test]
async fn group_messages_reach_every_subscribed_member() -> R<()> {
    let f = fixture()?;
    let id = f.team("alice", "team", &["bob", "carol"]).await?;
    let mut subs = Vec::new();
    for who in ["alice", "bob", "carol", "dave"] {
        let mut s = f.subscribe(who);
        s.subscribed().await?;
        subs.push(s);
    }
    f.send("alice", to_group("alice", "team", id, 0, "to all"))
        .await?;
    for s in subs.iter_mut().take(3) {
        let m = s.message().await?;
        assert_eq!(m.message.target, group("team"));
        assert_eq!(m.message.group_id, Some(id));
    }
    subs[3].quiet(Duration::from_millis(300)).await?;
    for s in subs {
        s.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn presence_and_contact_events_go_to_the_right_people() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    f.add("carol", "alice").await?;
    let mut alice = f.subscribe("alice");
    alice.subscribed().await?;
    let mut carol = f.subscribe("carol");
    carol.subscribed().await?;

    // Bob comes online: alice (mutual) hears it, carol (a request only) does not.
    let mut bob = f.subscribe("bob");
    bob.subscribed().await?;
    match alice.event().await? {
        Event::Presence {
            username,
            online: true,
            last_seen: None,
        } => assert_eq!(username, "bob"),
        other => return Err(format!("unexpected {other:?}").into()),
    }
    // A second subscription of bob's is no news.
    let mut bob2 = f.subscribe("bob");
    bob2.subscribed().await?;
    alice.quiet(Duration::from_millis(200)).await?;
    bob2.stop().await?;
    alice.quiet(Duration::from_millis(200)).await?;
    bob.stop().await?;
    match alice.event().await? {
        Event::Presence {
            username,
            online: false,
            last_seen: Some(_),
        } => assert_eq!(username, "bob"),
        other => return Err(format!("unexpected {other:?}").into()),
    }
    carol.quiet(Duration::from_millis(200)).await?;

    // Requests and answers reach the other side.
    f.add("dave", "alice").await?;
    assert_eq!(
        alice.event().await?,
        Event::ContactRequest {
            from: "dave".into()
        }
    );
    f.accept("alice", "carol").await?;
    assert_eq!(
        carol.event().await?,
        Event::ContactChanged {
            username: "alice".into(),
            state: Some(ContactState::Contact)
        }
    );
    // New mutual contacts learn that the other is online.
    assert_eq!(
        carol.event().await?,
        Event::Presence {
            username: "alice".into(),
            online: true,
            last_seen: None
        }
    );
    assert_eq!(
        alice.event().await?,
        Event::Presence {
            username: "carol".into(),
            online: true,
            last_seen: None
        }
    );
    f.call(
        "alice",
        Request::ContactRemove {
            username: "carol".into(),
        },
    )
    .await?;
    assert_eq!(
        carol.event().await?,
        Event::ContactChanged {
            username: "alice".into(),
            state: None
        }
    );
    alice.stop().await?;
    carol.stop().await?;
    Ok(())
}

#[tokio::test]
async fn deleting_an_account_or_a_group_removes_its_chat() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    f.befriend("bob", "carol").await?;
    f.add("dave", "bob").await?;
    f.ok(
        "bob",
        Request::ProfileSet {
            display_name: Some("B".into()),
        },
    )
    .await?;
    let id = f.team("alice", "team", &["bob"]).await?;
    f.send("alice", direct("alice", "bob", "a→b")).await?;
    f.send("bob", direct("bob", "carol", "b→c")).await?;
    f.send("bob", to_group("bob", "team", id, 0, "in team"))
        .await?;
    assert_eq!(f.stored()?, (3, 6));
    let stats = {
        let mut conn = f.state.db.conn()?;
        message_stats(&mut conn, db::now())?
    };
    assert_eq!((stats.total, stats.last_24h), (3, 3));
    let later = {
        let mut conn = f.state.db.conn()?;
        message_stats(&mut conn, db::now() + 25 * 3600)?
    };
    assert_eq!((later.total, later.last_24h), (3, 0));

    // The group goes with its messages and deliveries.
    f.ok(
        "alice",
        Request::GroupDelete {
            group: "team".into(),
        },
    )
    .await?;
    assert_eq!(f.stored()?, (2, 4));

    // Bob's account goes: his contacts (both sides), profile and deliveries; a message
    // that no one can read any more goes, one the other side still has stays.
    let bob = f.id("bob");
    {
        let mut conn = f.state.db.conn()?;
        let removed = db::chat::delete_user(&mut conn, bob)?;
        assert_eq!(removed.contacts, 6);
        assert_eq!(removed.deliveries, 2);
        assert_eq!(removed.messages, 0);
        let left: i64 = contacts::table.count().get_result(&mut *conn)?;
        assert_eq!(left, 0);
        let profile: i64 = profiles::table
            .filter(profiles::user_id.eq(bob))
            .count()
            .get_result(&mut *conn)?;
        assert_eq!(profile, 0);
        db::users::delete(&mut conn, bob)?;
    }
    assert_eq!(f.stored()?, (2, 2));
    // Alice and carol keep their side; the conversation keeps its name.
    let inbox = f.inbox("carol").await?;
    assert_eq!(inbox[0].target, user("bob"));
    let inbox = f.inbox("alice").await?;
    assert_eq!(inbox[0].target, user("bob"));
    {
        let mut conn = f.state.db.conn()?;
        let alice = f.id("alice");
        let carol = f.id("carol");
        db::chat::delete_user(&mut conn, alice)?;
        let removed = db::chat::delete_user(&mut conn, carol)?;
        assert_eq!(removed.messages, 1);
    }
    assert_eq!(f.stored()?, (0, 0));
    Ok(())
}

#[tokio::test]
async fn a_subscription_needs_nothing_but_ends_with_its_stream() -> R<()> {
    let f = fixture()?;
    let mut bob = f.subscribe("bob");
    bob.subscribed().await?;
    bob.quiet(Duration::from_millis(50)).await?;
    assert!(f.state.chat.hub.is_online(f.id("bob")));
    assert_eq!(bob.stop().await?, subscribe::Ended::Closed);
    assert!(!f.state.chat.hub.is_online(f.id("bob")));
    // Subscribe is refused as a one-frame request.
    let e = err(f.call("bob", Request::Subscribe).await);
    assert_eq!(e.code, ErrorCode::BadRequest);
    Ok(())
}

// Files sent with messages: `chat_send` with an attachment, `chat_get`, `chat_file_download`.

/// Arbitrary bytes of the sealed length of a `plain`-byte file.
fn sealed_file(plain: u64, seed: u8) -> Vec<u8> {
    (0..vault_proto::sizes::sealed_len(plain))
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

fn attached(mut message: SealedMessage, path: &str, version: u64) -> SealedMessage {
    message.attachment = Some(Attachment {
        path: path.into(),
        version,
    });
    message
}

impl Fixture {
    /// Uploads `sealed` to `path` in `who`'s personal space; returns the version.
    async fn put_file(&self, who: &str, path: &str, sealed: &[u8]) -> R<u64> {
        let session = self.who(who);
        let opened = crate::files::dispatch(
            &self.state,
            session,
            Request::UploadOpen {
                ns: NsRef::Personal,
                path: path.into(),
                sealed_size: sealed.len() as u64,
            },
        )
        .await?;
        let Response::UploadOpened { upload_id, .. } = opened else {
            return Err(format!("unexpected {opened:?}").into());
        };
        let mut body = sealed;
        crate::files::upload::receive(&self.state, session, upload_id, 0, &mut body).await?;
        let committed = crate::files::dispatch(
            &self.state,
            session,
            Request::UploadCommit {
                upload_id,
                wrapped_key: vec![7; 61].into(),
                sealed_meta: vec![8; 86].into(),
            },
        )
        .await?;
        match committed {
            Response::Entry(EntryInfo {
                current: Some(v), ..
            }) => Ok(v.version),
            other => Err(format!("unexpected {other:?}").into()),
        }
    }

    /// `who`'s download of the file message `id` carries, from chunk 0.
    async fn fetch(&self, who: &str, id: i64) -> Result<Vec<u8>, ApiError> {
        let (header, body) = files::prepare(&self.state, self.who(who), id, 0).await?;
        assert!(
            matches!(header, Response::Download { offset: 0, .. }),
            "{header:?}"
        );
        let mut out = Vec::new();
        crate::files::download::send(body, &mut out)
            .await
            .map_err(|e| ApiError::internal_with(e.to_string()))?;
        Ok(out)
    }

    fn attachments(&self) -> R<i64> {
        let mut conn = self.state.db.conn()?;
        Ok(chat_attachments::table.count().get_result(&mut *conn)?)
    }
}

#[tokio::test]
async fn an_attachment_must_be_a_live_file_of_the_senders_space() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    let v = f
        .put_file("alice", "alicefile", &sealed_file(10, 1))
        .await?;
    f.put_file("bob", "bobfile", &sealed_file(10, 2)).await?;
    for (path, version, why) in [
        ("nosuchfile", v, "no file there"),
        ("alicefile", v + 1, "a version not kept"),
        ("bobfile", 1, "the recipient's file"),
    ] {
        let e = err(f
            .send(
                "alice",
                attached(direct("alice", "bob", "x"), path, version),
            )
            .await);
        assert_eq!(e.code, ErrorCode::BadRequest, "{why}: {e}");
        assert!(e.message.contains("upload it first"), "{why}: {e}");
    }
    assert_eq!(f.stored()?, (0, 0), "a refused message leaves nothing");
    assert_eq!(f.attachments()?, 0);
    f.send(
        "alice",
        attached(direct("alice", "bob", "x"), "alicefile", v),
    )
    .await?;
    assert_eq!((f.stored()?, f.attachments()?), ((1, 2), 1));
    Ok(())
}

#[tokio::test]
async fn a_sent_file_is_readable_by_the_messages_readers_until_the_sender_removes_it() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    let sealed = sealed_file(vault_proto::sizes::CHUNK_LEN as u64 + 100, 3);
    let v = f.put_file("alice", "doc", &sealed).await?;
    let id = f
        .send("alice", attached(direct("alice", "bob", "here"), "doc", v))
        .await?;
    let plain = f.send("alice", direct("alice", "bob", "no file")).await?;

    // chat_get: the message, with its attachment, for its sender and reader only.
    for who in ["alice", "bob"] {
        match f.ok(who, Request::ChatGet { id }).await? {
            Response::ChatMessages { messages } => {
                assert_eq!(messages.len(), 1);
                assert_eq!(messages[0].id, id);
                let a = messages[0].message.attachment.clone().expect("attachment");
                assert_eq!((a.path.as_str(), a.version), ("doc", v));
            }
            other => return Err(format!("unexpected {other:?}").into()),
        }
    }
    let e = err(f.call("carol", Request::ChatGet { id }).await);
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");

    // The download: the recipient and the sender, nobody else.
    assert_eq!(f.fetch("bob", id).await?, sealed);
    assert_eq!(f.fetch("alice", id).await?, sealed);
    for who in ["carol", "dave"] {
        let e = err(f.fetch(who, id).await);
        assert_eq!(e.code, ErrorCode::NotFound, "{who}: {e}");
    }
    let e = err(f.fetch("bob", plain).await);
    assert!(e.message.contains("carries no file"), "{e}");
    // A later chunk starts where the sealed chunk does.
    let (header, _) = files::prepare(&f.state, f.who("bob"), id, 1).await?;
    let Response::Download { offset, .. } = header else {
        return Err(format!("unexpected {header:?}").into());
    };
    assert_eq!(Some(offset), vault_proto::sizes::sealed_chunk_offset(1));

    // The sender removes the file: the message stays, the file is gone.
    crate::files::dispatch(
        &f.state,
        f.who("alice"),
        Request::Remove {
            ns: NsRef::Personal,
            path: "doc".into(),
            recursive: false,
        },
    )
    .await?;
    let e = err(f.fetch("bob", id).await);
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");
    assert!(
        e.message.contains("the sender has removed this file"),
        "{e}"
    );
    assert_eq!(f.history("bob", user("alice"), 10, None).await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_group_attachment_is_readable_by_members_and_goes_with_its_messages() -> R<()> {
    let f = fixture()?;
    let id = f.team("alice", "team", &["bob", "carol"]).await?;
    let sealed = sealed_file(5, 4);
    let v = f.put_file("bob", "shared", &sealed).await?;
    let msg = f
        .send(
            "bob",
            attached(to_group("bob", "team", id, 0, "file"), "shared", v),
        )
        .await?;
    for who in ["alice", "bob", "carol"] {
        assert_eq!(f.fetch(who, msg).await?, sealed, "{who}");
    }
    let e = err(f.fetch("dave", msg).await);
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");
    // A member removed from the group fetches nothing more of it.
    f.ok(
        "alice",
        Request::GroupRemove {
            group: "team".into(),
            username: "carol".into(),
            rotation: Some(Rotation {
                generation: 1,
                envelopes: vec![envelope("alice", 1), envelope("bob", 1)],
            }),
        },
    )
    .await?;
    let e = err(f.fetch("carol", msg).await);
    assert_eq!(e.code, ErrorCode::Forbidden, "{e}");
    assert_eq!(f.fetch("bob", msg).await?, sealed);

    // A direct one too; deleting the group and then the accounts leaves no attachment row.
    f.befriend("alice", "dave").await?;
    let w = f.put_file("alice", "mine", &sealed_file(1, 5)).await?;
    f.send("alice", attached(direct("alice", "dave", "d"), "mine", w))
        .await?;
    assert_eq!(f.attachments()?, 2);
    f.ok(
        "alice",
        Request::GroupDelete {
            group: "team".into(),
        },
    )
    .await?;
    assert_eq!(f.attachments()?, 1);
    {
        let mut conn = f.state.db.conn()?;
        db::chat::delete_user(&mut conn, f.id("alice"))?;
        assert_eq!(f.attachments()?, 1, "dave still has the message");
        db::chat::delete_user(&mut conn, f.id("dave"))?;
    }
    assert_eq!((f.stored()?, f.attachments()?), ((0, 0), 0));
    Ok(())
}
