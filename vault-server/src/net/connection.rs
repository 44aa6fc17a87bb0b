//! One QUIC connection: accepts request streams, enforces the request rate, keeps the
//! connection's state (hello seen, bound session) and dispatches each request. A
//! connection that has not logged in is held to the `limits.prelogin_*` limits (few
//! streams, a small receive window and frame size) and is closed if it does not say
//! `hello` within `limits.hello_timeout_s` or log in within `limits.login_timeout_s`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;
use vault_proto::proto::{
    ApiError, CLOSE_TOO_SLOW, ErrorCode, MAX_FRAME_LEN, NsRef, PROTOCOL_VERSION, Request, Response,
};

use super::slots::ConnectionSlot;
use super::stream::{FrameRules, ReadError, read_request, write_response};
use crate::chat;
use crate::files;
use crate::router::{self, Route};
use crate::state::ServerState;
use crate::telemetry;

/// The access log: one line per request, in its span (kind, user id), with how long it
/// took and how it ended (`ok`, or the error code). Never a name or a secret: those are
/// in the request, which is not logged. Target `vault_server::access`, so an operator can
/// turn it down on its own (`VAULT_LOG=info,vault_server::access=warn`).
/// The same request is counted in the metrics (`crate::telemetry`).
fn log_request(
    span: &tracing::Span,
    ctx: &ConnCtx,
    kind: &'static str,
    started: std::time::Instant,
    answered: Option<&Response>,
) {
    // A login binds the session during the request.
    if let Some(user) = ctx.user_id() {
        span.record("user", user);
    }
    let result = match answered {
        Some(Response::Error(e)) => e.code.as_str(),
        _ => "ok",
    };
    let took = started.elapsed();
    telemetry::request(kind, result, took);
    let duration_ms = took.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        tracing::info!(target: "vault_server::access", result, duration_ms, "request");
    });
}

/// The session a connection is logged in as.
#[derive(Clone, Debug)]
pub struct SessionCtx {
    pub session_id: i64,
    pub user_id: i64,
    pub username: String,
}

/// Per-connection state shared by its streams.
#[derive(Debug)]
pub struct ConnCtx {
    pub ip: IpAddr,
    pub conn: quinn::Connection,
    hello: AtomicBool,
    session: Mutex<Option<SessionCtx>>,
    bucket: Mutex<TokenBucket>,
    slot: ConnectionSlot,
    /// Whether a session is bound, for the login deadline.
    logged_in: watch::Sender<bool>,
    /// The connection's UDP bytes received and sent that the metrics have counted.
    counted: Mutex<(u64, u64)>,
}

impl Drop for ConnCtx {
    fn drop(&mut self) {
        self.count_traffic();
        telemetry::connections(-1.0);
        if *self.logged_in.borrow() {
            telemetry::sessions(-1.0);
        }
    }
}

impl ConnCtx {
    pub fn session(&self) -> Option<SessionCtx> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The logged-in user's id, without copying the session (the access log's, per request).
    pub fn user_id(&self) -> Option<i64> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|s| s.user_id)
    }

    /// Binds (or with `None`, unbinds) the connection's session, and moves the connection
    /// to the limits of a logged-in connection (or back to those before login).
    pub fn set_session(&self, state: &ServerState, session: Option<SessionCtx>) {
        state.live.unbind(self.conn.stable_id());
        if let Some(s) = &session {
            state.live.bind(s.session_id, &self.conn);
        }
        let logged_in = session.is_some();
        *self.session.lock().unwrap_or_else(|e| e.into_inner()) = session;
        let limits = &state.config.limits;
        if logged_in {
            self.conn
                .set_max_concurrent_bi_streams(limits.concurrent_streams.into());
            self.conn
                .set_receive_window(super::window(limits.receive_window.0));
        } else {
            self.conn
                .set_max_concurrent_bi_streams(limits.prelogin_streams.into());
            self.conn.set_receive_window(super::prelogin_window(limits));
        }
        self.slot.set_logged_in(logged_in);
        if self.logged_in.send_replace(logged_in) != logged_in {
            telemetry::sessions(if logged_in { 1.0 } else { -1.0 });
        }
    }

    /// Adds the bytes the connection received and sent since the last call to the
    /// metrics (after each request, and when the connection ends).
    fn count_traffic(&self) {
        let udp = self.conn.stats();
        let (rx, tx) = (udp.udp_rx.bytes, udp.udp_tx.bytes);
        let mut counted = self.counted.lock().unwrap_or_else(|e| e.into_inner());
        telemetry::traffic(rx.saturating_sub(counted.0), tx.saturating_sub(counted.1));
        *counted = (rx.max(counted.0), tx.max(counted.1));
    }

    fn is_logged_in(&self) -> bool {
        *self.logged_in.borrow()
    }
}

