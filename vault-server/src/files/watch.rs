//! `watch_space`: a stream that tells a client each time a space's revision moves, so that
//! `vault sync --watch` pulls `changes` when there are some instead of polling.
//!
//! [`Watchers`] (in the server state) holds, per watched namespace, one
//! `tokio::sync::watch` channel of its newest revision. A write transaction that moved the
//! revision publishes it once ([`super::write`] → [`crate::relay::space_changed`], which
//! also tells the other instances); each watching stream wakes, reads the number and
//! writes one frame. A change costs one store per watched space and one wake-up per
//! watcher, whatever the watcher's backlog: a slow reader only ever gets the newest
//! revision. Unwatched spaces cost a map lookup.
//!
//! What changed is never in the frame: the client asks `changes` with its session's
//! rights, so a watcher learns nothing a `changes` would not tell it. Revisions moved
//! outside a request (`vault-admin fsck --repair` or `user delete`, the trash purge, a
//! request served by another process on SQLite, where there is no relay) are found by
//! [`catch_up`]: every [`CATCH_UP`] it reads the revisions of the watched spaces in one
//! query (none when nothing is watched) and publishes those that moved.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use vault_proto::proto::{ApiError, NsRef, Response};

use crate::db::files::namespaces;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

/// Watching streams one user may hold on one instance: a few folders on a few machines.
pub const MAX_PER_USER: usize = 64;

/// How often [`catch_up`] reads the watched spaces' revisions.
pub const CATCH_UP: Duration = Duration::from_secs(5);

/// The watched spaces of this instance.
#[derive(Debug, Default)]
pub struct Watchers {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Namespace id → its newest published revision.
    spaces: HashMap<i64, watch::Sender<u64>>,
    /// User id → how many streams they hold here.
    per_user: HashMap<i64, usize>,
}

impl Watchers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The namespaces a stream of this instance watches.
    pub fn watched(&self) -> Vec<i64> {
        self.lock().spaces.keys().copied().collect()
    }

    /// Whether a stream of this instance watches namespace `ns`.
    pub fn is_watched(&self, ns: i64) -> bool {
        self.lock().spaces.contains_key(&ns)
    }

    /// Namespace `ns` moved to `revision`: wakes its watchers (an older number than one
    /// already published is dropped).
    pub fn changed(&self, ns: i64, revision: u64) {
        if let Some(sender) = self.lock().spaces.get(&ns) {
            sender.send_if_modified(|newest| {
                let newer = revision > *newest;
                if newer {
                    *newest = revision;
                }
                newer
            });
        }
    }

    /// Registers a stream of `user` on namespace `ns`; `None` when the user holds
    /// [`MAX_PER_USER`] here already.
    fn join(&self, user: i64, ns: i64) -> Option<Watch<'_>> {
        let mut inner = self.lock();
        let held = inner.per_user.entry(user).or_default();
        if *held >= MAX_PER_USER {
            return None;
        }
        *held += 1;
        let receiver = inner
            .spaces
            .entry(ns)
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe();
        Some(Watch {
            watchers: self,
            user,
            ns,
            receiver: Some(receiver),
        })
    }

    /// Streams held here (for tests).
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.lock().per_user.values().sum()
    }
}

/// One watching stream's place in [`Watchers`]; leaves on drop.
#[derive(Debug)]
struct Watch<'a> {
    watchers: &'a Watchers,
    user: i64,
    ns: i64,
    receiver: Option<watch::Receiver<u64>>,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let mut inner = self.watchers.lock();
        drop(self.receiver.take());
        if let Some(held) = inner.per_user.get_mut(&self.user) {
            *held -= 1;
            if *held == 0 {
                inner.per_user.remove(&self.user);
            }
        }
        if inner
            .spaces
            .get(&self.ns)
            .is_some_and(|s| s.receiver_count() == 0)
        {
            inner.spaces.remove(&self.ns);
        }
    }
}

/// How a watching stream ended.
#[derive(Debug)]
pub enum Ended {
    /// The client stopped it, the connection closed or the session changed.
    Closed,
    /// Writing a frame failed.
    Broken,
}

