//! The memory request frames may hold while they arrive: a server-wide byte budget, and a
//! smaller share of it for connections that have not logged in. A frame's buffer grows only
//! as its bytes arrive (never to the length its header declares), and each growth is taken
//! from the budget first; a frame that finds the budget spent is answered "busy, retry"
//! instead of being read. What a frame took returns when its buffer is dropped.

use tokio::sync::{Semaphore, SemaphorePermit, TryAcquireError};

use crate::config::Limits;

/// Both budgets, in bytes.
#[derive(Debug)]
pub struct FrameBudget {
    all: Semaphore,
    prelogin: Semaphore,
    capacity: usize,
}

/// The budget is spent: the frame cannot grow now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent;

impl FrameBudget {
    pub fn new(limits: &Limits) -> Self {
        let bytes = |n: u64| {
            usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS)
        };
        let capacity = bytes(limits.request_buffer.0);
        FrameBudget {
            all: Semaphore::new(capacity),
            prelogin: Semaphore::new(bytes(limits.prelogin_buffer.0)),
            capacity,
        }
    }

    /// An empty reservation for one frame; `prelogin` when its connection is not logged in.
    pub fn reservation(&self, prelogin: bool) -> Reservation<'_> {
        Reservation {
            budget: self,
            prelogin,
            all: None,
            prelogin_part: None,
            bytes: 0,
        }
    }

    /// Bytes of the server-wide budget held by frames still arriving.
    pub fn in_use(&self) -> usize {
        self.capacity - self.all.available_permits()
    }
}

/// The bytes one frame holds; returned to the budget when dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a FrameBudget,
    prelogin: bool,
    all: Option<SemaphorePermit<'a>>,
    prelogin_part: Option<SemaphorePermit<'a>>,
    bytes: usize,
}

impl Reservation<'_> {
    /// Takes `more` bytes, from the not-logged-in share too when the connection is not
    /// logged in; on `Spent`, nothing more is taken.
    pub fn grow(&mut self, more: usize) -> Result<(), Spent> {
        if more == 0 {
            return Ok(());
        }
        let n = u32::try_from(more).map_err(|_| Spent)?;
        let take = |s| match Semaphore::try_acquire_many(s, n) {
            Ok(p) => Ok(p),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => Err(Spent),
        };
        let prelogin_part = if self.prelogin {
            Some(take(&self.budget.prelogin)?)
        } else {
            None
        };
        let all = take(&self.budget.all)?;
        merge(&mut self.all, all);
        if let Some(p) = prelogin_part {
            merge(&mut self.prelogin_part, p);
        }
        self.bytes += more;
        Ok(())
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

fn merge<'a>(held: &mut Option<SemaphorePermit<'a>>, more: SemaphorePermit<'a>) {
    match held {
        Some(p) => p.merge(more),
        None => *held = Some(more),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    fn budget(all: u64, prelogin: u64) -> FrameBudget {
        FrameBudget::new(&Limits {
            request_buffer: ByteSize(all),
            prelogin_buffer: ByteSize(prelogin),
            ..Limits::default()
        })
    }

    #[test]
    fn frames_before_login_are_held_to_their_share_and_give_it_back_when_dropped() {
        let b = budget(1000, 300);
        let mut early = b.reservation(true);
        early.grow(200).expect("within the share");
        assert_eq!(early.grow(101), Err(Spent));
        assert_eq!(early.bytes(), 200);
        let mut logged_in = b.reservation(false);
        logged_in.grow(800).expect("the rest of the budget");
        assert_eq!(logged_in.grow(1), Err(Spent));
        assert_eq!(b.in_use(), 1000);
        drop(early);
        assert_eq!(b.in_use(), 800);
        let mut again = b.reservation(true);
        again.grow(200).expect("freed by the drop");
        drop((again, logged_in));
        assert_eq!(b.in_use(), 0);
    }

    #[test]
    fn a_refused_growth_takes_nothing_from_either_budget() {
        let b = budget(100, 100);
        let mut a = b.reservation(false);
        a.grow(60).expect("a");
        let mut early = b.reservation(true);
        assert_eq!(early.grow(50), Err(Spent), "over the server-wide budget");
        early
            .grow(40)
            .expect("the share was not kept by the refused growth");
        assert_eq!(b.in_use(), 100);
    }
}