/// A token bucket: `rate` requests per second, bursts up to `burst`.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            tokens: burst,
            rate: f64::from(rate),
            burst,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Serves one connection until it closes; `slot` is the connection's count in the
/// per-address limits, freed when this returns.
pub async fn run(state: Arc<ServerState>, conn: quinn::Connection, slot: ConnectionSlot) {
    tracing::debug!("connection established");
    let limits = &state.config.limits;
    let ctx = Arc::new(ConnCtx {
        ip: conn.remote_address().ip(),
        conn: conn.clone(),
        hello: AtomicBool::new(false),
        session: Mutex::new(None),
        bucket: Mutex::new(TokenBucket::new(
            limits.requests_per_second,
            limits.request_burst,
        )),
        slot,
        logged_in: watch::Sender::new(false),
        counted: Mutex::new((0, 0)),
    });
    telemetry::connections(1.0);
    let deadlines = enforce_deadlines(&state, &ctx);
    tokio::pin!(deadlines);
    loop {
        let (send, recv) = tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok(streams) => streams,
                Err(e) => {
                    tracing::debug!(reason = %e, "connection closed");
                    break;
                }
            },
            () = &mut deadlines => continue,
        };
        let state = Arc::clone(&state);
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move { serve_stream(&state, &ctx, send, recv).await }.in_current_span());
    }
    state.live.unbind(conn.stable_id());
}

/// Closes the connection if `hello` does not arrive within `limits.hello_timeout_s` of its
/// start, or if it is not logged in within `limits.login_timeout_s` of its start or of its
/// logout. Never returns while the connection is open.
async fn enforce_deadlines(state: &ServerState, ctx: &ConnCtx) {
    let limits = &state.config.limits;
    let hello_by = Duration::from_secs(limits.hello_timeout_s);
    let login_within = Duration::from_secs(limits.login_timeout_s);
    tokio::time::sleep(hello_by).await;
    if !ctx.hello.load(Ordering::SeqCst) {
        tracing::info!("closing a connection that did not say hello in time");
        let reason = format!("no hello within {} s", limits.hello_timeout_s);
        ctx.conn.close(CLOSE_TOO_SLOW.into(), reason.as_bytes());
        return std::future::pending().await;
    }
    let mut logged_in = ctx.logged_in.subscribe();
    // The first period started with the connection, `hello_by` ago.
    let mut left = login_within.saturating_sub(hello_by);
    loop {
        if *logged_in.borrow_and_update() {
            if logged_in.changed().await.is_err() {
                return std::future::pending().await;
            }
            left = login_within;
            continue;
        }
        match tokio::time::timeout(left, logged_in.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) => {
                tracing::info!("closing a connection that did not log in in time");
                let reason = format!("not logged in within {} s", limits.login_timeout_s);
                ctx.conn.close(CLOSE_TOO_SLOW.into(), reason.as_bytes());
                return std::future::pending().await;
            }
        }
    }
}

