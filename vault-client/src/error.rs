//! `ClientError`: what can go wrong on the client side, with messages that say what to do.

use vault_core::crypto::CryptoError;
use vault_core::proto::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{}", .0.message)]
    Api(ApiError),
    /// The server's certificate differs from the pinned one.
    #[error(
        "the server's certificate has changed: pinned {pinned}, presented {presented}. If the operator \
         replaced the certificate, confirm the new fingerprint with them and pass --fingerprint {presented}; \
         otherwise someone may be intercepting the connection"
    )]
    CertificateChanged { pinned: String, presented: String },
    /// The server's certificate is not the one `--fingerprint` named.
    #[error(
        "the server's certificate {presented} does not match the fingerprint you typed ({typed}). \
         Compare it again with what `vault-admin cert show` prints on the server; if they really \
         differ, someone may be intercepting the connection"
    )]
    FingerprintMismatch { typed: String, presented: String },
    /// No fingerprint is pinned for this server and none was given.
    #[error(
        "the server's certificate is not pinned yet; it presented {presented}. \
         Compare this with the fingerprint the operator printed (`vault-admin cert show`), then pass \
         --fingerprint {presented} (or --accept-new-cert to trust it on first use)"
    )]
    NotPinned { presented: String },
    #[error("cannot reach the server at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("the server closed the connection: {0}")]
    Closed(String),
    /// The connection ended without the server closing it: it restarted (and said so with
    /// a stateless reset), or it stopped answering.
    #[error("the connection was lost ({0})")]
    Lost(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    State(String),
    #[error("{0}")]
    Usage(String),
}

impl ClientError {
    /// The stable wire code when the server refused the request.
    pub fn api_code(&self) -> Option<&'static str> {
        match self {
            ClientError::Api(e) => Some(e.code.as_str()),
            _ => None,
        }
    }
}

impl From<ApiError> for ClientError {
    fn from(e: ApiError) -> Self {
        ClientError::Api(e)
    }
}
