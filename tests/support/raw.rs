//! A bare QUIC client for the tests that play an attacker: it connects from a chosen local
//! address (Linux loopback answers for all of 127/8, so each test "host" is one address),
//! accepts whatever certificate the server shows (these tests are not about pinning), and
//! sends raw frames or single requests.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use vault_core::proto::{self, Request, Response};

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client endpoint whose packets come from `local` (e.g. `127.0.0.7`).
pub fn endpoint_from(local: IpAddr) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![proto::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS");
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        Duration::from_secs(30).try_into().expect("idle timeout"),
    ));
    config.transport_config(Arc::new(transport));
    let mut endpoint =
        quinn::Endpoint::client(SocketAddr::new(local, 0)).expect("bind a client socket");
    endpoint.set_default_client_config(config);
    endpoint
}

/// Connects `endpoint` to `server` (`HOST:PORT`), without saying hello.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    server: &str,
) -> Result<quinn::Connection, String> {
    let addr: SocketAddr = server.parse().map_err(|e| format!("{server}: {e}"))?;
    let connecting = endpoint
        .connect(addr, "localhost")
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(15), connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no handshake within 15 s".into()),
    }
}

/// Sends one request on a new stream and reads the answer.
pub async fn call(conn: &quinn::Connection, request: &Request) -> Result<Response, String> {
    let frame = proto::encode_frame(request).map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(&frame).await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    let mut header = [0u8; 4];
    recv.read_exact(&mut header)
        .await
        .map_err(|e| e.to_string())?;
    let len = proto::parse_header(header).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    proto::decode_body(&body).map_err(|e| e.to_string())
}

/// Connects and says hello.
pub async fn connect_with_hello(
    endpoint: &quinn::Endpoint,
    server: &str,
) -> Result<quinn::Connection, String> {
    let conn = connect(endpoint, server).await?;
    match call(
        &conn,
        &Request::Hello {
            protocol_version: proto::PROTOCOL_VERSION,
        },
    )
    .await?
    {
        Response::Hello { .. } => Ok(conn),
        other => Err(format!("unexpected answer to hello: {other:?}")),
    }
}
