//! The chat phase (issue 6): messages a fresh server relays from one sender to one
//! listening receiver over loopback, as messages per second and end-to-end latency.
//!
//! - The receiver is a real `vault chat listen --json`; a thread reads its lines and notes
//!   the [`Instant`] each one arrived.
//! - The sender sends in this process through `vault-client`, one message after another,
//!   each text carrying its index; the [`Instant`] before each send is its start.
//! - A warm-up message that must arrive first proves the listener's subscription stands
//!   before anything is timed.
//! - The server's `[chat] messages_per_minute` is lifted ([`LIFTED_CHAT`]) so that the
//!   figures measure the relay, not the limit.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vault_client::chat::send::send;
use vault_client::files::{Files, FilesError};
use vault_client::state::StateDir;
use vault_core::proto::chat::ChatTarget;

use crate::procs::{Bins, Client, Server};
use crate::report::{Row, median, percentile};
use crate::scenarios::Plan;

/// The `[chat]` table that lifts the per-user message rate.
pub const LIFTED_CHAT: &str = "[chat]\nmessages_per_minute = 1000000\n";
const SENDER: &str = "sender";
const LISTENER: &str = "listener";
/// Every timed message is this followed by its index.
const PREFIX: &str = "bench message ";
const WARM_UP: &str = "bench warm-up";
/// How long the warm-up message may take to arrive (the listener starting and subscribing).
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long after the last send the remaining messages may take to arrive.
const DRAIN_WITHIN: Duration = Duration::from_secs(60);

const RELAY: &str = "chat relay, 1 sender → 1 listener";
const LATENCY: &str = "chat latency, median";
const RELAY_REFERENCE: &str = "no target; [chat] messages_per_minute = 1000000";

/// Sends `plan.chat_messages` messages through a fresh server (with `plan.limits` and
/// [`LIFTED_CHAT`]) and adds the relay and latency rows.
pub fn relay(bins: &Bins, plan: &Plan, work: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let count = plan.chat_messages;
    let server = Server::start_with(bins, &plan.limits, LIFTED_CHAT)?;
    let outcome = server.explain(measure(bins, [&server, &server], count, work))?;
    server.stop()?;
    rows.extend(outcome.rows(count));
    Ok(())
}

/// The sender on one instance and the listener on another, of one deployment on the
/// PostgreSQL database `database_url`: what crosses is the relay's `NOTIFY`. Adds the
/// latency row, against the target of 20 ms.
pub fn across_instances(
    bins: &Bins,
    plan: &Plan,
    database_url: &str,
    work: &Path,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let count = plan.chat_messages.min(500);
    let top = format!("database_url = \"{database_url}\"");
    let a = Server::start_on(bins, &plan.limits, LIFTED_CHAT, &top, &[])?;
    let b = Server::start_on(bins, &plan.limits, LIFTED_CHAT, &top, &[])?;
    let outcome = a.explain(b.explain(measure(bins, [&a, &b], count, work)))?;
    a.stop()?;
    b.stop()?;
    match outcome {
        Outcome::Done(f) => {
            rows.push(Row::at_most(
                ACROSS,
                f.median_ms,
                "ms",
                20.0,
                &format!("≤ 20 ms; p99 {:.1} ms, {count} messages", f.p99_ms),
            ));
        }
        Outcome::TimedOut { arrived } => rows.push(Row::not_available(
            ACROSS,
            "ms",
            "≤ 20 ms",
            &format!("only {arrived} of {count} messages arrived"),
        )),
    }
    Ok(())
}

const ACROSS: &str = "chat latency across two instances, median";

