//! The per-user message rate limit (`[chat] messages_per_minute`): a token bucket per
//! user, in memory, per server instance. A user may send a burst of a minute's worth,
//! then one message per `60 / messages_per_minute` seconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Above this many buckets, full ones (users idle for a minute) are dropped.
const PRUNE_ABOVE: usize = 10_000;
/// Rounding slack, so that a whole interval always earns a whole message.
const EPSILON: f64 = 1e-9;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets by user id.
#[derive(Debug)]
pub struct MessageLimit {
    per_minute: f64,
    buckets: Mutex<HashMap<i64, Bucket>>,
}

impl MessageLimit {
    pub fn new(per_minute: u32) -> Self {
        MessageLimit {
            per_minute: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one message from `user_id`'s allowance at `now`; `Err(seconds)` to wait when
    /// there is none left.
    pub fn take(&self, user_id: i64, now: Instant) -> Result<(), u64> {
        let rate = self.per_minute / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            let full = self.per_minute;
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < full);
        }
        let bucket = buckets.entry(user_id).or_insert(Bucket {
            tokens: self.per_minute,
            last: now,
        });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * rate)
            .min(self.per_minute);
        bucket.last = now;
        if bucket.tokens >= 1.0 - EPSILON {
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / rate - EPSILON).ceil();
        Err((wait as u64).max(1))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_of_a_minute_then_one_per_interval() {
        let limit = MessageLimit::new(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.take(1, t0), Ok(()));
        }
        // One message every 20 s after the burst.
        assert_eq!(limit.take(1, t0), Err(20));
        assert_eq!(limit.take(1, t0 + Duration::from_secs(15)), Err(5));
        assert_eq!(limit.take(1, t0 + Duration::from_secs(20)), Ok(()));
        assert_eq!(limit.take(1, t0 + Duration::from_secs(20)), Err(20));
        // Others have their own allowance.
        assert_eq!(limit.take(2, t0), Ok(()));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(limit.take(1, later), Ok(()));
        }
        assert!(limit.take(1, later).is_err());
    }
}
