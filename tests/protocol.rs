//! End to end: the wire protocol's defences. Malformed, oversized and unknown frames,
//! a wrong protocol version, skipping hello and requests before login each get a clear
//! error on their stream, while the connection and the server keep serving.

use vault_client::ClientError;
use vault_client::transport::{self, Pin};
use vault_core::proto::{self, ErrorCode, Request, Response};
use vault_e2e::{TestServer, init_tls};

fn code_of(result: Result<Response, ClientError>) -> ErrorCode {
    match result {
        Ok(Response::Error(e)) => e.code,
        Err(ClientError::Api(e)) => e.code,
        other => panic!("expected an error answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_frames_get_error_codes_and_the_connection_keeps_serving() {
    init_tls();
    let server = TestServer::start();
    let pin = Pin::Fingerprint(server.fingerprint.clone());
    let conn = transport::connect(&server.addr, &pin)
        .await
        .expect("connect");

    let oversized = ((proto::MAX_FRAME_LEN + 1) as u32).to_be_bytes();
    assert_eq!(
        code_of(conn.exchange(&oversized).await),
        ErrorCode::TooLarge
    );
    assert_eq!(
        code_of(conn.exchange(b"\x00\x00\x00\x05hello").await),
        ErrorCode::BadRequest
    );
    assert_eq!(code_of(conn.exchange(&[0, 0]).await), ErrorCode::BadRequest);
    assert_eq!(
        code_of(conn.exchange(b"\x00\x00\x00\x10short").await),
        ErrorCode::BadRequest
    );
    let mut unknown = Vec::new();
    ciborium::into_writer(
        &std::collections::BTreeMap::from([("format_disk", 1)]),
        &mut unknown,
    )
    .expect("cbor");
    let mut frame = (unknown.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&unknown);
    assert_eq!(code_of(conn.exchange(&frame).await), ErrorCode::BadRequest);
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let answer = code_of(conn.exchange(&random).await);
    assert!(
        matches!(answer, ErrorCode::TooLarge | ErrorCode::BadRequest),
        "{answer:?}"
    );
    assert_eq!(
        code_of(conn.call(&Request::Whoami).await),
        ErrorCode::Forbidden
    );

    // Same connection, still healthy; and the fake salt for an unknown name is stable.
    let salt = |r: Response| match r {
        Response::Prelogin { salt, .. } => salt,
        other => panic!("{other:?}"),
    };
    let a = salt(
        conn.call(&Request::Prelogin {
            username: "nobody".into(),
        })
        .await
        .expect("prelogin"),
    );
    let b = salt(
        conn.call(&Request::Prelogin {
            username: "nobody".into(),
        })
        .await
        .expect("prelogin"),
    );
    assert_eq!(a, b);
    assert_eq!(a.len(), 16);

    // A new connection works too.
    let again = transport::connect(&server.addr, &pin)
        .await
        .expect("reconnect");
    again
        .call(&Request::Prelogin {
            username: "someone".into(),
        })
        .await
        .expect("prelogin");
}

#[tokio::test(flavor = "multi_thread")]
async fn hello_comes_first_and_versions_must_match() {
    init_tls();
    let server = TestServer::start();
    let pin = Pin::Fingerprint(server.fingerprint.clone());
    let raw = transport::open(&server.addr, &pin).await.expect("open");
    let err = raw
        .call(&Request::Prelogin {
            username: "someone".into(),
        })
        .await;
    assert_eq!(code_of(err), ErrorCode::BadRequest);
    let err = raw
        .call(&Request::Hello {
            protocol_version: proto::PROTOCOL_VERSION + 1,
        })
        .await;
    assert_eq!(code_of(err), ErrorCode::UnsupportedVersion);
    raw.call(&Request::Hello {
        protocol_version: proto::PROTOCOL_VERSION,
    })
    .await
    .expect("hello");
    raw.call(&Request::Prelogin {
        username: "someone".into(),
    })
    .await
    .expect("prelogin after hello");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_pin_fails_the_handshake_before_any_request() {
    init_tls();
    let server = TestServer::start();
    let wrong = Pin::Fingerprint(format!("SHA256:{}", "0".repeat(64)));
    match transport::connect(&server.addr, &wrong).await {
        Err(ClientError::CertificateChanged { presented, .. }) => {
            assert_eq!(presented, server.fingerprint)
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_rate_and_connections_per_address_are_limited() {
    init_tls();
    let server = TestServer::start_with(
        "[limits]\nrequests_per_second = 1\nrequest_burst = 3\nconnections_per_ip = 2\n",
    );
    let pin = Pin::Fingerprint(server.fingerprint.clone());
    let conn = transport::connect(&server.addr, &pin)
        .await
        .expect("connect");
    let mut throttled = false;
    for _ in 0..6 {
        if let Err(ClientError::Api(e)) = conn
            .call(&Request::Prelogin {
                username: "someone".into(),
            })
            .await
        {
            assert!(matches!(e.code, ErrorCode::Throttled { .. }), "{e:?}");
            throttled = true;
        }
    }
    assert!(throttled, "a burst over the limit is throttled");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    conn.call(&Request::Prelogin {
        username: "someone".into(),
    })
    .await
    .expect("allowed again after a second");

    let _second = transport::connect(&server.addr, &pin)
        .await
        .expect("second connection");
    let third = transport::connect(&server.addr, &pin).await;
    assert!(
        third.is_err(),
        "a third connection from one address is refused"
    );
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let mut server = TestServer::start();
    server.stop();
    let log = server.log();
    assert!(log.contains("shutting down"), "{log}");
}
