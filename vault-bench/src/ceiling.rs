//! The ceilings every figure is a fraction of, measured in this process on this machine:
//! a bare quinn bulk transfer over loopback (rustls with aws-lc-rs, the transport settings
//! of `vault-server` and `vault`), and single-threaded AES-256-GCM sealing of 1 MiB chunks
//! with aws-lc-rs, as the client seals file contents. Also the same quinn transfer into a
//! second process, which is not a ceiling but shows what the separation costs.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::pki_types::CertificateDer;
use zeroize::Zeroizing;

use crate::cpu;

/// The chunk size of both ceilings: the client's plaintext chunk (docs/FORMAT.md §7.2).
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
    /// CPU time of both endpoints per byte sent, in seconds.
    pub cpu_per_byte: f64,
    /// That CPU time as a share of every core's time while the transfer ran.
    pub busy: f64,
}

impl Transfer {
    fn new(total: u64, elapsed: Duration, cpu: Duration) -> Transfer {
        let cores = cpu::cores();
        Transfer {
            rate: rate(total, elapsed),
            cpu_per_byte: cpu.as_secs_f64() / total as f64,
            busy: cpu.as_secs_f64() / (elapsed.as_secs_f64().max(1e-9) * cores as f64),
        }
    }
}

/// Sends `total` bytes on one bidirectional stream from a client endpoint to a server
/// endpoint, both on loopback in this process; the clock runs from opening the stream to
/// the receiver's acknowledgement that it read everything. The sender hands quinn the same
/// 1 MiB buffer again and again without copying it, the receiver takes quinn's buffers as
/// they are: nothing but the transport.
pub fn quinn_bulk(total: u64) -> anyhow::Result<Transfer> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start a tokio runtime")?;
    runtime.block_on(async {
        let (server, cert) = receiving_endpoint()?;
        let server_addr = server.local_addr()?;
        let receiver = tokio::spawn(receive_one(server));
        let client = sending_endpoint(cert)?;
        let conn = client.connect(server_addr, "localhost")?.await?;
        let cpu_before = cpu::of_this_process();
        let elapsed = send_all(&conn, total).await?;
        let cpu = cpu::of_this_process().saturating_sub(cpu_before);
        conn.close(0u8.into(), b"done");
        receiver.await.context("the receiver task failed")??;
        client.wait_idle().await;
        Ok(Transfer::new(total, elapsed, cpu))
    })
}

/// The flag that makes `vault-bench` the receiving process of [`quinn_bulk_two_processes`].
pub const RECEIVER_FLAG: &str = "--quinn-receiver";

/// [`quinn_bulk`] with the receiver in a second process (this executable with
/// [`RECEIVER_FLAG`]), as a client and a server are; the CPU time is both processes'.
/// Not a ceiling: it shows what the separation alone costs the transport.
pub fn quinn_bulk_two_processes(total: u64) -> anyhow::Result<Transfer> {
    let mut child = Command::new(std::env::current_exe().context("cannot find this executable")?)
        .arg(RECEIVER_FLAG)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the receiving process")?;
    let result = send_to_child(&mut child, total);
    if result.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().context("the receiving process was lost")?;
    let transfer = result?;
    anyhow::ensure!(status.success(), "the receiving process failed ({status})");
    Ok(transfer)
}

fn send_to_child(child: &mut std::process::Child, total: u64) -> anyhow::Result<Transfer> {
    let mut line = String::new();
    BufReader::new(
        child
            .stdout
            .take()
            .context("no stdout of the receiving process")?,
    )
    .read_line(&mut line)?;
    let (addr, cert) = line
        .trim()
        .split_once(' ')
        .with_context(|| format!("the receiving process said {line:?}"))?;
    let addr: SocketAddr = addr.parse()?;
    let cert = hex::decode(cert).context("the receiving process sent a bad certificate")?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start a tokio runtime")?;
    runtime.block_on(async {
        let client = sending_endpoint(cert.into())?;
        let conn = client.connect(addr, "localhost")?.await?;
        let (mine, theirs) = (cpu::of_this_process(), cpu::of_process(child.id())?);
        let elapsed = send_all(&conn, total).await?;
        // The receiver waits for this side to close, so it is still there to be read.
        let cpu = cpu::of_this_process().saturating_sub(mine)
            + cpu::of_process(child.id())?.saturating_sub(theirs);
        conn.close(0u8.into(), b"done");
        client.wait_idle().await;
        Ok(Transfer::new(total, elapsed, cpu))
    })
}

/// The receiving process of [`quinn_bulk_two_processes`]: prints its address and
/// certificate (hex DER) on one line, takes one connection's stream, answers with the byte
/// count and waits for the sender to close.
pub fn serve_one_transfer() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start a tokio runtime")?;
    runtime.block_on(async {
        let (server, cert) = receiving_endpoint()?;
        let mut out = std::io::stdout();
        writeln!(out, "{} {}", server.local_addr()?, hex::encode(&cert))?;
        out.flush()?;
        receive_one(server).await
    })
}

/// A server endpoint on a free loopback port with a fresh self-signed certificate and the
/// transport settings of `vault-server/src/net/mod.rs` (with the default limits).
fn receiving_endpoint() -> anyhow::Result<(quinn::Endpoint, CertificateDer<'static>)> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
    tls.alpn_protocols = vec![b"bench".to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(tls)?,
    ));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(64u8.into())
        .max_concurrent_uni_streams(0u8.into())
        .max_idle_timeout(Some(Duration::from_secs(60).try_into()?));
    config.transport_config(Arc::new(transport));
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    Ok((quinn::Endpoint::server(config, loopback)?, cert))
}

/// A client endpoint on loopback that trusts `cert`, with the transport settings of
/// `vault-client/src/transport.rs`.
fn sending_endpoint(cert: CertificateDer<'static>) -> anyhow::Result<quinn::Endpoint> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"bench".to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
    ));
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(Duration::from_secs(10)))
        .max_idle_timeout(Some(Duration::from_secs(60).try_into()?));
    config.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// Takes one connection's first stream to its end, answers with the byte count, and keeps
/// the connection until the sender has read the answer and closed it.
async fn receive_one(server: quinn::Endpoint) -> anyhow::Result<()> {
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
    conn.closed().await;
    Ok(())
}

/// Sends `total` bytes on a new stream, one 1 MiB buffer again and again without a copy,
/// and waits for the receiver's count; returns the time from opening the stream to the
/// count.
async fn send_all(conn: &quinn::Connection, total: u64) -> anyhow::Result<Duration> {
    let buffer = bytes::Bytes::from(vec![0x5au8; CHUNK]);
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
    anyhow::ensure!(
        u64::from_be_bytes(ack) == total,
        "the receiver counted {} bytes, {total} were sent",
        u64::from_be_bytes(ack)
    );
    Ok(elapsed)
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
