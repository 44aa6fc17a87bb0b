//! `vault chat listen`: a `subscribe` stream read as a sequence of events ([`Listener`]).
//!
//! - Messages are checked and opened before they are handed out ([`super::receive`]).
//! - When the connection is lost or the server restarts, or nothing at all (not even the
//!   answer to a keep-alive ping) has arrived for [`SILENCE`], the listener says so
//!   ([`ListenEvent::Lost`]), waits ([`Backoff`]: 0.5 s, doubling to 5 s), resumes the
//!   session on a new connection and subscribes again ([`ListenEvent::Resumed`]); the
//!   server then sends what was not delivered meanwhile.
//! - A message is handed out once, however often the server sends it ([`Shown`]).
//! - When the server ends the session (QUIC close code
//!   [`crate::transport::CLOSE_SESSION_ENDED`]: a newer login with `single_session`, an
//!   operator's kick), or refuses to resume it, the listener stops with the reason
//!   ([`ListenError::SessionEnded`]).

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use vault_core::proto::chat::{ContactState, Event};
use vault_core::proto::{Request, Response};

use super::receive::{Reader, Received};
use crate::ClientError;
use crate::files::{Files, FilesError};
use crate::transport::{Connection, EventStream, KEEP_ALIVE};

/// Waits between reconnect attempts: 0.5 s, doubling up to 5 s, back to 0.5 s once a
/// subscription stands again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(500);
    pub const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// The wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(Self::MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// After this long without a datagram from the server (which answers the keep-alive pings
/// sent every [`KEEP_ALIVE`]), the connection counts as lost: a server that was killed,
/// restarted or cut off sends no close, and the idle timeout would take a minute. Two
/// pings go unanswered first.
pub const SILENCE: Duration = Duration::from_secs(KEEP_ALIVE.as_secs() * 2 + 1);

/// How long a connection has received nothing, from its count of received datagrams.
#[derive(Debug, Clone, Copy)]
pub struct Quiet {
    count: u64,
    since: Instant,
}

impl Quiet {
    pub fn new(count: u64, now: Instant) -> Self {
        Quiet { count, since: now }
    }

    /// Notes the count at `now`; returns how long it has not grown.
    pub fn observe(&mut self, count: u64, now: Instant) -> Duration {
        if count != self.count {
            *self = Quiet::new(count, now);
        }
        now.saturating_duration_since(self.since)
    }
}

/// The ids of the messages handed out: the highest, and the most recent [`Shown::WINDOW`]
/// ids so that one that arrives late (below the highest, never shown) still is shown once.
/// Anything below the window counts as shown.
#[derive(Debug, Clone, Default)]
pub struct Shown {
    recent: BTreeSet<i64>,
}

impl Shown {
    pub const WINDOW: usize = 4096;

    /// Records `id`; `false` when it was handed out before.
    pub fn first_time(&mut self, id: i64) -> bool {
        if self.recent.contains(&id) {
            return false;
        }
        if self.recent.len() >= Self::WINDOW && self.recent.first().is_some_and(|low| id < *low) {
            return false;
        }
        self.recent.insert(id);
        if self.recent.len() > Self::WINDOW {
            self.recent.pop_first();
        }
        true
    }

    /// The highest id handed out.
    pub fn highest(&self) -> Option<i64> {
        self.recent.last().copied()
    }
}

/// What a listener hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenEvent {
    /// A message for the caller (or sent by another of their sessions), checked.
    Message(Received),
    /// Someone asked to become a contact.
    ContactRequest { from: String },
    /// A contact relationship changed (`None`: it ended).
    ContactChanged {
        username: String,
        state: Option<ContactState>,
    },
    /// A mutual contact came online or went offline.
    Presence {
        username: String,
        online: bool,
        last_seen: Option<i64>,
    },
    /// The connection or the event stream was lost; the listener tries again after
    /// `retry_in` (and on, silently, until it succeeds).
    Lost { reason: String, retry_in: Duration },
    /// Subscribed again after a loss.
    Resumed,
}

/// Why a listener stopped.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The server ended the session.
    #[error("{reason}; log in again with `vault login {user}` to listen again")]
    SessionEnded { user: String, reason: String },
    #[error(transparent)]
    Failed(#[from] FilesError),
}

/// The reason of a session's end as the server gives it, beginning with `session ended:`
/// (the server's close reason already does).
fn ended_reason(reason: &str) -> String {
    let reason = reason.trim();
    let rest = reason
        .strip_prefix("session ended:")
        .unwrap_or(reason)
        .trim();
    format!("session ended: {rest}")
}

/// Whether trying again later may help after `e` (the server is away or restarting).
fn is_transient(e: &FilesError) -> bool {
    e.is_connection() || matches!(e, FilesError::Client(ClientError::Protocol(_)))
}