async fn serve_stream(
    state: &ServerState,
    ctx: &ConnCtx,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    answer_stream(state, ctx, send, recv).await;
    ctx.count_traffic();
}

async fn answer_stream(
    state: &ServerState,
    ctx: &ConnCtx,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let mut in_flight = Some(state.in_flight.enter());
    let limits = &state.config.limits;
    let prelogin = !ctx.is_logged_in();
    let rules = FrameRules {
        budget: &state.frame_budget,
        max_len: if prelogin {
            usize::try_from(limits.prelogin_frame_max.0).unwrap_or(MAX_FRAME_LEN)
        } else {
            MAX_FRAME_LEN
        },
        prelogin,
        timeout: Duration::from_secs(limits.request_timeout_s),
    };
    let response = match read_request(&mut recv, rules).await {
        Ok(request) => {
            let kind = request.kind();
            let span = tracing::info_span!("request", kind, user = tracing::field::Empty);
            if let Some(user) = ctx.user_id() {
                span.record("user", user);
            }
            let started = std::time::Instant::now();
            let answered = async {
                let answer = if !ctx.bucket.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    Err(ApiError::throttled(
                        1,
                        "too many requests on this connection; slow down",
                    ))
                } else if router::route_of(&request) != Route::Stream {
                    dispatch(state, ctx, request).await
                } else {
                    match stream_session(state, ctx).await {
                        Err(e) => Err(e),
                        Ok(session) => match request {
                            Request::UploadData { upload_id, offset } => {
                                upload_data(state, &session, upload_id, offset, &mut recv).await
                            }
                            Request::ChunkPut {
                                ns,
                                id,
                                sealed_size,
                                upload_id,
                            } => {
                                let chunk = files::chunks::ChunkPut {
                                    id: id.into_vec(),
                                    sealed_size,
                                    upload_id,
                                };
                                chunk_put(state, &session, (ns, chunk), &mut recv).await
                            }
                            Request::ChunkGet { ns, id } => {
                                match chunk_get(state, &session, (ns, id.into_vec()), &mut send)
                                    .await
                                {
                                    Ok(()) => return None,
                                    Err(e) => Err(e),
                                }
                            }
                            Request::Download {
                                ns,
                                path,
                                version,
                                from_chunk,
                            } => {
                                let request = (ns, path, version, from_chunk);
                                match download(state, &session, request, &mut send).await {
                                    Ok(()) => return None,
                                    Err(e) => Err(e),
                                }
                            }
                            Request::ChatFileDownload {
                                message_id,
                                from_chunk,
                            } => {
                                let request = (message_id, from_chunk);
                                match chat_file_download(state, &session, request, &mut send).await
                                {
                                    Ok(()) => return None,
                                    Err(e) => Err(e),
                                }
                            }
                            Request::Subscribe => {
                                // A subscription lasts as long as the connection: it is not
                                // a request in flight that shutdown should wait for.
                                drop(in_flight.take());
                                match subscribe(state, ctx, session, &mut send).await {
                                    Ok(()) => return None,
                                    Err(e) => Err(e),
                                }
                            }
                            Request::WatchSpace { ns } => {
                                // Like a subscription, it lasts as long as the client wants.
                                drop(in_flight.take());
                                match watch_space(state, ctx, session, &ns, &mut send).await {
                                    Ok(()) => return None,
                                    Err(e) => Err(e),
                                }
                            }
                            other => Err(ApiError::bad_request(format!(
                                "{} is not served with its stream",
                                other.kind()
                            ))),
                        },
                    }
                };
                Some(answer.unwrap_or_else(Response::Error))
            }
            .instrument(span.clone())
            .await;
            log_request(&span, ctx, kind, started, answered.as_ref());
            match answered {
                Some(response) => response,
                None => return,
            }
        }
        Err(ReadError::Gone) => return,
        Err(e) => {
            let _ = recv.stop(0u8.into());
            tracing::info!(error = ?e, "unreadable request frame");
            let error = match e {
                ReadError::TooLarge(n, max) if prelogin && max < MAX_FRAME_LEN => ApiError::new(
                    ErrorCode::TooLarge,
                    format!(
                        "request frame of {n} bytes is over the {max}-byte limit before login; \
                         log in first"
                    ),
                ),
                ReadError::TooLarge(n, _) => ApiError::new(
                    ErrorCode::TooLarge,
                    format!("request frame of {n} bytes is over the 1 MiB limit"),
                ),
                ReadError::Busy => ApiError::throttled(
                    1,
                    "the server is busy receiving other requests; try again in a second",
                ),
                ReadError::Malformed(m) => {
                    ApiError::bad_request(format!("malformed or unknown request: {m}"))
                }
                _ => ApiError::bad_request("the request frame did not arrive in time"),
            };
            telemetry::request("unreadable", error.code.as_str(), Duration::ZERO);
            Response::Error(error)
        }
    };
    if let Err(e) = write_response(&mut send, &response).await {
        tracing::debug!(error = %e, "could not send the response");
    }
}