/// Two mutual contacts, the listener started, the messages sent and collected: the
/// sender on `servers[0]`, the listener on `servers[1]`.
fn measure(
    bins: &Bins,
    [on, to]: [&Server; 2],
    count: usize,
    work: &Path,
) -> anyhow::Result<Outcome> {
    let sender = Client::register(bins, on, SENDER)?;
    let listener = Client::register(bins, to, LISTENER)?;
    sender.run(&["contact", "add", LISTENER], None)?;
    listener.run(&["contact", "accept", SENDER], None)?;

    eprintln!("vault-bench: chat, {count} messages from one sender to one listener");
    let listening = Listening::start(&listener, &work.join("listener.log"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    let files = runtime
        .block_on(Files::open(&StateDir::at(sender.state_dir())))
        .context("the sender cannot open its session")?;
    let target = ChatTarget::User {
        username: LISTENER.into(),
    };
    runtime
        .block_on(send(&files, &target, WARM_UP))
        .map_err(|e| send_failed("the warm-up message", &e))?;
    listening.wait_warm_up()?;

    let starts = runtime.block_on(async {
        let mut starts = Vec::with_capacity(count);
        for index in 0..count {
            starts.push(Instant::now());
            send(&files, &target, &format!("{PREFIX}{index}"))
                .await
                .map_err(|e| send_failed(&format!("message {index}"), &e))?;
        }
        anyhow::Ok(starts)
    })?;
    let arrivals = listening.collect(count)?;
    drop(files);
    listening.stop();
    Ok(match arrivals.iter().copied().collect::<Option<Vec<_>>>() {
        Some(arrivals) => Outcome::Done(Figures::new(&starts, &arrivals)),
        None => Outcome::TimedOut {
            arrived: arrivals.iter().flatten().count(),
        },
    })
}

fn send_failed(what: &str, e: &FilesError) -> anyhow::Error {
    let hint = if e.retry_after().is_some() {
        " (the server throttled the sender: run with --lift-limits)"
    } else {
        ""
    };
    anyhow::anyhow!("cannot send {what} to {LISTENER}: {e}{hint}")
}

/// What one line of `vault chat listen --json` says.
#[derive(Debug, PartialEq)]
enum Line {
    /// Timed message `index`.
    Message(usize),
    WarmUp,
    /// A message that failed the listener's checks, and why.
    Refused(String),
    /// Anything else (presence, contact events, other text).
    Other,
}

impl Line {
    fn parse(line: &str) -> Line {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            return Line::Other;
        };
        if value["type"] != "message" {
            return Line::Other;
        }
        if value["verified"] != true {
            let why = value["error"].as_str().unwrap_or("no reason given");
            return Line::Refused(why.to_string());
        }
        match value["text"].as_str() {
            Some(WARM_UP) => Line::WarmUp,
            Some(text) => text
                .strip_prefix(PREFIX)
                .and_then(|i| i.parse().ok())
                .map_or(Line::Other, Line::Message),
            None => Line::Other,
        }
    }
}

/// The running `vault chat listen --json` and the timed lines of its stdout; killed on drop.
struct Listening {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    log: std::path::PathBuf,
}

impl Listening {
    /// Starts the listener with its stderr in `log`.
    fn start(client: &Client, log: &Path) -> anyhow::Result<Listening> {
        let stderr = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = client
            .command(&["chat", "listen", "--json"], None)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("cannot start `vault chat listen`")?;
        let stdout = child
            .stdout
            .take()
            .context("no stdout of `vault chat listen`")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(Listening {
            child,
            lines,
            log: log.to_path_buf(),
        })
    }

    /// The next line before `deadline`: `None` at the deadline, an error when the listener
    /// ended or refused a message.
    fn next(&self, deadline: Instant) -> anyhow::Result<Option<(Instant, Line)>> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok((at, text)) => match Line::parse(&text) {
                Line::Refused(why) => bail!("`vault chat listen` refused a message: {why}"),
                line => Ok(Some((at, line))),
            },
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                bail!("`vault chat listen` ended early: {}", log.trim())
            }
        }
    }

    /// Waits for the warm-up message.
    fn wait_warm_up(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match self.next(deadline)? {
                Some((_, Line::WarmUp)) => return Ok(()),
                Some(_) => {}
                None => bail!(
                    "the warm-up message did not reach `vault chat listen` within {} s",
                    READY_WITHIN.as_secs()
                ),
            }
        }
    }

    /// The arrival of each of messages `0..count`, waiting at most [`DRAIN_WITHIN`] from now
    /// (`None` for those that did not arrive).
    fn collect(&self, count: usize) -> anyhow::Result<Vec<Option<Instant>>> {
        let mut arrivals = vec![None; count];
        let mut missing = count;
        let deadline = Instant::now() + DRAIN_WITHIN;
        while missing > 0 {
            let Some((at, line)) = self.next(deadline)? else {
                break;
            };
            if let Line::Message(index) = line
                && let Some(slot @ None) = arrivals.get_mut(index)
            {
                *slot = Some(at);
                missing -= 1;
            }
        }
        Ok(arrivals)
    }

    fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The figures of a run in which every message arrived.
