//! The QUIC front end: the endpoint (TLS 1.3 only, ALPN `vault/1`, no 0-RTT), the accept
//! loop with its connection slots (per address, and for connections not logged in) and
//! handshake deadline, and graceful shutdown.

pub mod address;
pub mod budget;
pub mod connection;
pub mod slots;
pub mod stream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::Instrument;

use crate::config::Limits;
use crate::live::CLOSE_SHUTDOWN;
use crate::state::ServerState;
use crate::tls::Identity;

/// Builds the QUIC endpoint for `identity` on `listen`. `reset_key` (the deployment's
/// secret, kept in the database) keys the stateless reset tokens the endpoint hands out and
/// the hash that marks its connection ids: both the same on every instance and after every
/// restart, so a restarted server recognises a client's old connection id as one of its own
/// and answers it with a stateless reset, telling the client at once that its connection
/// is gone, instead of leaving it to time out.
pub fn endpoint(
    identity: &Identity,
    listen: SocketAddr,
    limits: &Limits,
    reset_key: &[u8],
) -> anyhow::Result<quinn::Endpoint> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .context("the TLS certificate and key do not form a usable pair")?;
    tls.alpn_protocols = vec![vault_proto::proto::ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // Every connection starts with the limits of one not logged in; logging in raises
    // them (`ConnCtx::set_session`).
    transport
        .max_concurrent_bidi_streams(limits.prelogin_streams.into())
        .receive_window(prelogin_window(limits))
        .max_concurrent_uni_streams(0u8.into())
        .max_idle_timeout(Some(Duration::from_secs(limits.idle_timeout_s).try_into()?));
    config.transport_config(Arc::new(transport));
    let reset_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, reset_key);
    let cid_key = {
        let tag = aws_lc_rs::hmac::sign(&reset_key, b"vault connection id key");
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag.as_ref()[..8]);
        u64::from_le_bytes(first)
    };
    let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key));
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let socket = std::net::UdpSocket::bind(listen)
        .with_context(|| format!("cannot listen on {listen} (UDP)"))?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| anyhow::anyhow!("no async runtime for the QUIC endpoint"))?;
    quinn::Endpoint::new(endpoint_config, Some(config), socket, runtime)
        .with_context(|| format!("cannot listen on {listen} (UDP)"))
}

/// A QUIC flow-control window of `bytes`.
pub fn window(bytes: u64) -> quinn::VarInt {
    quinn::VarInt::from_u64(bytes).unwrap_or(quinn::VarInt::MAX)
}

/// The receive window of a connection not logged in: room for two of its largest frames.
pub fn prelogin_window(limits: &Limits) -> quinn::VarInt {
    window(limits.prelogin_frame_max.0.saturating_mul(2))
}

/// How long a connection over the per-address limit waits for a slot before it is refused:
/// the close of the same client's previous connection may be a moment behind it.
const SLOT_WAIT: Duration = Duration::from_millis(20);

/// Accepts connections until `shutdown` resolves, then stops accepting, lets requests in
/// flight finish (up to `limits.shutdown_grace_s`), and closes the endpoint.
pub async fn serve(
    endpoint: quinn::Endpoint,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = &mut shutdown => break,
        };
        let Some(incoming) = incoming else { break };
        let remote = incoming.remote_address();
        let state = Arc::clone(&state);
        let span = tracing::info_span!("connection", %remote);
        tokio::spawn(
            async move {
                let key = address::client_key(remote.ip());
                let slot = match state.slots.take_within(key, SLOT_WAIT).await {
                    Ok(slot) => slot,
                    Err(refused) => {
                        tracing::warn!(?refused, "refusing connection: too many connections");
                        incoming.refuse();
                        return;
                    }
                };
                let handshake_by = Duration::from_secs(state.config.limits.hello_timeout_s);
                match tokio::time::timeout(handshake_by, incoming).await {
                    Ok(Ok(conn)) => connection::run(state, conn, slot).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "handshake failed"),
                    Err(_) => tracing::info!("handshake did not finish in time"),
                }
            }
            .instrument(span),
        );
    }
    tracing::info!("shutting down: no new connections; waiting for requests in flight");
    endpoint.set_server_config(None);
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(state.config.limits.shutdown_grace_s);
    while state.in_flight.count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    endpoint.close(CLOSE_SHUTDOWN.into(), b"server shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}
