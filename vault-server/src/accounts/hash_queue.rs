//! Password-hash work shared fairly among client addresses (`net::address::client_key`):
//! as many checks run at once as the machine has cores, and waiting checks are taken one
//! address at a time, in turn. An address with many checks queued then delays another
//! address's check by at most one check per address waiting, not by its whole queue.
//! (How many one address may queue at all is capped before this, by `LoginGate`.)

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// The queue of Argon2 work.
#[derive(Debug)]
pub struct HashQueue {
    slots: usize,
    state: Mutex<QueueState>,
}

#[derive(Debug, Default)]
struct QueueState {
    running: usize,
    waiting: HashMap<IpAddr, VecDeque<oneshot::Sender<()>>>,
    /// Addresses with checks waiting, in the order they get their next turn.
    turns: VecDeque<IpAddr>,
}

/// The right to run one check; the next waiting check runs when it is dropped.
#[derive(Debug)]
pub struct HashTurn<'a> {
    queue: &'a HashQueue,
}

/// A check waiting for its turn. Dropped after it was handed a turn but before it took
/// it (its request was cancelled), it passes the turn on.
struct Waiting<'a> {
    queue: &'a HashQueue,
    handed: Option<oneshot::Receiver<()>>,
}

impl HashQueue {
    pub fn new(slots: usize) -> Self {
        HashQueue {
            slots: slots.max(1),
            state: Mutex::new(QueueState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a turn for a check on behalf of client key `key`.
    pub async fn turn(&self, key: IpAddr) -> HashTurn<'_> {
        let handed = {
            let mut state = self.state();
            if state.running < self.slots && state.turns.is_empty() {
                state.running += 1;
                return HashTurn { queue: self };
            }
            let (tx, rx) = oneshot::channel();
            let QueueState { waiting, turns, .. } = &mut *state;
            let queue = waiting.entry(key).or_default();
            if queue.is_empty() {
                turns.push_back(key);
            }
            queue.push_back(tx);
            rx
        };
        let mut waiting = Waiting {
            queue: self,
            handed: Some(handed),
        };
        let handed = waiting.handed.as_mut().map(|rx| async { rx.await.is_ok() });
        if let Some(handed) = handed
            && handed.await
        {
            waiting.handed = None;
        }
        HashTurn { queue: self }
    }

    /// Hands the turn just finished to the next waiting check, or frees it.
    fn pass_on(&self) {
        let mut state = self.state();
        while let Some(key) = state.turns.pop_front() {
            let Some(queue) = state.waiting.get_mut(&key) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                state.waiting.remove(&key);
            } else {
                state.turns.push_back(key);
            }
            if let Some(next) = next
                && next.send(()).is_ok()
            {
                return;
            }
        }
        state.running = state.running.saturating_sub(1);
    }
}

impl Drop for HashTurn<'_> {
    fn drop(&mut self) {
        self.queue.pass_on();
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.handed.take()
            && rx.try_recv().is_ok()
        {
            self.queue.pass_on();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[tokio::test]
    async fn waiting_checks_run_one_address_at_a_time_in_turn() {
        let queue = Arc::new(HashQueue::new(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = queue.turn(ip(9)).await;
        let mut tasks = Vec::new();
        // The flooder queues five, then someone else queues one.
        for (i, last) in [1, 1, 1, 1, 1, 2].into_iter().enumerate() {
            let (queue, order) = (Arc::clone(&queue), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let _turn = queue.turn(ip(last)).await;
                order.lock().expect("order").push((last, i));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(first);
        for t in tasks {
            t.await.expect("join");
        }
        let order = order.lock().expect("order").clone();
        assert_eq!(
            order[..2],
            [(1, 0), (2, 5)],
            "the other address runs second: {order:?}"
        );
        assert_eq!(order.len(), 6);
    }

    #[tokio::test]
    async fn a_cancelled_wait_passes_its_turn_on() {
        let queue = Arc::new(HashQueue::new(1));
        let held = queue.turn(ip(1)).await;
        let cancelled = {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move {
                let _turn = queue.turn(ip(2)).await;
                std::future::pending::<()>().await;
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        cancelled.abort();
        let _ = cancelled.await;
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), queue.turn(ip(3)))
            .await
            .expect("the slot is free again");
    }
}
