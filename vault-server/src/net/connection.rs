//! One QUIC connection: accepts request streams, enforces the request rate, keeps the
//! connection's state (hello seen, bound session) and dispatches each request.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::Instrument;
use vault_core::proto::{ApiError, ErrorCode, PROTOCOL_VERSION, Request, Response};

use super::stream::{ReadError, read_request, write_response};
use crate::accounts;
use crate::chat;
use crate::files;
use crate::state::ServerState;

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
}

impl ConnCtx {
    pub fn session(&self) -> Option<SessionCtx> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Binds (or with `None`, unbinds) the connection's session.
    pub fn set_session(&self, state: &ServerState, session: Option<SessionCtx>) {
        state.live.unbind(self.conn.stable_id());
        if let Some(s) = &session {
            state.live.bind(s.session_id, &self.conn);
        }
        *self.session.lock().unwrap_or_else(|e| e.into_inner()) = session;
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

/// Serves one connection until it closes.
pub async fn run(state: Arc<ServerState>, conn: quinn::Connection) {
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
    });
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(streams) => streams,
            Err(e) => {
                tracing::debug!(reason = %e, "connection closed");
                break;
            }
        };
        let state = Arc::clone(&state);
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move { serve_stream(&state, &ctx, send, recv).await }.in_current_span());
    }
    state.live.unbind(conn.stable_id());
}

async fn serve_stream(
    state: &ServerState,
    ctx: &ConnCtx,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let mut in_flight = Some(state.in_flight.enter());
    let timeout = Duration::from_secs(state.config.limits.request_timeout_s);
    let response = match read_request(&mut recv, timeout).await {
        Ok(request) => {
            let span = tracing::info_span!("request", kind = request.kind());
            let answered = async {
                let answer = if ctx.bucket.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    match request {
                        Request::UploadData { upload_id, offset } => {
                            upload_data(state, ctx, upload_id, offset, &mut recv).await
                        }
                        Request::Download {
                            ns,
                            path,
                            version,
                            from_chunk,
                        } => {
                            let request = (ns, path, version, from_chunk);
                            match download(state, ctx, request, &mut send).await {
                                Ok(()) => return None,
                                Err(e) => Err(e),
                            }
                        }
                        Request::ChatFileDownload {
                            message_id,
                            from_chunk,
                        } => {
                            let request = (message_id, from_chunk);
                            match chat_file_download(state, ctx, request, &mut send).await {
                                Ok(()) => return None,
                                Err(e) => Err(e),
                            }
                        }
                        Request::Subscribe => {
                            // A subscription lasts as long as the connection: it is not a
                            // request in flight that shutdown should wait for.
                            drop(in_flight.take());
                            match subscribe(state, ctx, &mut send).await {
                                Ok(()) => return None,
                                Err(e) => Err(e),
                            }
                        }
                        other => dispatch(state, ctx, other).await,
                    }
                } else {
                    Err(ApiError::throttled(
                        1,
                        "too many requests on this connection; slow down",
                    ))
                };
                if let Err(e) = &answer {
                    tracing::info!(code = e.code.as_str(), "request refused");
                }
                Some(answer.unwrap_or_else(Response::Error))
            }
            .instrument(span)
            .await;
            match answered {
                Some(response) => response,
                None => return,
            }
        }
        Err(ReadError::Gone) => return,
        Err(e) => {
            let _ = recv.stop(0u8.into());
            tracing::info!(error = ?e, "unreadable request frame");
            Response::Error(match e {
                ReadError::TooLarge(n) => ApiError::new(
                    ErrorCode::TooLarge,
                    format!("request frame of {n} bytes is over the 1 MiB limit"),
                ),
                ReadError::Malformed(m) => {
                    ApiError::bad_request(format!("malformed or unknown request: {m}"))
                }
                _ => ApiError::bad_request("the request frame did not arrive in time"),
            })
        }
    };
    if let Err(e) = write_response(&mut send, &response).await {
        tracing::debug!(error = %e, "could not send the response");
    }
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
    ctx: &ConnCtx,
    upload_id: i64,
    offset: u64,
    recv: &mut quinn::RecvStream,
) -> Result<Response, ApiError> {
    check_hello(ctx)?;
    let session = accounts::require_session(state, ctx).await?;
    let answer = files::upload::receive(state, &session, upload_id, offset, recv).await;
    let _ = recv.stop(0u8.into());
    answer
}

/// Serves `download`: the header frame, then the sealed bytes, then the end of the stream
/// (or a reset if the bytes could not all be sent). An error before the header is
/// returned for the caller to answer.
async fn download(
    state: &ServerState,
    ctx: &ConnCtx,
    (ns, path, version, from_chunk): (vault_core::proto::NsRef, String, Option<u64>, u64),
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    check_hello(ctx)?;
    let session = accounts::require_session(state, ctx).await?;
    let (header, body) =
        files::download::prepare(state, &session, &ns, path, version, from_chunk).await?;
    stream_download(header, body, send).await
}

/// Serves `chat_file_download` like `download`: the file a message carries, for a reader
/// of the message (see `chat::files`).
async fn chat_file_download(
    state: &ServerState,
    ctx: &ConnCtx,
    (message_id, from_chunk): (i64, u64),
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    check_hello(ctx)?;
    let session = accounts::require_session(state, ctx).await?;
    let (header, body) = chat::files::prepare(state, &session, message_id, from_chunk).await?;
    stream_download(header, body, send).await
}

/// Writes a download's header frame and body, then ends the stream (or resets it if the
/// bytes could not all be sent).
async fn stream_download(
    header: Response,
    body: files::download::Body,
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    let frame = vault_core::proto::encode_frame(&header)
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

/// Serves `subscribe`: the stream carries `subscribed`, then event frames until the
/// connection closes, the client stops the stream or the connection's session changes
/// (the request timeout bounds only the request frame, not the stream). It holds one of
/// the connection's `limits.concurrent_streams` streams (64 by default), which leaves the
/// rest for requests. An error before `subscribed` is returned for the caller to answer.
async fn subscribe(
    state: &ServerState,
    ctx: &ConnCtx,
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    check_hello(ctx)?;
    let session = accounts::require_session(state, ctx).await?;
    let stopped = send.stopped();
    let closed = ctx.conn.closed();
    let ended = async move {
        tokio::select! {
            _ = stopped => {}
            _ = closed => {}
        }
    };
    let live = || {
        ctx.session()
            .is_some_and(|s| s.session_id == session.session_id)
    };
    match chat::subscribe::serve(state, &session, send, ended, live).await? {
        chat::subscribe::Ended::Closed => {
            let _ = send.finish();
        }
        chat::subscribe::Ended::Broken(_) => {
            let _ = send.reset(1u8.into());
        }
    }
    Ok(())
}

/// Routes a request. `hello` must come first; account requests need no session; the
/// rest need a live session.
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
    accounts::handle(state, ctx, request).await
}
