//! The relay: what one server instance tells the others of a deployment, through
//! PostgreSQL `LISTEN`/`NOTIFY` on the channel [`CHANNEL`] — chat wake-ups (new messages
//! are in the database: read them), chat events (contact requests and changes, presence),
//! ended sessions (close their connections now) and spaces whose revision moved (for
//! `watch_space` streams). Each note is delivered to this
//! instance's own hub at once and sent to the others; an instance skips the notes it sent.
//!
//! One connection per instance (tokio-postgres; every query stays on diesel) both listens
//! and sends, from one task, so notes leave in the order they were published. When the
//! connection drops, the task connects again and wakes every local subscription, which
//! reads the database for anything missed meanwhile; nothing is polled while it is up
//! (while it is down, subscriptions read the database every `chat::subscribe::POLL`).
//! `NOTIFY` is delivered at commit, so the database code may also send notes inside its
//! transactions (`db::sessions` does, for kicks and locks by a server or `vault-admin`), and
//! a listener never hears of a change before it can read it.
//!
//! On SQLite there is no relay: notes reach this instance's hub only, and subscriptions
//! read the database every `chat::subscribe::POLL` for what other processes stored.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use vault_proto::proto::Event;

use crate::state::ServerState;

/// The `LISTEN`/`NOTIFY` channel of a deployment's instances.
pub const CHANNEL: &str = "vault_relay";
/// Notes waiting to be sent, at most; when full, a note goes to this instance only (and is
/// logged): the others catch up at their next wake-up.
const QUEUE_LEN: usize = 4096;
/// `NOTIFY` payloads must stay under 8,000 bytes.
const MAX_PAYLOAD: usize = 7900;

/// What crosses instances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Note {
    /// These users have new messages in the database.
    Wake { users: Vec<i64> },
    /// An event for one user's subscriptions.
    Send { user: i64, event: Box<Event> },
    /// Sessions ended: close their connections (which, and why, is in the database).
    SessionsEnded,
    /// A space's revision moved: wake the streams watching it.
    SpaceChanged { namespace: i64, revision: u64 },
}

/// A note as sent: who sent it, so that an instance skips its own.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    note: Note,
}

/// The payload of [`Note::SessionsEnded`] sent by the database code (`db::sessions`) in
/// the transaction that ends sessions, whoever runs it (a server, `vault-admin`).
pub const SESSIONS_ENDED: &str = r#"{"from":"database","note":"sessions_ended"}"#;

/// This instance's end of the relay: its id and the queue of notes to send.
#[derive(Debug)]
pub struct Relay {
    /// Random per process: the `from` of the notes this instance sends.
    instance: String,
    outbox: Option<mpsc::Sender<String>>,
    /// Whether the connection is listening now.
    listening: std::sync::atomic::AtomicBool,
}

/// What [`run`] needs to keep the connection: give it to a task for the server's lifetime.
#[derive(Debug)]
pub struct Connection {
    url: String,
    outbox: mpsc::Receiver<String>,
}

