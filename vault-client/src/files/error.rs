//! `FilesError`: what can go wrong in a file command, with messages that say what to do.

use std::path::PathBuf;

use vault_core::format::FormatError;
use vault_core::proto::ErrorCode;

use crate::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The connection or the server's answer.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A local file could not be read or written.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// What the user asked for can't be done as asked (a bad path, a directory without -r).
    #[error("{0}")]
    Usage(String),
    /// The connection kept breaking: the retries are used up.
    #[error("{0}")]
    GaveUp(String),
    /// Something the server returned did not verify: nothing was written.
    #[error("{0}")]
    Integrity(String),
    /// A sealing or opening step failed.
    #[error("{0}")]
    Format(#[from] FormatError),
}

impl FilesError {
    /// An I/O error on `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FilesError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// The connection broke: reconnecting and resuming may help.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            FilesError::Client(
                ClientError::Closed(_) | ClientError::Lost(_) | ClientError::Connect { .. }
            )
        )
    }

    /// Whether the rest of a many-file transfer would fail the same way, so it stops:
    /// the connection is gone for good ([`FilesError::GaveUp`]), the server refuses the session
    /// or fails, its certificate is wrong, or the local disk is full or read-only.
    /// Anything else (a file that does not verify, was deleted or changed meanwhile, or
    /// cannot be written where it goes) is that file's alone.
    pub fn stops_the_rest(&self) -> bool {
        match self {
            FilesError::Client(ClientError::Api(e)) => !matches!(
                e.code,
                ErrorCode::NotFound | ErrorCode::Conflict | ErrorCode::BadRequest
            ),
            FilesError::Client(ClientError::Crypto(_)) => false,
            FilesError::Client(_) | FilesError::GaveUp(_) => true,
            FilesError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::QuotaExceeded
                    | std::io::ErrorKind::ReadOnlyFilesystem
            ),
            FilesError::Usage(_) | FilesError::Integrity(_) | FilesError::Format(_) => false,
        }
    }

    /// The server asked to slow down (its per-connection request rate): after this many
    /// seconds the same request may succeed. File requests are never throttled for any
    /// other reason.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            FilesError::Client(ClientError::Api(e)) => match e.code {
                vault_core::proto::ErrorCode::Throttled { retry_after_s } => Some(retry_after_s),
                _ => None,
            },
            _ => None,
        }
    }

    /// The server's stable error code, if it refused the request.
    pub fn api_code(&self) -> Option<&'static str> {
        match self {
            FilesError::Client(c) => c.api_code(),
            _ => None,
        }
    }
}
