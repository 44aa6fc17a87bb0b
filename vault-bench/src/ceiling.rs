//! The ceilings every figure is a fraction of, measured in this process on this machine:
//! a bare quinn bulk transfer over loopback (rustls with aws-lc-rs, the transport settings
//! of `vault-server` and `vault`), and single-threaded AES-256-GCM sealing of 1 MiB chunks
//! with aws-lc-rs, as the client seals file contents.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::cpu;

/// The chunk size of both ceilings: the client's plaintext chunk (SPEC §6.2).
pub const CHUNK: usize = 1 << 20;

/// Seals `total` bytes in 1 MiB chunks under one key; returns bytes per second.
pub fn aead_seal(total: u64) -> anyhow::Result<f64> {
    let mut key = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(key.as_mut()).context("no system randomness")?;
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key.as_ref()).context("AES-256-GCM key rejected")?,
    );
    let mut chunk = vec![0u8; CHUNK];
    aws_lc_rs::rand::fill(&mut chunk).context("no system randomness")?;
    let chunks = total.div_ceil(CHUNK as u64);
    let start = Instant::now();
    for index in 0..chunks {
        let mut nonce = [0u8; 12];
        nonce[3..11].copy_from_slice(&index.to_be_bytes());
        nonce[11] = u8::from(index + 1 == chunks);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut chunk,
            )
            .map_err(|_| anyhow::anyhow!("AES-256-GCM seal failed"))?;
        std::hint::black_box(tag.as_ref());
    }
    Ok(rate(chunks * CHUNK as u64, start.elapsed()))
}

/// A raw transfer: its rate and what it cost.
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    /// Bytes per second.
    pub rate: f64,
    /// CPU time of both endpoints (this whole process) per byte sent, in seconds.
    pub cpu_per_byte: f64,
    /// That CPU time as a share of every core's time while the transfer ran.
    pub busy: f64,
}

/// Sends `total` bytes on one bidirectional stream from a client endpoint to a server
/// endpoint, both on loopback in this process; the clock runs from opening the stream to
/// the receiver's acknowledgement that it read everything. The sender hands quinn the same
/// 1 MiB buffer again and again without copying it, the receiver takes quinn's buffers as
/// they are: nothing but the transport.
pub fn quinn_bulk(total: u64) -> anyhow::Result<Transfer> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start a tokio runtime")?;
    runtime.block_on(quinn_bulk_async(total))
}

async fn quinn_bulk_async(total: u64) -> anyhow::Result<Transfer> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());

    let mut server_tls = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
    server_tls.alpn_protocols = vec![b"bench".to_vec()];
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)?,
    ));
    // As `vault-server/src/net/mod.rs` sets them (with the default limits).
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(64u8.into())
        .max_concurrent_uni_streams(0u8.into())
        .max_idle_timeout(Some(Duration::from_secs(60).try_into()?));
    server_config.transport_config(Arc::new(transport));
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let server = quinn::Endpoint::server(server_config, loopback)?;
    let server_addr = server.local_addr()?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_tls.alpn_protocols = vec![b"bench".to_vec()];
    let mut client_config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client_tls)?,
    ));
    // As `vault-client/src/transport.rs` sets them.
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(Duration::from_secs(10)))
        .max_idle_timeout(Some(Duration::from_secs(60).try_into()?));
    client_config.transport_config(Arc::new(transport));
    let mut client = quinn::Endpoint::client(loopback)?;
    client.set_default_client_config(client_config);

    let receiver = tokio::spawn(async move {
        let incoming = server
            .accept()
            .await
            .context("the server endpoint closed")?;
        let conn = incoming.await?;
        let (mut send, mut recv) = conn.accept_bi().await?;
        let mut received = 0u64;
        while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
            received += chunk.bytes.len() as u64;
        }
        send.write_all(&received.to_be_bytes()).await?;
        send.finish()?;
        // Keep the connection until the sender has read the acknowledgement.
        conn.closed().await;
        anyhow::Ok(())
    });

    let conn = client.connect(server_addr, "localhost")?.await?;
    let buffer = bytes::Bytes::from(vec![0x5au8; CHUNK]);
    let cpu_before = cpu::of_this_process();
    let start = Instant::now();
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(CHUNK as u64);
        send.write_chunk(buffer.slice(..usize::try_from(n)?))
            .await?;
        sent += n;
    }
    send.finish()?;
    let mut ack = [0u8; 8];
    recv.read_exact(&mut ack).await?;
    let elapsed = start.elapsed();
    let cpu = cpu::of_this_process().saturating_sub(cpu_before);
    anyhow::ensure!(
        u64::from_be_bytes(ack) == total,
        "the receiver counted {} bytes, {total} were sent",
        u64::from_be_bytes(ack)
    );
    conn.close(0u8.into(), b"done");
    receiver.await.context("the receiver task failed")??;
    client.wait_idle().await;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    Ok(Transfer {
        rate: rate(total, elapsed),
        cpu_per_byte: cpu.as_secs_f64() / total as f64,
        busy: cpu.as_secs_f64() / (elapsed.as_secs_f64().max(1e-9) * cores as f64),
    })
}

/// Bytes per second.
pub fn rate(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64().max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quinn_bulk_moves_every_byte() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let transfer = quinn_bulk(3 * CHUNK as u64 + 17).expect("transfer");
        assert!(transfer.rate > 0.0);
        assert!(transfer.busy >= 0.0 && transfer.cpu_per_byte >= 0.0);
    }

    #[test]
    fn aead_seal_covers_a_partial_last_chunk() {
        let rate = aead_seal(CHUNK as u64 + 1).expect("seal");
        assert!(rate > 0.0);
    }
}