/// The session of a request served with its stream ([`Route::Stream`]): after `hello`,
/// live.
async fn stream_session(state: &ServerState, ctx: &ConnCtx) -> Result<SessionCtx, ApiError> {
    check_hello(ctx)?;
    router::require_session(state, ctx).await
}

/// Refuses every request before `hello`.
fn check_hello(ctx: &ConnCtx) -> Result<(), ApiError> {
    if ctx.hello.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "the first request on a connection must be hello",
        ))
    }
}

/// Serves `upload_data`: the raw bytes after the frame go to the upload's partial blob.
/// Whatever the outcome, the rest of the client's bytes are refused (`stop`).
async fn upload_data(
    state: &ServerState,
    session: &SessionCtx,
    upload_id: i64,
    offset: u64,
    recv: &mut quinn::RecvStream,
) -> Result<Response, ApiError> {
    let answer = files::upload::receive(state, session, upload_id, offset, recv).await;
    let _ = recv.stop(0u8.into());
    answer
}

/// Serves `chunk_put`: the raw bytes after the frame are one sealed chunk. Whatever the
/// outcome, the rest of the client's bytes are refused (`stop`).
async fn chunk_put(
    state: &ServerState,
    session: &SessionCtx,
    (ns, chunk): (vault_proto::proto::NsRef, files::chunks::ChunkPut),
    recv: &mut quinn::RecvStream,
) -> Result<Response, ApiError> {
    let answer = files::chunks::put(state, session, &ns, chunk, recv).await;
    let _ = recv.stop(0u8.into());
    answer
}

/// Serves `chunk_get` like `download`: the `chunk` header frame, then the sealed chunk.
async fn chunk_get(
    state: &ServerState,
    session: &SessionCtx,
    (ns, id): (vault_proto::proto::NsRef, Vec<u8>),
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    let (header, body) = files::chunks::get(state, session, &ns, id).await?;
    stream_download(header, body, send).await
}

/// Serves `download`: the header frame, then the sealed bytes, then the end of the stream
/// (or a reset if the bytes could not all be sent). An error before the header is
/// returned for the caller to answer.
async fn download(
    state: &ServerState,
    session: &SessionCtx,
    (ns, path, version, from_chunk): (vault_proto::proto::NsRef, String, Option<u64>, u64),
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    let (header, body) =
        files::download::prepare(state, session, &ns, path, version, from_chunk).await?;
    stream_download(header, body, send).await
}

/// Serves `chat_file_download` like `download`: the file a message carries, for a reader
/// of the message (see `chat::files`).
async fn chat_file_download(
    state: &ServerState,
    session: &SessionCtx,
    (message_id, from_chunk): (i64, u64),
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    let (header, body) = chat::files::prepare(state, session, message_id, from_chunk).await?;
    stream_download(header, body, send).await
}

