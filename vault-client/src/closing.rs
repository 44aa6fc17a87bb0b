//! Connections this process has closed, kept until their close has left: a QUIC close is
//! sent by the connection's driver task the next time it runs, and a process that exits
//! first leaves the server holding the connection (and one of the address's
//! `connections_per_ip` slots) until its idle timeout. [`seen_out`] waits, briefly, until
//! every close has been handed to the socket.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A closed connection and how many datagrams it had sent when it was closed: once the
/// count grows, its close has gone out (a closed connection sends nothing else).
struct Closing {
    conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
    sent_before: u64,
}

impl Closing {
    fn is_out(&self) -> bool {
        self.conn.stats().udp_tx.datagrams > self.sent_before
    }
}

static CLOSING: Mutex<Vec<Closing>> = Mutex::new(Vec::new());

/// Closes `conn` with `reason` unless it is closed already, and remembers it for
/// [`seen_out`].
pub(crate) fn close(conn: &quinn::Connection, endpoint: &quinn::Endpoint, reason: &[u8]) {
    if conn.close_reason().is_some() {
        return;
    }
    let sent_before = conn.stats().udp_tx.datagrams;
    conn.close(0u8.into(), reason);
    let mut closing = CLOSING.lock().unwrap_or_else(|e| e.into_inner());
    // A long-running command (`chat listen`) reconnects many times: forget what left.
    closing.retain(|c| !c.is_out());
    closing.push(Closing {
        conn: conn.clone(),
        _endpoint: endpoint.clone(),
        sent_before,
    });
}

/// Waits until the close of every connection closed so far has gone out, or `limit` has
/// passed. Call it at the end of a command, on the runtime that drives the connections.
pub async fn seen_out(limit: Duration) {
    let deadline = Instant::now() + limit;
    for round in 0.. {
        let pending = {
            let mut closing = CLOSING.lock().unwrap_or_else(|e| e.into_inner());
            closing.retain(|c| !c.is_out());
            closing.len()
        };
        if pending == 0 || Instant::now() >= deadline {
            return;
        }
        // A few quick looks (the driver usually runs within microseconds), then a
        // millisecond at a time, leaving the cores to the driver's thread.
        if round < QUICK_LOOKS {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// How many times [`seen_out`] looks again at once before it starts sleeping between looks.
const QUICK_LOOKS: u32 = 32;
