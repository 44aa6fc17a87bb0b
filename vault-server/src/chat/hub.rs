//! The in-process hub: who has a live `subscribe` stream on this server instance, and the
//! wake-ups and events for them.
//!
//! Messages do not travel through the hub: they are in the database, and a wake-up tells
//! each of the reader's subscriptions to read what is new (several wake-ups before it
//! reads cost one read). Other events (contact requests and changes, presence) go into a
//! bounded queue per subscription; a subscription whose queue is full cannot keep up and
//! is closed (its client reconnects and reads the database again).
//!
//! [`Hub::subscribe`] and [`Subscription::leave`] say when a user's first subscription
//! here opened and their last closed; `chat::presence` takes it from there (whether they
//! are online anywhere is the deployment's, in `db::presence`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
use vault_proto::proto::Event;

/// Events (other than messages) one subscription may have waiting.
pub const QUEUE_LEN: usize = 256;
/// At most this many live subscriptions per user on one instance (each polls the
/// database), enough for a few machines with a `listen` each.
pub const MAX_PER_USER: usize = 8;

#[derive(Debug)]
struct Slot {
    id: u64,
    wake: Arc<Notify>,
    events: mpsc::Sender<Event>,
    overflowed: Arc<AtomicBool>,
}

/// What woke a subscription.
#[derive(Debug)]
pub enum Signal {
    /// New messages may be waiting in the database.
    Messages,
    /// A queued event (boxed: a message event is far larger than the other signals).
    Event(Box<Event>),
    /// The subscription is no longer registered.
    Gone,
}

/// The subscriptions of this server instance, by user id.
#[derive(Debug, Default)]
pub struct Hub {
    subs: Mutex<HashMap<i64, Vec<Slot>>>,
    next_id: AtomicU64,
}

/// One live subscription; leaving the hub happens on [`Subscription::leave`] or on drop.
#[derive(Debug)]
pub struct Subscription<'a> {
    hub: &'a Hub,
    user_id: i64,
    id: u64,
    wake: Arc<Notify>,
    events: mpsc::Receiver<Event>,
    overflowed: Arc<AtomicBool>,
    joined: bool,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Vec<Slot>>> {
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a subscription of `user_id`; the flag says whether it is the user's first
    /// (they just came online). `None` when the user has [`MAX_PER_USER`] already.
    pub fn subscribe(&self, user_id: i64) -> Option<(Subscription<'_>, bool)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let overflowed = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        let mut subs = self.lock();
        let slots = subs.entry(user_id).or_default();
        if slots.len() >= MAX_PER_USER {
            return None;
        }
        let first = slots.is_empty();
        slots.push(Slot {
            id,
            wake: Arc::clone(&wake),
            events: tx,
            overflowed: Arc::clone(&overflowed),
        });
        let sub = Subscription {
            hub: self,
            user_id,
            id,
            wake,
            events: rx,
            overflowed,
            joined: true,
        };
        Some((sub, first))
    }

    /// Tells every subscription of these users that there are new messages for them.
    pub fn wake(&self, user_ids: &[i64]) {
        let subs = self.lock();
        for user in user_ids {
            for slot in subs.get(user).into_iter().flatten() {
                slot.wake.notify_one();
            }
        }
    }

    /// Tells every subscription here to read what is new (after the relay missed notes).
    pub fn wake_all(&self) {
        for slot in self.lock().values().flatten() {
            slot.wake.notify_one();
        }
    }

    /// Queues `event` for every subscription of `user_id`. A subscription whose queue is
    /// full is marked overflowed and woken, so that it closes.
    pub fn send(&self, user_id: i64, event: &Event) {
        let subs = self.lock();
        for slot in subs.get(&user_id).into_iter().flatten() {
            if slot.events.try_send(event.clone()).is_err() {
                slot.overflowed.store(true, Ordering::SeqCst);
                slot.wake.notify_one();
            }
        }
    }

    /// The users with a subscription on this instance.
    pub fn users(&self) -> Vec<i64> {
        self.lock().keys().copied().collect()
    }

    /// Whether `user_id` has a subscription on this instance (online anywhere: `db::presence`).
    pub fn listens_here(&self, user_id: i64) -> bool {
        self.lock().get(&user_id).is_some_and(|s| !s.is_empty())
    }

    /// Removes one subscription; returns whether it was its user's last.
    fn remove(&self, user_id: i64, id: u64) -> bool {
        let mut subs = self.lock();
        let Some(slots) = subs.get_mut(&user_id) else {
            return false;
        };
        let before = slots.len();
        slots.retain(|s| s.id != id);
        let removed = slots.len() < before;
        if slots.is_empty() {
            subs.remove(&user_id);
            return removed;
        }
        false
    }
}

