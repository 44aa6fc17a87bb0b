//! Connection slots: how many connections each client address (`address::client_key`) holds,
//! and how many of them are not logged in, per address and server-wide. A connection takes
//! a slot before its handshake and keeps it until it closes; logging in moves it out of the
//! smaller not-logged-in counts, logging out moves it back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::Limits;

/// The limits the slots enforce.
#[derive(Clone, Copy, Debug)]
struct SlotLimits {
    per_address: u32,
    prelogin_per_address: u32,
    prelogin_total: u32,
}

#[derive(Debug, Default)]
struct AddressCount {
    all: u32,
    prelogin: u32,
}

#[derive(Debug, Default)]
struct Counts {
    per_address: HashMap<IpAddr, AddressCount>,
    prelogin_total: u32,
}

#[derive(Debug)]
struct Shared {
    limits: SlotLimits,
    counts: Mutex<Counts>,
    /// Woken whenever a slot is freed or a connection logs in.
    freed: Notify,
}

/// Every connection slot of the server.
#[derive(Debug, Clone)]
pub struct ConnectionSlots(Arc<Shared>);

/// Why no slot was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The address has `connections_per_ip` connections.
    Address,
    /// The address has `prelogin_connections_per_ip` connections not logged in.
    AddressNotLoggedIn,
    /// The server has `prelogin_connections` connections not logged in.
    ServerNotLoggedIn,
}

impl ConnectionSlots {
    pub fn new(limits: &Limits) -> Self {
        ConnectionSlots(Arc::new(Shared {
            limits: SlotLimits {
                per_address: limits.connections_per_ip,
                prelogin_per_address: limits.prelogin_connections_per_ip,
                prelogin_total: limits.prelogin_connections,
            },
            counts: Mutex::new(Counts::default()),
            freed: Notify::new(),
        }))
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot, not logged in, for a connection from client key `key`.
    fn take(&self, key: IpAddr) -> Result<ConnectionSlot, Refused> {
        let limits = self.0.limits;
        let mut counts = self.counts();
        if counts.prelogin_total >= limits.prelogin_total {
            return Err(Refused::ServerNotLoggedIn);
        }
        let count = counts.per_address.entry(key).or_default();
        if count.all >= limits.per_address {
            return Err(Refused::Address);
        }
        if count.prelogin >= limits.prelogin_per_address {
            return Err(Refused::AddressNotLoggedIn);
        }
        count.all += 1;
        count.prelogin += 1;
        counts.prelogin_total += 1;
        Ok(ConnectionSlot {
            slots: self.clone(),
            key,
            logged_in: AtomicBool::new(false),
        })
    }

    /// [`Self::take`], waiting up to `wait` for a slot to be freed: a client that closes a
    /// connection and opens the next at once (a script running commands back to back)
    /// knocks a moment before the server has seen the close.
    pub async fn take_within(
        &self,
        key: IpAddr,
        wait: Duration,
    ) -> Result<ConnectionSlot, Refused> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.0.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a slot freed in between is not missed.
            freed.as_mut().enable();
            let refused = match self.take(key) {
                Ok(slot) => return Ok(slot),
                Err(refused) => refused,
            };
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(refused);
            }
        }
    }

    /// Connections not logged in, server-wide (for tests and stats).
    pub fn not_logged_in(&self) -> u32 {
        self.counts().prelogin_total
    }
}

/// One counted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    slots: ConnectionSlots,
    key: IpAddr,
    logged_in: AtomicBool,
}

impl ConnectionSlot {
    /// Moves the connection out of (`true`) or back into (`false`) the not-logged-in counts.
    pub fn set_logged_in(&self, logged_in: bool) {
        let mut counts = self.slots.counts();
        if self.logged_in.swap(logged_in, Ordering::SeqCst) == logged_in {
            return;
        }
        let Counts {
            per_address,
            prelogin_total,
        } = &mut *counts;
        let count = per_address.entry(self.key).or_default();
        if logged_in {
            count.prelogin = count.prelogin.saturating_sub(1);
            *prelogin_total = prelogin_total.saturating_sub(1);
        } else {
            count.prelogin += 1;
            *prelogin_total += 1;
        }
        drop(counts);
        if logged_in {
            self.slots.0.freed.notify_waiters();
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts();
        let prelogin = !self.logged_in.load(Ordering::SeqCst);
        if prelogin {
            counts.prelogin_total = counts.prelogin_total.saturating_sub(1);
        }
        if let Some(count) = counts.per_address.get_mut(&self.key) {
            count.all = count.all.saturating_sub(1);
            if prelogin {
                count.prelogin = count.prelogin.saturating_sub(1);
            }
            if count.all == 0 {
                counts.per_address.remove(&self.key);
            }
        }
        drop(counts);
        self.slots.0.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(per_address: u32, prelogin_per_address: u32, prelogin_total: u32) -> ConnectionSlots {
        ConnectionSlots::new(&Limits {
            connections_per_ip: per_address,
            prelogin_connections_per_ip: prelogin_per_address,
            prelogin_connections: prelogin_total,
            ..Limits::default()
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn logged_in_connections_leave_room_for_new_ones_up_to_the_address_limit() {
        let s = slots(3, 1, 10);
        let first = s.take(ip(1)).expect("first");
        assert_eq!(s.take(ip(1)).err(), Some(Refused::AddressNotLoggedIn));
        first.set_logged_in(true);
        let second = s.take(ip(1)).expect("second, the first logged in");
        second.set_logged_in(true);
        let _third = s.take(ip(1)).expect("third");
        assert_eq!(s.take(ip(1)).err(), Some(Refused::Address));
        drop(first);
        assert_eq!(s.take(ip(1)).err(), Some(Refused::AddressNotLoggedIn));
        second.set_logged_in(false);
        assert_eq!(s.not_logged_in(), 2);
    }

    #[test]
    fn the_server_wide_not_logged_in_limit_spans_addresses_and_frees_on_drop() {
        let s = slots(10, 10, 2);
        let a = s.take(ip(1)).expect("a");
        let _b = s.take(ip(2)).expect("b");
        assert_eq!(s.take(ip(3)).err(), Some(Refused::ServerNotLoggedIn));
        drop(a);
        let _c = s.take(ip(3)).expect("c after a closed");
        assert_eq!(s.not_logged_in(), 2);
    }

    #[tokio::test]
    async fn a_newcomer_waits_briefly_for_a_slot_being_freed() {
        let s = slots(1, 1, 10);
        let held = s.take(ip(1)).expect("held");
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.take_within(ip(1), Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        let _got = waiter.await.expect("join").expect("the freed slot");
        assert_eq!(
            s.take_within(ip(1), Duration::from_millis(10)).await.err(),
            Some(Refused::Address)
        );
    }
}
