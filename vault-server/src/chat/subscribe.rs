//! The `subscribe` event stream. The server answers `subscribed`, then writes one
//! `event` frame (u32 length + CBOR `Response::Event`, like every response) per event
//! until the connection closes, the client stops the stream or the connection's session
//! changes:
//!
//! 1. the backlog: every delivery of the user that no subscription has carried yet, with
//!    an id up to the newest at the start, oldest first; each is marked delivered once
//!    written;
//! 2. then every new delivery (a message id above those at the start) as it arrives. The
//!    hub wakes the subscription when a message is stored, on this instance or, through
//!    the relay (`crate::relay`, PostgreSQL `LISTEN`/`NOTIFY`), on another. While no relay
//!    connection is up (SQLite, or PostgreSQL between a lost connection and the next) it
//!    also reads the database every [`POLL`], for what other processes stored. Contact and presence events come from the hub's queue.
//!
//! Ids are read from the database in arrival order, but on PostgreSQL a transaction may
//! commit after one that took a higher id. So each read looks back [`LOOKBACK`] ids below
//! the newest one carried and skips the ids it has carried already.
//!
//! A subscription that cannot keep up (its event queue overflows, or a write is not
//! taken within [`WRITE_TIMEOUT`]) ends; its client reconnects and gets the backlog.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use vault_proto::proto::{ApiError, Event, Response};

use super::hub::{Signal, Subscription};
use super::{chat_message, presence};
use crate::db::DbError;
use crate::db::chat::{self as rows, Delivered};
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

/// How often a subscription reads the database even when not woken, while no relay
/// connection is up.
pub const POLL: Duration = Duration::from_secs(2);
/// How far below the newest id carried each read looks for late commits.
pub const LOOKBACK: i64 = 256;
/// How long one frame may wait for the client to take it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages (with their bodies) read at once.
const BODY_PAGE: i64 = 64;
/// Delivery states read at once.
const STATE_PAGE: i64 = 500;

/// How a subscription ended after `subscribed` was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The connection or stream closed, or the session changed: finish the stream.
    Closed,
    /// The subscription could not go on (a slow client, a database error): reset the
    /// stream so that the client reconnects.
    Broken(String),
}

/// Serves a subscription of `session`'s user on `out`. `ended` resolves when the
/// connection or the stream closes; `live` says whether the connection is still logged
/// in as `session`. An error is returned only before `subscribed` was written (the
/// caller answers it).
pub async fn serve<W, E, L>(
    state: &ServerState,
    session: &SessionCtx,
    out: &mut W,
    ended: E,
    live: L,
) -> Result<Ended, ApiError>
where
    W: AsyncWrite + Unpin,
    E: Future<Output = ()>,
    L: Fn() -> bool,
{
    let user = session.user_id;
    let (mut sub, first) = state.chat.hub.subscribe(user).ok_or_else(|| {
        ApiError::throttled(
            5,
            format!(
                "this account has {} listens open on this server already; stop one first",
                super::hub::MAX_PER_USER
            ),
        )
    })?;
    if first && let Err(e) = presence::joined(state, user, &session.username).await {
        tracing::warn!(code = e.code.as_str(), "could not announce presence");
    }
    let outcome = stream(state, &mut sub, out, ended, live).await;
    if sub.leave()
        && let Err(e) = presence::left(state, user, &session.username).await
    {
        tracing::warn!(code = e.code.as_str(), "could not announce presence");
    }
    if let Ok(Ended::Broken(why)) = &outcome {
        tracing::info!(reason = %why, "subscription ended");
    }
    outcome
}

