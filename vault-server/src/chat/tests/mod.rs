//! Handler-level tests of chat, on the shared [`Fixture`]: a temp SQLite database (or a
//! fresh PostgreSQL one with `VAULT_TEST_POSTGRES_URL`), driven through the router without
//! QUIC. Subscriptions run [`subscribe::serve`] on one end of an in-memory pipe; the tests
//! read the frames from the other end ([`Sub`]). Messages are arbitrary bytes: the server
//! never opens them.
//!
//! By subject: contacts and profiles (`contacts`), sending, history and the inbox
//! (`messages`), subscriptions and presence (`subscriptions`), and files sent with messages
//! (`attachments`). What the users do is [`ChatCalls`], here.

mod attachments;
mod contacts;
mod messages;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use tokio::io::{AsyncReadExt, DuplexStream};
use vault_proto::proto::{
    ApiError, ByteBuf, ChatMessage, ChatTarget, ContactInfo, ContactState, Conversation, EntryInfo,
    Event, NewEnvelope, NsRef, Request, Response, Rotation, SealedMessage, WrappedMessageKey,
};

use super::{files, now_ms, subscribe};
use crate::config::Config;
use crate::db::schema::{chat_attachments, chat_deliveries, chat_messages};
use crate::testing::{Fixture, R};

const USERS: &[&str] = &["alice", "bob", "carol", "dave", "erin"];

fn fixture() -> R<Fixture> {
    fixture_with(|_| {})
}

/// A server with [`USERS`] (the n-th, from 1, with public key `[n; 24]`), its
/// configuration changed by `adjust`.
fn fixture_with(adjust: impl FnOnce(&mut Config)) -> R<Fixture> {
    Fixture::with("chat", USERS, adjust, |s| Arc::new(s))
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

/// What the chat tests do: each request as user `who`, through the router, and what they
/// look up in the database.
trait ChatCalls {
    /// Asks `other` to be a contact.
    async fn add(&self, who: &str, other: &str) -> Result<Response, ApiError>;
    /// Accepts `other`'s request.
    async fn accept(&self, who: &str, other: &str) -> Result<Response, ApiError>;
    /// Makes `a` and `b` mutual contacts.
    async fn befriend(&self, a: &str, b: &str) -> R<()>;
    async fn contacts(&self, who: &str) -> R<Vec<ContactInfo>>;
    /// `who`'s view of their relationships, as (username, state).
    async fn states(&self, who: &str) -> R<Vec<(String, ContactState)>>;
    /// Sends `message`; its id.
    async fn send(&self, who: &str, message: SealedMessage) -> Result<i64, ApiError>;
    async fn history(
        &self,
        who: &str,
        target: ChatTarget,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<ChatMessage>, ApiError>;
    async fn inbox(&self, who: &str) -> R<Vec<Conversation>>;
    /// Creates group `name` owned by `owner` with a key (generation 0) and `members`.
    async fn team(&self, owner: &str, name: &str, members: &[&str]) -> R<i64>;
    /// (messages, deliveries) stored.
    fn stored(&self) -> R<(i64, i64)>;
    /// Starts a subscription of `who` on an in-memory pipe.
    fn subscribe(&self, who: &str) -> Sub;
    /// Uploads `sealed` to `path` in `who`'s personal space; returns the version.
    async fn put_file(&self, who: &str, path: &str, sealed: &[u8]) -> R<u64>;
    /// `who`'s download of the file message `id` carries, from chunk 0.
    async fn fetch(&self, who: &str, id: i64) -> Result<Vec<u8>, ApiError>;
    /// Attachment rows stored.
    fn attachments(&self) -> R<i64>;
}

impl ChatCalls for Fixture {
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

    fn stored(&self) -> R<(i64, i64)> {
        let mut conn = self.state.db.conn()?;
        let messages = chat_messages::table.count().get_result(&mut *conn)?;
        let deliveries = chat_deliveries::table.count().get_result(&mut *conn)?;
        Ok((messages, deliveries))
    }

    fn subscribe(&self, who: &str) -> Sub {
        let (writer, reader) = tokio::io::duplex(1 << 20);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::clone(&self.state);
        let session = self.who(who).session.clone();
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

    async fn put_file(&self, who: &str, path: &str, sealed: &[u8]) -> R<u64> {
        let session = &self.who(who).session;
        let opened = crate::files::dispatch(
            &self.state,
            session,
            Request::UploadOpen {
                ns: NsRef::Personal,
                path: path.into(),
                sealed_size: sealed.len() as u64,
                chunk_bytes: 0,
                batch: None,
                if_current: None,
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
                chunks: Vec::new(),
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

    async fn fetch(&self, who: &str, id: i64) -> Result<Vec<u8>, ApiError> {
        let (header, body) = files::prepare(&self.state, &self.who(who).session, id, 0).await?;
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