/// The next frame of `stream`, or `None` when `conn` has received nothing for [`SILENCE`].
async fn read_watched(
    stream: &mut EventStream,
    conn: &Connection,
) -> Option<Result<Option<Response>, ClientError>> {
    let mut quiet = Quiet::new(conn.datagrams_received(), Instant::now());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // One read, kept across the checks (a frame read halfway must not be dropped).
    let read = stream.next();
    tokio::pin!(read);
    loop {
        tokio::select! {
            frame = &mut read => return Some(frame),
            _ = tick.tick() => {
                if quiet.observe(conn.datagrams_received(), Instant::now()) >= SILENCE {
                    return None;
                }
            }
        }
    }
}

/// A `subscribe` stream with reconnects.
#[derive(Debug)]
pub struct Listener<'a> {
    files: &'a Files,
    reader: Reader<'a, &'a Files>,
    stream: Option<EventStream>,
    backoff: Backoff,
    shown: Shown,
    /// The wait before the next attempt to subscribe.
    wait: Option<Duration>,
    /// The connection failed: resume the session on a new one before subscribing.
    reconnect: bool,
    /// A loss was reported and no subscription stands since.
    lost: bool,
    queued: VecDeque<ListenEvent>,
}

impl<'a> Listener<'a> {
    /// A listener on the session of `files`; it subscribes on the first [`Listener::next`].
    pub fn new(files: &'a Files) -> Result<Self, FilesError> {
        Ok(Listener {
            files,
            reader: Reader::new(files)?,
            stream: None,
            backoff: Backoff::new(),
            shown: Shown::default(),
            wait: None,
            reconnect: false,
            lost: false,
            queued: VecDeque::new(),
        })
    }

    /// Subscribes now rather than at the first [`Listener::next`], so that the caller can
    /// say it is listening; tries again like `next` until it succeeds or the session ended.
    pub async fn start(&mut self) -> Result<(), ListenError> {
        if self.stream.is_none() {
            self.subscribe().await?;
        }
        Ok(())
    }

    /// The highest message id handed out so far.
    pub fn highest_shown(&self) -> Option<i64> {
        self.shown.highest()
    }

    fn session_ended(&self, reason: &str) -> ListenError {
        ListenError::SessionEnded {
            user: self.files.user().to_owned(),
            reason: ended_reason(reason),
        }
    }