async fn stream<W, E, L>(
    state: &ServerState,
    sub: &mut Subscription<'_>,
    out: &mut W,
    ended: E,
    live: L,
) -> Result<Ended, ApiError>
where
    W: AsyncWrite + Unpin,
    E: Future<Output = ()>,
    L: Fn() -> bool,
{
    let user = sub.user_id();
    // Registered in the hub first, then the newest id read: nothing stored in between
    // is missed.
    let start = state.db.run(move |c| rows::last_delivery(c, user)).await?;
    let mut writer = Writer {
        out,
        unmarked: Vec::new(),
    };
    if let Err(e) = writer.frame(&Response::Subscribed).await {
        return Ok(Ended::Broken(e));
    }
    let mut cursor = Cursor::new(start);
    let mut ended = std::pin::pin!(ended);
    let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let run = async {
        backlog(state, user, start, &mut writer).await?;
        catch_up(state, user, &mut cursor, &mut writer).await?;
        loop {
            if sub.overflowed() {
                return Err("events came faster than the client took them".to_owned());
            }
            if !live() {
                return Ok(());
            }
            tokio::select! {
                signal = sub.next() => match signal {
                    Signal::Messages => catch_up(state, user, &mut cursor, &mut writer).await?,
                    Signal::Event(event) => writer.event(*event).await?,
                    Signal::Gone => return Ok(()),
                },
                _ = poll.tick() => {
                    // While the relay is up it wakes this subscription for every message.
                    if !state.relay.connected() {
                        catch_up(state, user, &mut cursor, &mut writer).await?;
                    }
                }
            }
        }
    };
    let ended = tokio::select! {
        biased;
        () = &mut ended => Ended::Closed,
        done = run => match done {
            Ok(()) => Ended::Closed,
            Err(why) => Ended::Broken(why),
        },
    };
    // Messages written just before the end are marked even so, or the next subscription
    // would carry them again.
    let _ = writer.mark_delivered(state, user).await;
    Ok(ended)
}

/// Writes frames, each within [`WRITE_TIMEOUT`], and remembers which messages it wrote
/// until they are marked delivered.
struct Writer<'a, W> {
    out: &'a mut W,
    unmarked: Vec<i64>,
}

impl<W: AsyncWrite + Unpin> Writer<'_, W> {
    async fn frame(&mut self, response: &Response) -> Result<(), String> {
        let frame = vault_proto::proto::encode_frame(response).map_err(|e| e.to_string())?;
        match tokio::time::timeout(WRITE_TIMEOUT, self.out.write_all(&frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write failed: {e}")),
            Err(_) => Err("the client took no event for too long".to_owned()),
        }
    }

    async fn event(&mut self, event: Event) -> Result<(), String> {
        self.frame(&Response::Event(event)).await
    }

    /// Writes stored messages as events (a damaged one is logged and skipped); returns
    /// the ids written.
    async fn messages(&mut self, found: Vec<Delivered>) -> Result<Vec<i64>, String> {
        let mut ids = Vec::with_capacity(found.len());
        for row in found {
            let id = row.id;
            match chat_message(row) {
                Ok(message) => self.event(Event::Message(message)).await?,
                Err(_) => tracing::warn!(message = id, "skipping a damaged chat message"),
            }
            self.unmarked.push(id);
            ids.push(id);
        }
        Ok(ids)
    }

    /// Marks the messages written so far delivered. Safe to stop at any await: what is
    /// not known to be marked stays remembered (marking twice changes nothing).
    async fn mark_delivered(&mut self, state: &ServerState, user: i64) -> Result<(), String> {
        if self.unmarked.is_empty() {
            return Ok(());
        }
        let ids = self.unmarked.clone();
        state
            .db
            .run(move |c| rows::mark_delivered(c, user, &ids))
            .await
            .map_err(db_failed)?;
        self.unmarked.clear();
        Ok(())
    }
}

fn db_failed(e: DbError) -> String {
    tracing::error!(error = %e, "database error in a subscription");
    "a database request failed".to_owned()
}

