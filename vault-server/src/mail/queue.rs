//! The outgoing mail queue. A request that mails something takes a slot first
//! ([`MailQueue::reserve`]), does its database work, hands the message to the slot and
//! answers at once: how long sending takes, or whether it works, never shows in the
//! answer. The [`MailWorker`] sends each message with retries and backoff and logs what
//! failed. Every message waiting, being sent or waiting for a retry holds its slot, so the
//! queue is bounded; a request that finds no free slot is refused the same way whatever
//! it would have mailed. The queue lives in memory: what is still in it when the server
//! stops is lost, and the person asks again.
//!
//! The number of slots is `mail.queue_size`. The worker sends a few messages at a time,
//! each up to `mail.attempts` tries with waits growing fourfold ([`BACKOFF_FACTOR`]), and
//! logs each failure by the kind of mail, never with its address or code.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use zeroize::Zeroizing;

use super::{Delivery, MailError, Mailer};

/// How many messages are handed to the transport at the same time.
const SENDING_AT_ONCE: usize = 4;

/// Each retry waits this many times longer than the one before.
const BACKOFF_FACTOR: u32 = 4;

/// What a message is, for the log (which never shows its address or contents).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailKind {
    /// A code to finish registering.
    RegisterCode,
    /// A code to reset a password.
    ResetCode,
    /// To the owner of an address someone tried to register again: no code.
    RegisterNotice,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::RegisterCode => "registration code",
            MailKind::ResetCode => "reset code",
            MailKind::RegisterNotice => "registration notice",
        }
    }
}

/// One plain-text message on its way out. The body may hold a code: it is zeroized when
/// the message is dropped, and `Debug` shows neither it nor the address.
pub struct OutgoingMail {
    pub kind: MailKind,
    pub to: String,
    pub subject: &'static str,
    pub body: Zeroizing<String>,
}

impl std::fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A message with the slot it holds until it is sent or given up.
struct Queued {
    mail: OutgoingMail,
    _slot: OwnedSemaphorePermit,
}

/// The sending side, shared by every request.
#[derive(Clone, Debug)]
pub struct MailQueue {
    to_worker: mpsc::UnboundedSender<Queued>,
    slots: Arc<Semaphore>,
    size: u32,
}

/// A free place in the queue, taken before a request decides what to mail. Dropping it
/// unused gives the place back.
#[derive(Debug)]
pub struct MailSlot {
    to_worker: mpsc::UnboundedSender<Queued>,
    slot: OwnedSemaphorePermit,
}

impl MailSlot {
    /// Puts `mail` in the queue; the worker sends it. Never waits.
    pub fn send(self, mail: OutgoingMail) {
        let kind = mail.kind;
        let queued = Queued {
            mail,
            _slot: self.slot,
        };
        if self.to_worker.send(queued).is_err() {
            tracing::error!(
                kind = kind.as_str(),
                "the mail worker has stopped; a message was dropped"
            );
        }
    }
}

impl MailQueue {
    /// A queue of `size` slots (at least one) and the worker that empties it.
    pub fn new(size: u32) -> (MailQueue, MailWorker) {
        let size = size.max(1);
        let (to_worker, from_requests) = mpsc::unbounded_channel();
        let queue = MailQueue {
            to_worker,
            slots: Arc::new(Semaphore::new(size as usize)),
            size,
        };
        (queue, MailWorker { from_requests })
    }

    /// A free slot, or `None` when the queue is full.
    pub fn reserve(&self) -> Option<MailSlot> {
        let slot = Arc::clone(&self.slots).try_acquire_owned().ok()?;
        Some(MailSlot {
            to_worker: self.to_worker.clone(),
            slot,
        })
    }

    /// Messages not yet sent or given up (including those waiting for a retry).
    pub fn pending(&self) -> usize {
        (self.size as usize).saturating_sub(self.slots.available_permits())
    }

    /// Waits up to `within` for every message to be sent or given up; true when the
    /// queue is empty.
    pub async fn drained(&self, within: Duration) -> bool {
        tokio::time::timeout(within, self.slots.acquire_many(self.size))
            .await
            .is_ok_and(|all| all.is_ok())
    }
}