    /// The next event; waits as long as it takes.
    pub async fn next(&mut self) -> Result<ListenEvent, ListenError> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Ok(event);
            }
            let files = self.files;
            let Some(stream) = self.stream.as_mut() else {
                self.subscribe().await?;
                continue;
            };
            let conn = files.conn();
            let read = read_watched(stream, &conn).await;
            let reason = match read {
                Some(Ok(Some(Response::Event(event)))) => {
                    if let Some(event) = self.event(event).await {
                        return Ok(event);
                    }
                    continue;
                }
                Some(Ok(Some(Response::Error(e)))) => {
                    format!("the server ended the event stream: {}", e.message)
                }
                Some(Ok(Some(other))) => format!("unexpected frame on the event stream: {other:?}"),
                Some(Ok(None)) => "the server ended the event stream".to_owned(),
                Some(Err(e)) => {
                    if let Some(reason) = conn.session_ended() {
                        return Err(self.session_ended(&reason));
                    }
                    self.reconnect = conn.is_closed();
                    e.to_string()
                }
                None => {
                    conn.close();
                    self.reconnect = true;
                    format!("no answer from the server for {} s", SILENCE.as_secs())
                }
            };
            self.stream = None;
            let retry_in = self.backoff.next_delay();
            self.wait = Some(retry_in);
            self.lost = true;
            tracing::debug!(%reason, ?retry_in, "event stream lost");
            return Ok(ListenEvent::Lost { reason, retry_in });
        }
    }

    /// What `event` means to the caller; `None` for a message handed out before.
    async fn event(&mut self, event: Event) -> Option<ListenEvent> {
        Some(match event {
            Event::Message(message) => {
                if !self.shown.first_time(message.id) {
                    return None;
                }
                ListenEvent::Message(self.reader.read(&message).await)
            }
            Event::ContactRequest { from } => ListenEvent::ContactRequest { from },
            Event::ContactChanged { username, state } => {
                ListenEvent::ContactChanged { username, state }
            }
            Event::Presence {
                username,
                online,
                last_seen,
            } => ListenEvent::Presence {
                username,
                online,
                last_seen,
            },
        })
    }

    /// Subscribes, resuming the session on a new connection first when the old one is
    /// gone; tries again (with [`Backoff`]) until it succeeds or the session has ended.
    async fn subscribe(&mut self) -> Result<(), ListenError> {
        loop {
            if let Some(wait) = self.wait.take() {
                tokio::time::sleep(wait).await;
            }
            let conn = self.files.conn();
            if let Some(reason) = conn.session_ended() {
                return Err(self.session_ended(&reason));
            }
            if self.reconnect || conn.is_closed() {
                match self.files.reconnect(&conn).await {
                    Ok(()) => self.reconnect = false,
                    Err(e) => {
                        self.retry_or_stop(e)?;
                        continue;
                    }
                }
            }
            let conn = self.files.conn();
            match conn.subscribe(&Request::Subscribe).await {
                Ok((Response::Subscribed, stream)) => {
                    self.stream = Some(stream);
                    self.backoff.reset();
                    if std::mem::take(&mut self.lost) {
                        self.queued.push_back(ListenEvent::Resumed);
                    }
                    return Ok(());
                }
                Ok((other, _)) => {
                    return Err(ListenError::Failed(crate::files::unexpected(
                        "subscribe",
                        &other,
                    )));
                }
                Err(e) => {
                    if let Some(reason) = conn.session_ended() {
                        return Err(self.session_ended(&reason));
                    }
                    self.reconnect = conn.is_closed();
                    self.retry_or_stop(FilesError::from(e))?;
                }
            }
        }
    }

    /// Schedules another attempt after `e` if one may help, else stops with it.
    fn retry_or_stop(&mut self, e: FilesError) -> Result<(), ListenError> {
        if let Some(seconds) = e.retry_after() {
            self.wait = Some(Duration::from_secs(seconds.max(1)));
            return Ok(());
        }
        if is_transient(&e) {
            let wait = self.backoff.next_delay();
            tracing::debug!(error = %e, ?wait, "subscribing failed; trying again");
            self.wait = Some(wait);
            return Ok(());
        }
        // Resuming was refused: the session ended while the connection was down.
        if matches!(e.api_code(), Some("forbidden" | "invalid_credentials")) {
            return Err(self.session_ended(&e.to_string()));
        }
        Err(ListenError::Failed(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_half_a_second_to_five_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn a_message_is_shown_once_even_when_sent_again_after_a_reconnect() {
        let mut shown = Shown::default();
        for id in [3, 4, 5] {
            assert!(shown.first_time(id));
        }
        // The backlog after a reconnect repeats what was shown...
        for id in [3, 4, 5] {
            assert!(!shown.first_time(id), "{id} again");
        }
        // ...and brings what arrived meanwhile, once.
        assert!(shown.first_time(6));
        assert!(!shown.first_time(6));
        // One that committed late, below the highest, is shown once too.
        assert!(shown.first_time(2));
        assert!(!shown.first_time(2));
        assert_eq!(shown.highest(), Some(6));
    }

    #[test]
    fn the_window_of_shown_ids_is_bounded_and_treats_older_ids_as_shown() {
        let mut shown = Shown::default();
        let window = Shown::WINDOW as i64;
        for id in 1..=window + 10 {
            assert!(shown.first_time(id));
        }
        assert_eq!(shown.recent.len(), Shown::WINDOW);
        assert!(!shown.first_time(1), "below the window");
        assert!(!shown.first_time(window + 10));
        assert!(shown.first_time(window + 11));
    }

    #[test]
    fn the_reason_of_an_ended_session_is_named_once() {
        assert_eq!(
            ended_reason("session ended: a newer login (single_session)"),
            "session ended: a newer login (single_session)"
        );
        assert_eq!(
            ended_reason("kicked by the operator"),
            "session ended: kicked by the operator"
        );
        let e = ListenError::SessionEnded {
            user: "alice".into(),
            reason: ended_reason("session ended: kicked"),
        };
        assert_eq!(
            e.to_string(),
            "session ended: kicked; log in again with `vault login alice` to listen again"
        );
    }

    #[test]
    fn a_connection_counts_as_quiet_while_nothing_arrives() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut quiet = Quiet::new(10, start);
        assert_eq!(quiet.observe(10, at(5)), Duration::from_secs(5));
        // A keep-alive answer arrived: quiet again from then on.
        assert_eq!(quiet.observe(11, at(9)), Duration::ZERO);
        assert_eq!(quiet.observe(11, at(20)), Duration::from_secs(11));
        assert!(quiet.observe(11, at(9) + SILENCE) >= SILENCE);
        assert!(SILENCE > KEEP_ALIVE * 2, "two missed answers at least");
    }

    #[test]
    fn only_connection_troubles_are_retried() {
        let closed = FilesError::Client(ClientError::Closed("server shutting down".into()));
        assert!(is_transient(&closed));
        let connect = FilesError::Client(ClientError::Connect {
            addr: "h:1".into(),
            reason: "no answer".into(),
        });
        assert!(is_transient(&connect));
        assert!(!is_transient(&FilesError::Usage("not logged in".into())));
    }
}