/// Serves `watch_space` on `send`: checks the caller may read the space, answers
/// `watching` with its revision, then writes `space_changed` frames until `ended` fires
/// or `live` says the session changed. An error before `watching` is returned for the
/// caller to answer.
pub async fn serve(
    state: &ServerState,
    session: &SessionCtx,
    ns: &NsRef,
    send: &mut quinn::SendStream,
    ended: impl Future<Output = ()>,
    live: impl Fn() -> bool,
) -> Result<Ended, ApiError> {
    let space = super::namespace(state, session, ns).await?;
    let Some(mut watch) = state.watchers.join(session.user_id, space.id) else {
        return Err(ApiError::throttled(
            5,
            format!(
                "this account has {MAX_PER_USER} folders watched on this server already; stop \
                 one (another `vault sync --watch`) first"
            ),
        ));
    };
    // Read after joining: a change committed since is either in this number or published
    // to the stream.
    let id = space.id;
    let now = super::read(state, move |c| Ok(namespaces::revision_of(c, id)?)).await?;
    let mut sent = now.max(0) as u64;
    if write(send, &Response::Watching { revision: sent })
        .await
        .is_err()
    {
        return Ok(Ended::Broken);
    }
    let Some(receiver) = watch.receiver.as_mut() else {
        return Ok(Ended::Closed);
    };
    tokio::pin!(ended);
    loop {
        tokio::select! {
            _ = &mut ended => return Ok(Ended::Closed),
            changed = receiver.changed() => {
                if changed.is_err() || !live() {
                    return Ok(Ended::Closed);
                }
                let newest = *receiver.borrow_and_update();
                if newest > sent {
                    sent = newest;
                    let frame = Response::SpaceChanged { revision: newest };
                    if write(send, &frame).await.is_err() {
                        return Ok(Ended::Broken);
                    }
                }
            }
        }
    }
}

/// Publishes, `every` ([`CATCH_UP`]), the revisions of watched spaces that moved without
/// a request of this instance publishing them (a space already published at its revision
/// wakes nobody).
pub async fn catch_up(state: Arc<ServerState>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ids = state.watchers.watched();
        if ids.is_empty() {
            continue;
        }
        match state
            .db
            .run(move |c| namespaces::revisions_of(c, &ids))
            .await
        {
            Ok(found) => {
                for (id, revision) in found {
                    state.watchers.changed(id, revision.max(0) as u64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the watched spaces' revisions"),
        }
    }
}

async fn write(send: &mut quinn::SendStream, response: &Response) -> Result<(), ()> {
    let frame = vault_proto::proto::encode_frame(response).map_err(|_| ())?;
    send.write_all(&frame).await.map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watcher_gets_the_newest_revision_once_and_leaving_forgets_the_space() {
        let watchers = Watchers::default();
        assert!(!watchers.is_watched(7));
        let mut a = watchers.join(1, 7).expect("room");
        let rx = a.receiver.as_mut().expect("receiver");
        assert!(watchers.is_watched(7));
        // Three changes before the reader looks: it wakes once, at the newest.
        for revision in [3, 5, 4] {
            watchers.changed(7, revision);
        }
        rx.changed().await.expect("changed");
        assert_eq!(*rx.borrow_and_update(), 5);
        assert!(
            !rx.has_changed().expect("open"),
            "one wake-up for three changes"
        );
        // Another space's change does not reach it.
        watchers.changed(8, 9);
        assert!(!rx.has_changed().expect("open"));
        drop(a);
        assert!(!watchers.is_watched(7));
        assert_eq!(watchers.count(), 0);
    }

    #[test]
    fn a_user_holds_a_bounded_number_of_watching_streams() {
        let watchers = Watchers::default();
        let held: Vec<_> = (0..MAX_PER_USER)
            .map(|i| watchers.join(1, i as i64).expect("room"))
            .collect();
        assert!(watchers.join(1, 0).is_none());
        assert!(watchers.join(2, 0).is_some(), "another user has their own");
        drop(held);
        assert!(watchers.join(1, 0).is_some());
    }

    #[tokio::test]
    async fn a_revision_moved_outside_a_request_reaches_the_watchers() -> crate::testing::R<()> {
        let dir = tempfile::tempdir()?;
        let state = Arc::new(crate::testing::state(
            &dir,
            "files",
            |_| {},
            |s| Arc::new(s),
        )?);
        let (ns, before) = {
            let mut c = state.db.conn()?;
            let user = crate::testing::add_user(&mut c, "wes", b"key", 1 << 30)?;
            let ns = namespaces::personal_or_create(&mut c, user.id)?.id;
            (ns, namespaces::revision_of(&mut c, ns)?)
        };
        let mut watch = state.watchers.join(1, ns).expect("room");
        let rx = watch.receiver.as_mut().expect("receiver");
        let task = tokio::spawn(catch_up(Arc::clone(&state), Duration::from_millis(20)));
        // As `vault-admin` or another process would: straight in the database.
        let moved = namespaces::bump(&mut *state.db.conn()?, ns)?;
        assert!(moved > before);
        tokio::time::timeout(Duration::from_secs(5), async {
            while *rx.borrow_and_update() < moved as u64 {
                rx.changed().await.expect("open");
            }
        })
        .await?;
        task.abort();
        Ok(())
    }
}
