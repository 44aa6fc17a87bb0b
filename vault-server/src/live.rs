//! The registry of sessions bound to live QUIC connections. A session can end elsewhere
//! (admin kick or lock, a password change on another connection, `single_session`, even
//! another server instance); `watch` notices it in the database and closes the
//! connection with the reason, within `sessions.check_interval_ms`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::db::{self, Db};

pub use vault_proto::proto::{CLOSE_SESSION_ENDED, CLOSE_SHUTDOWN};

/// Session id → the connections it is bound to (by quinn's stable id).
#[derive(Debug, Default)]
pub struct LiveSessions {
    map: Mutex<HashMap<i64, Vec<(usize, quinn::Connection)>>>,
    /// Wakes [`LiveSessions::watch`] before its next tick (a session ended somewhere).
    check: tokio::sync::Notify,
}

impl LiveSessions {
    pub fn bind(&self, session_id: i64, conn: &quinn::Connection) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(session_id)
            .or_default()
            .push((conn.stable_id(), conn.clone()));
    }

    /// Forgets a connection (closed, or its session changed).
    pub fn unbind(&self, conn_id: usize) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, conns| {
            conns.retain(|(id, _)| *id != conn_id);
            !conns.is_empty()
        });
    }

    fn session_ids(&self) -> Vec<i64> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Closes every connection of `session_id` with `reason`.
    pub fn close_session(&self, session_id: i64, reason: &str) {
        let conns = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session_id);
        for (_, conn) in conns.unwrap_or_default() {
            conn.close(
                CLOSE_SESSION_ENDED.into(),
                format!("session ended: {reason}").as_bytes(),
            );
        }
    }

    /// Has [`LiveSessions::watch`] look at the database now.
    pub fn check_now(&self) {
        self.check.notify_one();
    }

    /// Looks in the database for bound sessions that have ended and closes them: at once
    /// when told ([`LiveSessions::check_now`]: the relay heard of an ended session), and
    /// every `every` in case a note was missed. Runs until the task is dropped.
    pub async fn watch(&self, db: Db, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.check.notified() => {}
            }
            let ids = self.session_ids();
            if ids.is_empty() {
                continue;
            }
            match db.run(move |c| db::sessions::ended_among(c, &ids)).await {
                Ok(ended) => {
                    for (id, reason) in ended {
                        let reason = reason.unwrap_or_else(|| "ended".into());
                        tracing::info!(session = id, %reason, "closing connections of an ended session");
                        self.close_session(id, &reason);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "session watch query failed"),
            }
        }
    }
}