/// How often and when a message that failed is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, the first included (at least one).
    pub attempts: u32,
    /// The wait before the second try; each later wait is [`BACKOFF_FACTOR`] times longer.
    pub first_wait: Duration,
}

impl Retry {
    /// The wait after failed try number `attempt` (1-based).
    fn wait_after(&self, attempt: u32) -> Duration {
        self.first_wait
            .saturating_mul(BACKOFF_FACTOR.saturating_pow(attempt.saturating_sub(1)))
    }
}

/// What sends a message: the configured [`Mailer`], or a stand-in in tests.
pub trait Transport: Clone + Send + Sync + 'static {
    fn deliver(
        &self,
        mail: &OutgoingMail,
    ) -> impl Future<Output = Result<Delivery, MailError>> + Send;
}

impl Transport for Mailer {
    async fn deliver(&self, mail: &OutgoingMail) -> Result<Delivery, MailError> {
        self.send(&mail.to, mail.subject, mail.body.to_string())
            .await
    }
}

/// The receiving side: run it once, on the server's runtime.
#[derive(Debug)]
pub struct MailWorker {
    from_requests: mpsc::UnboundedReceiver<Queued>,
}

impl MailWorker {
    /// Sends every queued message through `transport` (a few at a time, each with its own
    /// retries), until every [`MailQueue`] is dropped.
    pub async fn run(mut self, transport: impl Transport, retry: Retry) {
        let sending = Arc::new(Semaphore::new(SENDING_AT_ONCE));
        while let Some(queued) = self.from_requests.recv().await {
            tokio::spawn(deliver(
                transport.clone(),
                queued,
                retry,
                Arc::clone(&sending),
            ));
        }
    }

    /// The messages queued so far, without sending them: what a test checks.
    #[cfg(test)]
    pub fn take_queued(&mut self) -> Vec<OutgoingMail> {
        let mut mails = Vec::new();
        while let Ok(queued) = self.from_requests.try_recv() {
            mails.push(queued.mail);
        }
        mails
    }
}