impl Relay {
    /// A relay that reaches this instance only (SQLite, and the handler tests).
    pub fn local() -> Relay {
        Relay {
            instance: crate::blobs::BlobId::random().to_string(),
            outbox: None,
            listening: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A relay over the PostgreSQL server of `database_url`, and what [`run`] needs.
    pub fn postgres(database_url: &str) -> (Relay, Connection) {
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        let relay = Relay {
            outbox: Some(tx),
            ..Relay::local()
        };
        let connection = Connection {
            url: database_url.to_owned(),
            outbox: rx,
        };
        (relay, connection)
    }

    /// This instance's id, random per process (also its row in `db::presence`).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Whether notes reach the other instances now (else subscriptions poll the database).
    pub fn connected(&self) -> bool {
        self.listening.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits, at most `limit`, until the notes queued so far have left (at shutdown, before
    /// the relay task stops).
    pub async fn drained(&self, limit: Duration) {
        let Some(outbox) = &self.outbox else { return };
        let until = tokio::time::Instant::now() + limit;
        while outbox.capacity() < outbox.max_capacity() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The last one taken may still be on its way to the database.
        tokio::time::sleep(Duration::from_millis(50).min(limit)).await;
    }

    fn set_listening(&self, on: bool) {
        self.listening
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// User ids per wake-up note: at most 20 characters each (19 digits and a comma), so a
/// note stays under [`MAX_PAYLOAD`] however large the group.
const WAKE_USERS_PER_NOTE: usize = 300;

/// Tells `users`' subscriptions, here and on every instance, to read new messages.
pub fn wake(state: &ServerState, users: &[i64]) {
    for note in wake_notes(users) {
        publish(state, note);
    }
}

/// The wake-up notes for `users`, each small enough to cross.
fn wake_notes(users: &[i64]) -> impl Iterator<Item = Note> + '_ {
    users.chunks(WAKE_USERS_PER_NOTE).map(|users| Note::Wake {
        users: users.to_vec(),
    })
}

/// Queues `event` for `user`'s subscriptions here and on every instance.
pub fn send(state: &ServerState, user: i64, event: &Event) {
    publish(
        state,
        Note::Send {
            user,
            event: Box::new(event.clone()),
        },
    );
}

/// Tells the streams watching namespace `namespace`, here and on every instance, that its
/// revision moved to `revision` ([`crate::files::watch`]).
pub fn space_changed(state: &ServerState, namespace: i64, revision: u64) {
    publish(
        state,
        Note::SpaceChanged {
            namespace,
            revision,
        },
    );
}

fn publish(state: &ServerState, note: Note) {
    deliver(state, &note);
    let relay = &state.relay;
    let Some(outbox) = &relay.outbox else { return };
    let envelope = Envelope {
        from: relay.instance.clone(),
        note,
    };
    match serde_json::to_string(&envelope) {
        Ok(payload) if payload.len() <= MAX_PAYLOAD => {
            if outbox.try_send(payload).is_err() {
                tracing::warn!("relay queue full: a note reached this instance only");
            }
        }
        Ok(_) => tracing::warn!("relay note too large: it reached this instance only"),
        Err(e) => tracing::warn!(error = %e, "relay note not encodable"),
    }
}

/// Acts on a note on this instance.
fn deliver(state: &ServerState, note: &Note) {
    match note {
        Note::Wake { users } => state.chat.hub.wake(users),
        Note::Send { user, event } => state.chat.hub.send(*user, event),
        Note::SessionsEnded => state.live.check_now(),
        Note::SpaceChanged {
            namespace,
            revision,
        } => state.watchers.changed(*namespace, *revision),
    }
}

/// Keeps the relay connection: listens, sends what is queued, and connects again when it
/// drops (after a pause that grows to 5 s, and starts afresh once a connection stayed up).
/// Returns when the server shuts down.
pub async fn run(state: Arc<ServerState>, mut connection: Connection) {
    let mut pause = Duration::from_millis(100);
    loop {
        let began = tokio::time::Instant::now();
        let outcome = session(&state, &connection.url, &mut connection.outbox).await;
        if began.elapsed() > Duration::from_secs(30) {
            // It was up for a while: a new drop starts the pauses afresh.
            pause = Duration::from_millis(100);
        }
        state.relay.set_listening(false);
        match outcome {
            Ok(()) => return,
            Err(e) => tracing::warn!(
                error = %e,
                "relay connection lost; listeners read the database every 2 s until it is back"
            ),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life; `Ok` when the outbox closed (shutdown).
async fn session(
    state: &ServerState,
    url: &str,
    outbox: &mut mpsc::Receiver<String>,
) -> Result<(), String> {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let mut driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if notes_tx.send(n.payload().to_owned()).is_err() {
                        return "the relay stopped".to_owned();
                    }
                }
                Ok(_) => {}
                Err(e) => return e.to_string(),
            }
        }
        "the connection closed".to_owned()
    });
    let _stop_driver = AbortOnDrop(driver.abort_handle());
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| e.to_string())?;
    state.relay.set_listening(true);
    // Whatever was sent while this instance was not listening is in the database.
    state.chat.hub.wake_all();
    state.live.check_now();
    tracing::info!("relay listening on {CHANNEL}");
    loop {
        tokio::select! {
            payload = outbox.recv() => match payload {
                None => return Ok(()),
                Some(payload) => {
                    client
                        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                        .await
                        .map_err(|e| e.to_string())?;
                }
            },
            payload = notes.recv() => match payload {
                Some(payload) => received(state, &payload),
                None => return Err((&mut driver).await.unwrap_or_else(|e| e.to_string())),
            },
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn received(state: &ServerState, payload: &str) {
    match serde_json::from_str::<Envelope>(payload) {
        Ok(envelope) if envelope.from == state.relay.instance => {}
        Ok(envelope) => deliver(state, &envelope.note),
        Err(e) => tracing::warn!(error = %e, "relay: a note this version cannot read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_keep_their_shape() {
        let note = Note::Send {
            user: 7,
            event: Box::new(Event::ContactRequest { from: "bob".into() }),
        };
        let text = serde_json::to_string(&Envelope {
            from: "a".into(),
            note: note.clone(),
        })
        .expect("encode");
        assert_eq!(
            text,
            r#"{"from":"a","note":{"send":{"user":7,"event":{"contact_request":{"from":"bob"}}}}}"#
        );
        let back: Envelope = serde_json::from_str(&text).expect("decode");
        assert_eq!(back.note, note);
        let ended: Envelope = serde_json::from_str(SESSIONS_ENDED).expect("decode");
        assert_eq!(ended.note, Note::SessionsEnded);
    }

    /// A message to a group of thousands wakes every member on every instance: its
    /// wake-up goes out in notes that each fit `NOTIFY`'s payload.
    #[test]
    fn a_wake_up_of_a_large_group_is_split_into_notes_that_cross() {
        let users: Vec<i64> = (0..5000).map(|n| i64::MAX - n).collect();
        let mut woken = Vec::new();
        for note in wake_notes(&users) {
            let text = serde_json::to_string(&Envelope {
                from: crate::blobs::BlobId::random().to_string(),
                note: note.clone(),
            })
            .expect("encode");
            assert!(text.len() <= MAX_PAYLOAD, "{} bytes", text.len());
            let Note::Wake { users } = note else {
                panic!("not a wake-up")
            };
            woken.extend(users);
        }
        assert_eq!(woken, users, "every member, once, in order");
    }
}