#[derive(Debug, PartialEq)]
struct Figures {
    /// Messages over the time from the first send's start to the last arrival.
    per_second: f64,
    median_ms: f64,
    p99_ms: f64,
}

impl Figures {
    /// From the start of each send and the arrival of the same message.
    fn new(starts: &[Instant], arrivals: &[Instant]) -> Figures {
        let latencies: Vec<f64> = starts
            .iter()
            .zip(arrivals)
            .map(|(start, at)| at.saturating_duration_since(*start).as_secs_f64() * 1000.0)
            .collect();
        let span = match (starts.first(), arrivals.iter().max()) {
            (Some(first), Some(last)) => last.saturating_duration_since(*first),
            _ => Duration::ZERO,
        };
        Figures {
            per_second: arrivals.len() as f64 / span.as_secs_f64(),
            median_ms: median(&latencies),
            p99_ms: percentile(&latencies, 0.99),
        }
    }
}

/// How the phase ended.
#[derive(Debug)]
enum Outcome {
    Done(Figures),
    /// Not every message arrived within [`DRAIN_WITHIN`] of the last send.
    TimedOut {
        arrived: usize,
    },
}

impl Outcome {
    fn rows(&self, count: usize) -> [Row; 2] {
        match self {
            Outcome::Done(f) => [
                Row::info(RELAY, f.per_second, "messages/s", RELAY_REFERENCE),
                Row::info(
                    LATENCY,
                    f.median_ms,
                    "ms",
                    &format!("p99 {:.1} ms; send start → listener's line", f.p99_ms),
                ),
            ],
            Outcome::TimedOut { arrived } => {
                let why = format!(
                    "timed out: {arrived} of {count} messages arrived within {} s of the last send",
                    DRAIN_WITHIN.as_secs()
                );
                [
                    Row::not_available(RELAY, "messages/s", RELAY_REFERENCE, &why),
                    Row::not_available(LATENCY, "ms", "send start → listener's line", &why),
                ]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Verdict;

    #[test]
    fn listener_lines_are_told_apart() {
        let line = |text: &str| {
            serde_json::json!({"type": "message", "from": "sender", "verified": true, "text": text})
                .to_string()
        };
        assert_eq!(Line::parse(&line("bench message 17")), Line::Message(17));
        assert_eq!(Line::parse(&line(WARM_UP)), Line::WarmUp);
        assert_eq!(Line::parse(&line("bench message x")), Line::Other);
        assert_eq!(Line::parse(&line("hello")), Line::Other);
        let refused =
            serde_json::json!({"type": "message", "verified": false, "error": "bad signature"});
        assert_eq!(
            Line::parse(&refused.to_string()),
            Line::Refused("bad signature".into())
        );
        let presence = serde_json::json!({"type": "presence", "username": "sender"});
        assert_eq!(Line::parse(&presence.to_string()), Line::Other);
        assert_eq!(Line::parse("not json"), Line::Other);
    }

    #[test]
    fn figures_span_from_the_first_send_to_the_last_arrival() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Sends at 0, 10, 20, 30 ms; latencies 5, 7, 9, 50 ms; the last arrives at 80 ms.
        let starts = [ms(0), ms(10), ms(20), ms(30)];
        let arrivals = [ms(5), ms(17), ms(29), ms(80)];
        let f = Figures::new(&starts, &arrivals);
        assert!((f.per_second - 4.0 / 0.080).abs() < 1e-6, "{f:?}");
        assert!((f.median_ms - 8.0).abs() < 1e-6, "{f:?}");
        assert!((f.p99_ms - 50.0).abs() < 1e-6, "{f:?}");
    }

    #[test]
    fn a_timeout_says_how_many_arrived() {
        let rows = Outcome::TimedOut { arrived: 150 }.rows(200);
        for row in &rows {
            assert_eq!(row.verdict, Verdict::NotAvailable);
            let note = row.note.as_deref().unwrap_or_default();
            assert!(note.contains("150 of 200 messages"), "{note}");
        }
        let done = Outcome::Done(Figures {
            per_second: 900.0,
            median_ms: 2.5,
            p99_ms: 9.0,
        })
        .rows(200);
        assert_eq!(done[0].verdict, Verdict::Info);
        assert!(done[0].reference.contains("messages_per_minute"));
        assert!(done[1].reference.contains("p99 9.0 ms"));
    }
}