/// Tries one message until it is sent or its tries are used up; then frees its slot.
async fn deliver(transport: impl Transport, queued: Queued, retry: Retry, sending: Arc<Semaphore>) {
    let kind = queued.mail.kind.as_str();
    let attempts = retry.attempts.max(1);
    for attempt in 1..=attempts {
        let result = {
            let _turn = sending.acquire().await;
            transport.deliver(&queued.mail).await
        };
        match result {
            Ok(Delivery::File(path)) => {
                tracing::info!(kind, path = %path.display(), "mail written to the outbox");
                crate::telemetry::mail(true);
                return;
            }
            Ok(Delivery::Smtp) => {
                tracing::info!(kind, attempt, "mail handed to the SMTP server");
                crate::telemetry::mail(true);
                return;
            }
            Err(e) if attempt < attempts && e.worth_retrying() => {
                let wait = retry.wait_after(attempt);
                tracing::warn!(
                    kind,
                    attempt,
                    error = %e,
                    "mail could not be sent; trying again in {} s",
                    wait.as_secs()
                );
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                tracing::error!(
                    kind,
                    attempts = attempt,
                    error = %e,
                    "mail could not be sent; given up (check the mail settings with \
                     `vault-admin mail test ADDR`)"
                );
                crate::telemetry::mail(false);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A transport that fails its first `failures` tries and records every try.
    #[derive(Clone)]
    struct Flaky {
        failures: u32,
        tries: Arc<AtomicU32>,
        sent: Arc<Mutex<Vec<(String, String)>>>,
    }

    impl Flaky {
        fn new(failures: u32) -> Flaky {
            Flaky {
                failures,
                tries: Arc::new(AtomicU32::new(0)),
                sent: Arc::new(Mutex::new(Vec::new())),
            }
        }
    }

    impl Transport for Flaky {
        async fn deliver(&self, mail: &OutgoingMail) -> Result<Delivery, MailError> {
            if self.tries.fetch_add(1, Ordering::SeqCst) < self.failures {
                return Err(MailError::Smtp("connection refused".into()));
            }
            self.sent
                .lock()
                .expect("lock")
                .push((mail.to.clone(), mail.body.to_string()));
            Ok(Delivery::Smtp)
        }
    }

    fn mail(to: &str) -> OutgoingMail {
        OutgoingMail {
            kind: MailKind::RegisterCode,
            to: to.into(),
            subject: "subject",
            body: Zeroizing::new(format!("body for {to}")),
        }
    }

    const FAST: Retry = Retry {
        attempts: 3,
        first_wait: Duration::from_millis(20),
    };

    #[tokio::test]
    async fn a_message_that_fails_is_tried_again_until_it_is_sent() {
        let (queue, worker) = MailQueue::new(4);
        let flaky = Flaky::new(2);
        tokio::spawn(worker.run(flaky.clone(), FAST));
        queue.reserve().expect("slot").send(mail("a@example.org"));
        assert!(queue.drained(Duration::from_secs(5)).await, "sent in time");
        assert_eq!(flaky.tries.load(Ordering::SeqCst), 3);
        assert_eq!(
            *flaky.sent.lock().expect("lock"),
            [(
                "a@example.org".to_string(),
                "body for a@example.org".to_string()
            )]
        );
    }

    #[tokio::test]
    async fn a_message_that_never_goes_is_given_up_after_its_tries_and_frees_its_slot() {
        let (queue, worker) = MailQueue::new(1);
        let flaky = Flaky::new(u32::MAX);
        tokio::spawn(worker.run(flaky.clone(), FAST));
        queue.reserve().expect("slot").send(mail("a@example.org"));
        assert!(
            queue.reserve().is_none(),
            "the one slot is held while it is retried"
        );
        assert!(
            queue.drained(Duration::from_secs(5)).await,
            "given up in time"
        );
        assert_eq!(flaky.tries.load(Ordering::SeqCst), FAST.attempts);
        assert!(flaky.sent.lock().expect("lock").is_empty());
        assert!(queue.reserve().is_some(), "the slot is free again");
    }

    #[tokio::test]
    async fn a_full_queue_has_no_slot_until_one_is_given_back() {
        let (queue, mut worker) = MailQueue::new(2);
        let first = queue.reserve().expect("first slot");
        let second = queue.reserve().expect("second slot");
        assert!(queue.reserve().is_none(), "full");
        assert_eq!(queue.pending(), 2);
        drop(first);
        let third = queue
            .reserve()
            .expect("a slot given back unused is free again");
        second.send(mail("b@example.org"));
        third.send(mail("c@example.org"));
        assert!(
            queue.reserve().is_none(),
            "queued messages hold their slots"
        );
        let queued = worker.take_queued();
        assert_eq!(
            queued.iter().map(|m| m.to.as_str()).collect::<Vec<_>>(),
            ["b@example.org", "c@example.org"]
        );
        drop(queued);
        assert!(
            queue.reserve().is_some(),
            "a message done with gives its slot back"
        );
    }

    /// A transport that refuses every message as unusable.
    #[derive(Clone, Default)]
    struct Refusing {
        tries: Arc<AtomicU32>,
    }

    impl Transport for Refusing {
        async fn deliver(&self, _mail: &OutgoingMail) -> Result<Delivery, MailError> {
            self.tries.fetch_add(1, Ordering::SeqCst);
            Err(MailError::Recipient)
        }
    }

    #[tokio::test]
    async fn a_message_that_cannot_be_sent_as_it_is_is_not_tried_again() {
        let (queue, worker) = MailQueue::new(1);
        let refusing = Refusing::default();
        tokio::spawn(worker.run(refusing.clone(), FAST));
        queue.reserve().expect("slot").send(mail("a@example.org"));
        assert!(
            queue.drained(Duration::from_secs(5)).await,
            "given up at once"
        );
        assert_eq!(refusing.tries.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn waits_grow_by_the_backoff_factor() {
        let retry = Retry {
            attempts: 4,
            first_wait: Duration::from_secs(15),
        };
        let waits: Vec<u64> = (1..4).map(|a| retry.wait_after(a).as_secs()).collect();
        assert_eq!(waits, [15, 60, 240]);
    }

    #[test]
    fn debug_shows_neither_address_nor_body() {
        let text = format!("{:?}", mail("secret@example.org"));
        assert!(!text.contains("secret"), "{text}");
    }
}