impl Subscription<'_> {
    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    /// Waits until new messages may be waiting for this subscription.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// The next queued event (`None` never happens while the subscription is registered).
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Waits for the next wake-up or event (queued events first).
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            biased;
            event = self.events.recv() => match event {
                Some(event) => Signal::Event(Box::new(event)),
                None => Signal::Gone,
            },
            () = self.wake.notified() => Signal::Messages,
        }
    }

    /// Whether an event had to be dropped because the queue was full.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::SeqCst)
    }

    /// Leaves the hub; returns whether this was the user's last subscription here (they
    /// went offline).
    pub fn leave(mut self) -> bool {
        self.joined = false;
        self.hub.remove(self.user_id, self.id)
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        if self.joined {
            self.hub.remove(self.user_id, self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(from: &str) -> Event {
        Event::ContactRequest { from: from.into() }
    }

    #[test]
    fn a_user_has_at_most_a_few_subscriptions() {
        let hub = Hub::default();
        let held: Vec<_> = (0..MAX_PER_USER)
            .map(|_| hub.subscribe(1).expect("room"))
            .collect();
        assert!(hub.subscribe(1).is_none(), "one too many");
        assert!(hub.subscribe(2).is_some(), "another user has room");
        drop(held);
        assert!(hub.subscribe(1).is_some(), "room again once they closed");
    }

    #[tokio::test]
    async fn listens_here_while_a_subscription_is_open() {
        let hub = Hub::default();
        assert!(!hub.listens_here(1));
        let (a, first) = hub.subscribe(1).expect("room");
        assert!(first);
        let (b, first) = hub.subscribe(1).expect("room");
        assert!(!first);
        assert!(hub.listens_here(1));
        assert!(!a.leave(), "another subscription is still open");
        assert!(hub.listens_here(1));
        drop(b);
        assert!(!hub.listens_here(1));
        let (c, first) = hub.subscribe(1).expect("room");
        assert!(first);
        assert!(c.leave());
    }

    #[tokio::test]
    async fn events_reach_every_subscription_of_the_user_only() {
        let hub = Hub::default();
        let (mut a, _) = hub.subscribe(1).expect("room");
        let (mut b, _) = hub.subscribe(1).expect("room");
        let (mut other, _) = hub.subscribe(2).expect("room");
        hub.send(1, &request("x"));
        assert_eq!(a.next_event().await, Some(request("x")));
        assert_eq!(b.next_event().await, Some(request("x")));
        assert!(other.events.try_recv().is_err());
    }

    #[tokio::test]
    async fn wake_ups_coalesce_and_are_not_lost() {
        let hub = Hub::default();
        let (a, _) = hub.subscribe(1).expect("room");
        // Woken before it waits: the wake-up is kept.
        hub.wake(&[1, 1, 1]);
        tokio::time::timeout(std::time::Duration::from_secs(1), a.woken())
            .await
            .expect("woken");
        // Several wake-ups are one.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), a.woken())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_full_queue_marks_the_subscription_overflowed() {
        let hub = Hub::default();
        let (a, _) = hub.subscribe(1).expect("room");
        for _ in 0..QUEUE_LEN {
            hub.send(1, &request("x"));
        }
        assert!(!a.overflowed());
        hub.send(1, &request("x"));
        assert!(a.overflowed());
    }
}