/// Writes a download's header frame and body, then ends the stream (or resets it if the
/// bytes could not all be sent).
async fn stream_download(
    header: Response,
    body: files::download::Body,
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    let frame = vault_proto::proto::encode_frame(&header)
        .map_err(|e| crate::error::internal("download header could not be encoded", e))?;
    let sent = async {
        send.write_all(&frame).await?;
        files::download::send(body, send).await
    }
    .await;
    match sent {
        Ok(()) => {
            let _ = send.finish();
        }
        Err(e) => {
            tracing::debug!(error = %e, "download interrupted");
            let _ = send.reset(1u8.into());
        }
    }
    Ok(())
}

/// What a long-lived stream (`subscribe`, `watch_space`) watches: a future that completes
/// when the client stops the stream or the connection closes, and whether the
/// connection's session is still `session_id`.
fn stream_lifetime<'a>(
    ctx: &'a ConnCtx,
    send: &quinn::SendStream,
    session_id: i64,
) -> (impl Future<Output = ()> + 'a, impl Fn() -> bool + 'a) {
    let stopped = send.stopped();
    let closed = ctx.conn.closed();
    let ended = async move {
        tokio::select! {
            _ = stopped => {}
            _ = closed => {}
        }
    };
    let live = move || ctx.session().is_some_and(|s| s.session_id == session_id);
    (ended, live)
}

/// Ends a long-lived stream: finished when it closed in order, reset when it broke (the
/// client reconnects).
fn end_stream(send: &mut quinn::SendStream, in_order: bool) {
    if in_order {
        let _ = send.finish();
    } else {
        let _ = send.reset(1u8.into());
    }
}

/// Serves `subscribe`: the stream carries `subscribed`, then event frames until the
/// connection closes, the client stops the stream or the connection's session changes
/// (the request timeout bounds only the request frame, not the stream). It holds one of
/// the connection's `limits.concurrent_streams` streams (64 by default), which leaves the
/// rest for requests. An error before `subscribed` is returned for the caller to answer.
async fn subscribe(
    state: &ServerState,
    ctx: &ConnCtx,
    session: SessionCtx,
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    let (ended, live) = stream_lifetime(ctx, send, session.session_id);
    let outcome = chat::subscribe::serve(state, &session, send, ended, live).await?;
    end_stream(send, matches!(outcome, chat::subscribe::Ended::Closed));
    Ok(())
}

/// Serves `watch_space` ([`crate::files::watch`]): like `subscribe`, the stream lasts until
/// the connection closes, the client stops it or the connection's session changes.
async fn watch_space(
    state: &ServerState,
    ctx: &ConnCtx,
    session: SessionCtx,
    ns: &NsRef,
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    let (ended, live) = stream_lifetime(ctx, send, session.session_id);
    let outcome = crate::files::watch::serve(state, &session, ns, send, ended, live).await?;
    end_stream(send, matches!(outcome, crate::files::watch::Ended::Closed));
    Ok(())
}

/// Answers `hello`, or after it, routes a one-frame request ([`router::route`]).
async fn dispatch(
    state: &ServerState,
    ctx: &ConnCtx,
    request: Request,
) -> Result<Response, ApiError> {
    if let Request::Hello { protocol_version } = request {
        if protocol_version != PROTOCOL_VERSION {
            return Err(ApiError::new(
                ErrorCode::UnsupportedVersion,
                format!(
                    "this server speaks protocol version {PROTOCOL_VERSION}, the client {protocol_version}: \
                     install a matching vault client"
                ),
            ));
        }
        ctx.hello.store(true, Ordering::SeqCst);
        return Ok(Response::Hello {
            protocol_version: PROTOCOL_VERSION,
            server_version: env!("CARGO_PKG_VERSION").to_string(),
        });
    }
    check_hello(ctx)?;
    router::route(state, ctx, request).await
}