/// Writes every undelivered message with an id up to `start`, oldest first.
async fn backlog<W: AsyncWrite + Unpin>(
    state: &ServerState,
    user: i64,
    start: i64,
    writer: &mut Writer<'_, W>,
) -> Result<(), String> {
    let mut after = 0;
    loop {
        let page = state
            .db
            .run(move |c| rows::deliveries_between(c, user, after, Some(start), true, BODY_PAGE))
            .await
            .map_err(db_failed)?;
        let Some(last) = page.last().map(|r| r.id) else {
            return Ok(());
        };
        let full = page.len() as i64 == BODY_PAGE;
        after = last;
        writer.messages(page).await?;
        writer.mark_delivered(state, user).await?;
        if !full {
            return Ok(());
        }
    }
}

/// Which new messages a subscription has carried (see the module documentation).
#[derive(Debug)]
struct Cursor {
    /// The newest id among the user's deliveries when the subscription started.
    start: i64,
    /// Reads look at ids above this.
    floor: i64,
    /// Ids above `floor` written by this subscription.
    sent: BTreeSet<i64>,
}

impl Cursor {
    fn new(start: i64) -> Self {
        Cursor {
            start,
            floor: (start - LOOKBACK).max(0),
            sent: BTreeSet::new(),
        }
    }

    /// Whether the message `id` (carried by some subscription already: `delivered`) is
    /// one to write: not written here yet, and not one delivered before this
    /// subscription started.
    fn wants(&self, id: i64, delivered: bool) -> bool {
        let carried_before = id <= self.start && delivered;
        !(self.sent.contains(&id) || carried_before)
    }

    /// Moves the floor up to [`LOOKBACK`] below the newest id written.
    fn advance(&mut self) {
        let top = self.sent.last().copied().unwrap_or(0).max(self.start);
        self.floor = self.floor.max(top - LOOKBACK);
        let floor = self.floor;
        self.sent.retain(|id| *id > floor);
    }
}

/// Writes every message above the cursor's floor that it wants.
async fn catch_up<W: AsyncWrite + Unpin>(
    state: &ServerState,
    user: i64,
    cursor: &mut Cursor,
    writer: &mut Writer<'_, W>,
) -> Result<(), String> {
    let mut after = cursor.floor;
    loop {
        let states = state
            .db
            .run(move |c| rows::delivery_states_after(c, user, after, STATE_PAGE))
            .await
            .map_err(db_failed)?;
        let Some(&(last, _)) = states.last() else {
            break;
        };
        after = last;
        let wanted: Vec<i64> = states
            .iter()
            .filter(|(id, delivered)| cursor.wants(*id, *delivered))
            .map(|(id, _)| *id)
            .collect();
        for chunk in wanted.chunks(BODY_PAGE as usize) {
            let chunk = chunk.to_vec();
            let found = state
                .db
                .run(move |c| rows::deliveries_by_id(c, user, &chunk))
                .await
                .map_err(db_failed)?;
            let ids = writer.messages(found).await?;
            cursor.sent.extend(ids.iter().copied());
            writer.mark_delivered(state, user).await?;
        }
        if (states.len() as i64) < STATE_PAGE {
            break;
        }
    }
    cursor.advance();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_skips_what_it_wrote_and_what_was_delivered_before() {
        let mut c = Cursor::new(1000);
        assert_eq!(c.floor, 1000 - LOOKBACK);
        // Below the start: only what no subscription carried (a late commit).
        assert!(!c.wants(990, true));
        assert!(c.wants(990, false));
        // Above the start: everything, once.
        assert!(c.wants(1001, true));
        c.sent.extend([990, 1001, 1400]);
        assert!(!c.wants(1001, false));
        c.advance();
        assert_eq!(c.floor, 1400 - LOOKBACK);
        assert_eq!(c.sent.iter().copied().collect::<Vec<_>>(), [1400]);
        // The floor never goes down.
        c.sent.clear();
        c.advance();
        assert_eq!(c.floor, 1400 - LOOKBACK);
    }
}
