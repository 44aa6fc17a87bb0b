//! The QUIC connection to a server: TLS 1.3 with ALPN `vault/1`, no 0-RTT, and a
//! certificate check that accepts exactly one pinned SHA-256 fingerprint (or, on first
//! use when asked, records whatever the server presents). One request per stream.
//!
//! A keep-alive ping goes out every [`KEEP_ALIVE`] (2 s): the answers are what lets
//! `vault chat listen` notice a server that went away without a close. A connection is
//! closed when its last handle drops.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use vault_core::proto::{self, PROTOCOL_VERSION, Request, Response};

use crate::ClientError;

pub use vault_core::proto::CLOSE_SESSION_ENDED;

/// How often an idle connection pings the server (which answers each ping): a connection
/// that receives nothing for a few of these intervals has lost its server. A killed server
/// sends no close, and a restarted one answers an old connection with a stateless reset
/// only when the client sends something, so the pings are what let `vault chat listen`
/// notice either within seconds; a ping is one small packet.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// How long a connection waits without hearing from the server before it counts as lost
/// (the server's own limit, `limits.idle_timeout_s`, applies if it is shorter). A server
/// that restarted says so at once instead (a stateless reset), so this is only for one
/// that is gone or unreachable.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which certificate to accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// Exactly this `SHA256:<hex>` fingerprint.
    Fingerprint(String),
    /// Any certificate; the caller pins what was seen (`--accept-new-cert`).
    TrustOnFirstUse,
    /// None: fail, reporting what the server presented.
    Unpinned,
}

