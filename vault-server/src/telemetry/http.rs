//! The scrape endpoint's HTTP/1.1: just enough for Prometheus. `GET /metrics` is answered
//! with the rendered metrics (`text/plain; version=0.0.4`), any other request line with
//! 404, a request head that is not HTTP or over [`HEAD_MAX`] bytes with 400; every answer
//! closes the connection. A client gets [`TIMEOUT`] to send its head and take the answer,
//! and at most [`CONNECTIONS`] are served at once (more are closed at once).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The largest request head read.
pub const HEAD_MAX: usize = 8 * 1024;
/// For reading the request head, and again for writing the answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes served at once.
pub const CONNECTIONS: usize = 8;

/// Accepts scrapes on `listener` forever; `render` makes the body of `GET /metrics`.
pub async fn serve(listener: TcpListener, render: impl Fn() -> String + Send + Sync + 'static) {
    let render = Arc::new(render);
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, mostly: wait rather than spin.
                tracing::warn!(error = %e, "metrics: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "metrics: too many scrapes at once; closing one");
            continue;
        };
        let render = Arc::clone(&render);
        tokio::spawn(async move {
            let _slot = slot;
            answer(stream, &*render, TIMEOUT).await;
        });
    }
}

/// Reads one request head from `stream` and answers it.
pub async fn answer<S>(
    mut stream: S,
    render: &(dyn Fn() -> String + Send + Sync),
    timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let head = match tokio::time::timeout(timeout, read_head(&mut stream)).await {
        Ok(Ok(head)) => head,
        Ok(Err(Refused::BadRequest)) => Err(()),
        Ok(Err(Refused::Gone)) | Err(_) => return,
    };
    let (status, body) = match head.as_deref().map(request_line) {
        Ok(Some(("GET", "/metrics"))) => ("200 OK", render()),
        Ok(Some(_)) => (
            "404 Not Found",
            "not found: the metrics are at GET /metrics\n".into(),
        ),
        Ok(None) | Err(()) => ("400 Bad Request", "bad request\n".into()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(timeout, write).await;
}

enum Refused {
    /// Over [`HEAD_MAX`] bytes: answered 400.
    BadRequest,
    /// The client closed, or the connection failed: nothing to answer.
    Gone,
}

/// The request head up to the empty line.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Result<String, ()>, Refused> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        // Never more than the largest head and its empty line.
        let room = (HEAD_MAX + 4 - head.len()).min(buf.len());
        if room == 0 {
            return Err(Refused::BadRequest);
        }
        let n = stream
            .read(&mut buf[..room])
            .await
            .map_err(|_| Refused::Gone)?;
        if n == 0 {
            return Err(Refused::Gone);
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(String::from_utf8(head).map_err(|_| ()));
        }
    }
}

/// The method and path (without a query) of an HTTP/1.x request head.
fn request_line(head: &str) -> Option<(&str, &str)> {
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    Some((method, target.split('?').next().unwrap_or(target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render() -> String {
        "vault_requests_total 1\n".into()
    }

    /// What the server answers to `request`, the client then closing its side.
    async fn exchange(request: &[u8]) -> String {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(async move {
            answer(server, &render, Duration::from_millis(500)).await;
        });
        // A write into a closed pipe (the server already answered) is fine.
        let _ = client.write_all(request).await;
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut out))
            .await
            .expect("the server closes the connection")
            .expect("read");
        served.await.expect("served");
        String::from_utf8(out).expect("utf-8")
    }

    #[tokio::test]
    async fn get_metrics_is_answered_with_the_rendered_metrics() {
        let out = exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(
            out.contains("Content-Type: text/plain; version=0.0.4"),
            "{out}"
        );
        assert!(out.contains("Connection: close\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nvault_requests_total 1\n"), "{out}");
    }

    #[tokio::test]
    async fn any_other_request_is_not_found_or_bad() {
        for request in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET /metrics/../etc HTTP/1.1\r\n\r\n",
            b"POST /metrics HTTP/1.1\r\n\r\n",
        ] {
            let out = exchange(request).await;
            assert!(out.starts_with("HTTP/1.1 404 "), "{out}");
            assert!(!out.contains("vault_"), "{out}");
        }
        for request in [&b"\x16\x03\x01garbage\r\n\r\n"[..], b"GET /metrics\r\n\r\n"] {
            let out = exchange(request).await;
            assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        }
    }

    #[tokio::test]
    async fn an_oversized_head_is_refused_and_a_silent_client_is_dropped() {
        // The largest head is answered; one byte more is not.
        let head = |len: usize| {
            let mut head = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
            head.resize(len, b'a');
            head.extend_from_slice(b"\r\n\r\n");
            head
        };
        let out = exchange(&head(HEAD_MAX)).await;
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
        for len in [HEAD_MAX + 1, HEAD_MAX + 700, 10 * HEAD_MAX] {
            let out = exchange(&head(len)).await;
            assert!(out.starts_with("HTTP/1.1 400 "), "{len}: {out}");
        }

        // Half a head, then silence: closed after the timeout, unanswered.
        let (mut client, server) = tokio::io::duplex(1024);
        let served = tokio::spawn(async move {
            answer(server, &render, Duration::from_millis(200)).await;
        });
        client.write_all(b"GET /metr").await.expect("write");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut out))
            .await
            .expect("closed, not hung")
            .expect("read");
        assert!(out.is_empty());
        served.await.expect("served");
    }
}
