//! What transfers report while they run ([`Progress`], drawn by the CLI only on a TTY) and
//! an optional bandwidth limit shared by every transfer of one command ([`RateLimit`]).

use std::time::{Duration, Instant};

/// Receives progress of a batch of transfers. Implementations must be cheap: `advance` is
/// called once per chunk.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// The batch has `files` files of `bytes` plaintext bytes in all.
    fn begin(&self, files: u64, bytes: u64);
    /// `bytes` more plaintext bytes are done (or were already there after a resume).
    fn advance(&self, bytes: u64);
    /// One more file is done.
    fn file_done(&self);
    /// A line for the person waiting (a retry, a skipped file).
    fn note(&self, text: &str);
    /// `bytes` advanced earlier are to be done again (a transfer retried after a broken
    /// connection counts what it kept once more): the bar moves back.
    fn retreat(&self, _bytes: u64) {}
}

/// The progress of one transfer across its attempts (see `with_retry` in
/// [`super::transfer`]): passes everything on, counting the bytes the current attempt
/// advanced, so that before the next attempt they are taken back ([`Attempt::take_back`])
/// and a bar never runs past its total.
#[derive(Debug)]
pub struct Attempt<'a> {
    inner: &'a dyn Progress,
    advanced: std::sync::atomic::AtomicU64,
}

impl<'a> Attempt<'a> {
    pub fn new(inner: &'a dyn Progress) -> Self {
        Attempt {
            inner,
            advanced: 0.into(),
        }
    }

    /// Takes back what this attempt advanced; the next attempt starts from zero.
    pub fn take_back(&self) {
        let bytes = self.advanced.swap(0, std::sync::atomic::Ordering::Relaxed);
        if bytes > 0 {
            self.inner.retreat(bytes);
        }
    }
}

impl Progress for Attempt<'_> {
    fn begin(&self, files: u64, bytes: u64) {
        self.inner.begin(files, bytes);
    }

    fn advance(&self, bytes: u64) {
        self.advanced
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        self.inner.advance(bytes);
    }

    fn file_done(&self) {
        self.inner.file_done();
    }

    fn note(&self, text: &str) {
        self.inner.note(text);
    }

    fn retreat(&self, bytes: u64) {
        let _ = self.advanced.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |n| Some(n.saturating_sub(bytes)),
        );
        self.inner.retreat(bytes);
    }
}

/// Reports nothing (not a TTY, or a library caller that does not care).
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _files: u64, _bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn file_done(&self) {}
    fn note(&self, _text: &str) {}
}

/// A bandwidth limit in bytes per second over all transfers of a command (`--bwlimit`).
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_s: u64,
    state: tokio::sync::Mutex<(Instant, u64)>,
}

impl RateLimit {
    pub fn new(bytes_per_s: u64) -> Self {
        RateLimit {
            bytes_per_s: bytes_per_s.max(1),
            state: tokio::sync::Mutex::new((Instant::now(), 0)),
        }
    }

    /// Accounts for `bytes` and sleeps as long as the transfers are ahead of the limit.
    pub async fn take(&self, bytes: u64) {
        let wait = {
            let mut state = self.state.lock().await;
            state.1 = state.1.saturating_add(bytes);
            let due = Duration::from_secs_f64(state.1 as f64 / self.bytes_per_s as f64);
            due.saturating_sub(state.0.elapsed())
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Applies an optional limit.
pub async fn pace(limit: Option<&RateLimit>, bytes: u64) {
    if let Some(limit) = limit {
        limit.take(bytes).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_limit_slows_transfers_down() {
        let limit = RateLimit::new(1_000_000);
        let start = Instant::now();
        for _ in 0..3 {
            limit.take(100_000).await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(290), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    /// A bar as the CLI draws it: a position that moves both ways.
    #[derive(Debug, Default)]
    struct Position(std::sync::atomic::AtomicI64);

    impl Progress for Position {
        fn begin(&self, _files: u64, _bytes: u64) {}
        fn advance(&self, bytes: u64) {
            self.0
                .fetch_add(bytes as i64, std::sync::atomic::Ordering::Relaxed);
        }
        fn file_done(&self) {}
        fn note(&self, _text: &str) {}
        fn retreat(&self, bytes: u64) {
            self.0
                .fetch_sub(bytes as i64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn a_retried_transfer_takes_back_what_its_failed_attempt_counted() {
        let bar = Position::default();
        bar.advance(1000); // another transfer's bytes stay
        let one = Attempt::new(&bar);
        one.advance(300);
        one.advance(200);
        one.take_back();
        // The retry resumes: the 500 bytes kept count once, then the rest.
        one.advance(500);
        one.advance(100);
        assert_eq!(bar.0.load(std::sync::atomic::Ordering::Relaxed), 1600);
        one.take_back();
        one.take_back();
        assert_eq!(bar.0.load(std::sync::atomic::Ordering::Relaxed), 1000);
    }
}