#[derive(Debug)]
struct PinVerifier {
    pin: Pin,
    seen: Arc<Mutex<Option<String>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = vault_core::crypto::sha256_fingerprint(end_entity);
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(presented.clone());
        match &self.pin {
            Pin::Fingerprint(expected) if expected.eq_ignore_ascii_case(&presented) => {
                Ok(ServerCertVerified::assertion())
            }
            Pin::TrustOnFirstUse => Ok(ServerCertVerified::assertion()),
            _ => Err(rustls::Error::General(
                "certificate does not match the pinned fingerprint".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An open connection to a server, after `hello`.
#[derive(Debug)]
pub struct Connection {
    conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
    /// The fingerprint the server presented.
    pub fingerprint: String,
    pub addr: SocketAddr,
}

/// Resolves `server` (`HOST:PORT`) to one socket address.
pub async fn resolve(server: &str) -> Result<SocketAddr, ClientError> {
    let fail = |reason: String| ClientError::Connect {
        addr: server.to_string(),
        reason,
    };
    let mut addrs = tokio::net::lookup_host(server).await.map_err(|e| {
        fail(format!(
            "{e} (expected HOST:PORT, e.g. vault.example.org:7443)"
        ))
    })?;
    addrs
        .next()
        .ok_or_else(|| fail("the name resolved to no address".into()))
}

/// Connects to `server` (one address or several, see [`open`]), checks the certificate
/// against `pin`, and says `hello`.
pub async fn connect(server: &str, pin: &Pin) -> Result<Connection, ClientError> {
    let connection = open(server, pin).await?;
    match connection
        .call(&Request::Hello {
            protocol_version: PROTOCOL_VERSION,
        })
        .await?
    {
        Response::Hello { .. } => Ok(connection),
        other => Err(ClientError::Protocol(format!(
            "unexpected answer to hello: {other:?}"
        ))),
    }
}

/// How long one address of several may take to answer before the next is tried.
const NEXT_AFTER: Duration = Duration::from_secs(4);

/// The address of [`open`]'s list that answered last, tried first next time (several
/// instances of one deployment: a reconnect goes to one that works).
static LAST_GOOD: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Has [`open`] try `address` first when it is one of several (the caller kept the one
/// that answered last, across processes).
pub fn prefer(address: &str) {
    *LAST_GOOD.lock().unwrap_or_else(|e| e.into_inner()) = Some(address.to_owned());
}

/// The address of several that answered last in this process, if any.
pub fn last_good() -> Option<String> {
    LAST_GOOD.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The addresses of `servers`: one `HOST:PORT`, or several separated by commas (instances of
/// one deployment, sharing one certificate).
pub fn addresses(servers: &str) -> Vec<&str> {
    servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Connects and checks the certificate, without saying `hello` (tests use this to see
/// how the server treats a client that skips it). With several addresses, each is tried
/// in turn (the one that answered last first), [`NEXT_AFTER`] each, until one answers; a
/// certificate that is not the pinned one stops the search.
pub async fn open(servers: &str, pin: &Pin) -> Result<Connection, ClientError> {
    let mut list = addresses(servers);
    if list.len() <= 1 {
        let one = list.first().copied().unwrap_or(servers.trim());
        return open_one(one, pin, Duration::from_secs(15)).await;
    }
    let last = LAST_GOOD.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(at) = last.and_then(|l| list.iter().position(|a| *a == l)) {
        list[..=at].rotate_right(1);
    }
    let mut failures = Vec::new();
    for server in list {
        match open_one(server, pin, NEXT_AFTER).await {
            Ok(conn) => {
                *LAST_GOOD.lock().unwrap_or_else(|e| e.into_inner()) = Some(server.to_owned());
                return Ok(conn);
            }
            Err(e @ (ClientError::CertificateChanged { .. } | ClientError::NotPinned { .. })) => {
                return Err(e);
            }
            Err(e) => failures.push(format!("{server}: {e}")),
        }
    }
    Err(ClientError::Connect {
        addr: servers.to_owned(),
        reason: format!("no instance answered ({})", failures.join("; ")),
    })
}

/// [`open`] on one address, waiting up to `wait` for the handshake.
async fn open_one(server: &str, pin: &Pin, wait: Duration) -> Result<Connection, ClientError> {
    let addr = resolve(server).await?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let seen = Arc::new(Mutex::new(None));
    let verifier = PinVerifier {
        pin: pin.clone(),
        seen: Arc::clone(&seen),
        provider: Arc::clone(&provider),
    };
    let setup = |e: String| ClientError::Connect {
        addr: server.to_string(),
        reason: e,
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![proto::ALPN.to_vec()];
    tls.enable_early_data = false;
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| setup(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(
        IDLE_TIMEOUT
            .try_into()
            .map_err(|_| setup("timeout".into()))?,
    ));
    config.transport_config(Arc::new(transport));
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    }
    .parse()
    .map_err(|_| setup("bind".into()))?;
    let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| setup(e.to_string()))?;
    endpoint.set_default_client_config(config);
    let host = server
        .rsplit_once(':')
        .map_or(server, |(h, _)| h)
        .trim_matches(['[', ']']);
    let sni = if host.parse::<std::net::IpAddr>().is_ok() || host.is_empty() {
        "localhost"
    } else {
        host
    };
    let connecting = endpoint
        .connect(addr, sni)
        .map_err(|e| setup(e.to_string()))?;
    let conn = match tokio::time::timeout(wait, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            let presented = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
            return Err(match (pin, presented) {
                (Pin::Fingerprint(pinned), Some(presented))
                    if !pinned.eq_ignore_ascii_case(&presented) =>
                {
                    ClientError::CertificateChanged {
                        pinned: pinned.clone(),
                        presented,
                    }
                }
                (Pin::Unpinned, Some(presented)) => ClientError::NotPinned { presented },
                _ => setup(e.to_string()),
            });
        }
        Err(_) => {
            return Err(setup(format!(
                "no answer within {} s (is vault-server running, and is UDP allowed?)",
                wait.as_secs()
            )));
        }
    };
    let fingerprint = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default();
    Ok(Connection {
        conn,
        _endpoint: endpoint,
        fingerprint,
        addr,
    })
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

impl Connection {
    /// Sends one request on a new stream and returns the answer; an error answer becomes
    /// `ClientError::Api`.
    pub async fn call(&self, request: &Request) -> Result<Response, ClientError> {
        let frame =
            proto::encode_frame(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        match self.exchange(&frame).await? {
            Response::Error(e) => Err(ClientError::Api(e)),
            response => Ok(response),
        }
    }

    /// Opens a stream for a request whose raw bytes follow its frame (`upload_data`): the
    /// frame is sent at once, the caller writes the bytes with [`RawUpload::write`] and ends
    /// with [`RawUpload::finish`], which returns the answer.
    pub async fn call_with_upload(&self, request: &Request) -> Result<RawUpload, ClientError> {
        let frame =
            proto::encode_frame(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let (mut send, recv) = self.conn.open_bi().await.map_err(|e| self.closed(e))?;
        send.write_all(&frame)
            .await
            .map_err(|e| self.write_error(e))?;
        Ok(RawUpload {
            send,
            recv,
            conn: self.conn.clone(),
        })
    }

    /// Sends a request whose answer frame is followed by raw bytes (`download`) and
    /// returns the answer and a reader for the bytes; an error answer becomes
    /// `ClientError::Api`.
    pub async fn call_with_download(
        &self,
        request: &Request,
    ) -> Result<(Response, RawDownload), ClientError> {
        let (response, recv) = self.call_keeping_stream(request).await?;
        let conn = self.conn.clone();
        Ok((response, RawDownload { recv, conn }))
    }

    /// Sends `request` on a new stream and reads the answer frame, keeping the stream for
    /// what follows it; an error answer becomes `ClientError::Api`.
    async fn call_keeping_stream(
        &self,
        request: &Request,
    ) -> Result<(Response, quinn::RecvStream), ClientError> {
        let frame =
            proto::encode_frame(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| self.closed(e))?;
        send.write_all(&frame)
            .await
            .map_err(|e| self.write_error(e))?;
        let _ = send.finish();
        match read_response(&self.conn, &mut recv).await? {
            Response::Error(e) => Err(ClientError::Api(e)),
            response => Ok((response, recv)),
        }
    }

    fn write_error(&self, e: quinn::WriteError) -> ClientError {
        stream_error(&self.conn, e.to_string())
    }

    /// Sends raw bytes as a request stream and decodes the answer. For tests of how the
    /// server treats malformed input.
    pub async fn exchange(&self, bytes: &[u8]) -> Result<Response, ClientError> {
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| self.closed(e))?;
        send.write_all(bytes)
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let _ = send.finish();
        let mut header = [0u8; 4];
        recv.read_exact(&mut header)
            .await
            .map_err(|e| self.read_error(e))?;
        let len = proto::parse_header(header).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut body = vec![0u8; len];
        recv.read_exact(&mut body)
            .await
            .map_err(|e| self.read_error(e))?;
        proto::decode_body(&body).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Whether the connection has ended (the server went away or closed it).
    pub fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    fn read_error(&self, e: quinn::ReadExactError) -> ClientError {
        match self.conn.close_reason() {
            Some(reason) => self.closed(reason),
            None => ClientError::Protocol(format!("the answer could not be read: {e}")),
        }
    }

    fn closed(&self, e: quinn::ConnectionError) -> ClientError {
        connection_end(e)
    }

    /// Waits until the server closes the connection and returns its reason.
    pub async fn closed_reason(&self) -> String {
        match self.closed(self.conn.closed().await) {
            ClientError::Closed(reason) => reason,
            other => other.to_string(),
        }
    }

    /// Closes the connection politely; [`crate::closing::seen_out`] waits for the close to
    /// leave. Dropping the last handle does the same.
    pub fn close(&self) {
        crate::closing::close(&self.conn, &self._endpoint, b"bye");
    }

    /// How many UDP datagrams have arrived on this connection so far (the answers to
    /// keep-alive pings included): a count that stops growing for longer than a few
    /// [`KEEP_ALIVE`] intervals means the server is gone, long before the idle timeout says so.
    pub fn datagrams_received(&self) -> u64 {
        self.conn.stats().udp_rx.datagrams
    }

    /// Why the server ended the session of this connection, if it closed the connection
    /// with [`CLOSE_SESSION_ENDED`] (`None` while it is open or when it ended otherwise).
    pub fn session_ended(&self) -> Option<String> {
        session_ended(&self.conn)
    }

    /// Sends `request` (`subscribe`) on a new stream and reads the first answer; the event
    /// frames that follow are read with [`EventStream::next`]. An error answer becomes
    /// `ClientError::Api`.
    pub async fn subscribe(
        &self,
        request: &Request,
    ) -> Result<(Response, EventStream), ClientError> {
        let (response, recv) = self.call_keeping_stream(request).await?;
        let conn = self.conn.clone();
        Ok((response, EventStream { recv, conn }))
    }
}

fn session_ended(conn: &quinn::Connection) -> Option<String> {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(close))
            if close.error_code == quinn::VarInt::from_u32(CLOSE_SESSION_ENDED) =>
        {
            Some(String::from_utf8_lossy(&close.reason).into_owned())
        }
        _ => None,
    }
}

/// The frames the server writes on a `subscribe` stream after its first answer, each a
/// u32 length + CBOR `Response` (bounded by the frame limit), read one at a time.
#[derive(Debug)]
pub struct EventStream {
    recv: quinn::RecvStream,
    conn: quinn::Connection,
}

impl EventStream {
    /// The next frame; `None` when the server ended the stream between frames. Waits as
    /// long as it takes: the connection's keep-alive and idle timeout notice a server that
    /// went away.
    pub async fn next(&mut self) -> Result<Option<Response>, ClientError> {
        let mut header = [0u8; 4];
        match self.recv.read_exact(&mut header).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
            Err(e) => return Err(stream_error(&self.conn, e.to_string())),
        }
        let len = proto::parse_header(header).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut body = vec![0u8; len];
        self.recv
            .read_exact(&mut body)
            .await
            .map_err(|e| stream_error(&self.conn, e.to_string()))?;
        proto::decode_body(&body)
            .map(Some)
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// See [`Connection::session_ended`].
    pub fn session_ended(&self) -> Option<String> {
        session_ended(&self.conn)
    }
}

/// What the end of a connection means for the person waiting: the server's reason when
/// it closed the connection, else that the connection was lost and how.
fn connection_end(e: quinn::ConnectionError) -> ClientError {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => {
            ClientError::Closed(String::from_utf8_lossy(&close.reason).into_owned())
        }
        quinn::ConnectionError::Reset => {
            ClientError::Lost("the server restarted or forgot this connection".into())
        }
        quinn::ConnectionError::TimedOut => ClientError::Lost(format!(
            "no answer from the server for {} s",
            IDLE_TIMEOUT.as_secs()
        )),
        other => ClientError::Closed(other.to_string()),
    }
}

/// What a failed stream read or write means: the connection's end if it has ended,
/// else a protocol error naming the stream failure.
fn stream_error(conn: &quinn::Connection, what: String) -> ClientError {
    match conn.close_reason() {
        Some(end) => connection_end(end),
        None => ClientError::Protocol(format!("the transfer stream failed: {what}")),
    }
}

/// Reads one answer frame (bounded by the frame limit).
async fn read_response(
    conn: &quinn::Connection,
    recv: &mut quinn::RecvStream,
) -> Result<Response, ClientError> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header)
        .await
        .map_err(|e| stream_error(conn, e.to_string()))?;
    let len = proto::parse_header(header).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| stream_error(conn, e.to_string()))?;
    proto::decode_body(&body).map_err(|e| ClientError::Protocol(e.to_string()))
}

/// The sending half of a request with raw bytes after its frame (see
/// [`Connection::call_with_upload`]). Writes wait for flow control, so memory stays bounded.
#[derive(Debug)]
pub struct RawUpload {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    conn: quinn::Connection,
}

impl RawUpload {
    /// Writes raw bytes (handed to QUIC as they are, without a copy). If the server
    /// stopped reading (it refused the request), its answer is returned as the error.
    pub async fn write(&mut self, bytes: bytes::Bytes) -> Result<(), ClientError> {
        match self.send.write_chunk(bytes).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let failure = stream_error(&self.conn, e.to_string());
                if matches!(failure, ClientError::Closed(_) | ClientError::Lost(_)) {
                    return Err(failure);
                }
                // The server may have answered before it stopped reading.
                match tokio::time::timeout(
                    Duration::from_secs(5),
                    read_response(&self.conn, &mut self.recv),
                )
                .await
                {
                    Ok(Ok(Response::Error(api))) => Err(ClientError::Api(api)),
                    _ => Err(failure),
                }
            }
        }
    }

    /// Ends the send side and returns the server's answer; an error answer becomes
    /// `ClientError::Api`.
    pub async fn finish(mut self) -> Result<Response, ClientError> {
        let _ = self.send.finish();
        match read_response(&self.conn, &mut self.recv).await? {
            Response::Error(e) => Err(ClientError::Api(e)),
            response => Ok(response),
        }
    }
}

/// The raw bytes that follow a download's answer frame, read incrementally into buffers
/// the caller owns.
#[derive(Debug)]
pub struct RawDownload {
    recv: quinn::RecvStream,
    conn: quinn::Connection,
}

impl RawDownload {
    /// Fills `buf` unless the stream ends first; returns how many bytes were read (less
    /// than `buf.len()` only at the end of the stream).
    pub async fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, ClientError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.recv.read(&mut buf[filled..]).await {
                Ok(Some(n)) => filled += n,
                Ok(None) => break,
                Err(e) => return Err(stream_error(&self.conn, e.to_string())),
            }
        }
        Ok(filled)
    }

    /// Checks that no byte follows.
    pub async fn expect_end(&mut self) -> Result<(), ClientError> {
        let mut probe = [0u8; 1];
        match self.read_full(&mut probe).await? {
            0 => Ok(()),
            _ => Err(ClientError::Protocol(
                "the server sent more bytes than the file has".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_list_is_split_at_commas_and_blanks_are_dropped() {
        assert_eq!(addresses("a:1"), ["a:1"]);
        assert_eq!(addresses(" a:1, b:2 ,,c:3 "), ["a:1", "b:2", "c:3"]);
        assert!(addresses(" , ").is_empty());
    }
}
