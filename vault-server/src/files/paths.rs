//! Checks of the encrypted paths clients send, and walking a path's ancestors. The server
//! only compares these strings; it never builds a filesystem path from them.

use vault_proto::proto::{ApiError, check_encrypted_path};

/// Refuses a path that is not encrypted segments joined by `/` (`""` is the root).
pub fn check(path: &str) -> Result<(), ApiError> {
    check_encrypted_path(path).map_err(|m| ApiError::bad_request(format!("bad remote path: {m}")))
}

/// Like [`check`], and refuses the root too (`what` says what cannot be done to it).
pub fn check_not_root(path: &str, what: &str) -> Result<(), ApiError> {
    check(path)?;
    if path.is_empty() {
        return Err(ApiError::bad_request(format!(
            "cannot {what} the root folder"
        )));
    }
    Ok(())
}

/// The proper ancestors of `path`, outermost first (`a`, `a/b` for `a/b/c`).
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Whether `path` is strictly under `dir` (`dir` = `""` is the root, above everything).
pub fn is_under(path: &str, dir: &str) -> bool {
    if dir.is_empty() {
        return !path.is_empty();
    }
    path.len() > dir.len() + 1 && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_outermost_first() {
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(ancestors("a").count(), 0);
    }

    #[test]
    fn under() {
        assert!(is_under("a/b", "a"));
        assert!(is_under("a", ""));
        assert!(!is_under("ab", "a"));
        assert!(!is_under("a", "a"));
        assert!(!is_under("", ""));
    }

    #[test]
    fn bad_paths_are_bad_requests() {
        for bad in ["a//b", "../x", "a\0b", "A"] {
            let code = check(bad).err().map(|e| e.code);
            assert_eq!(
                code,
                Some(vault_proto::proto::ErrorCode::BadRequest),
                "{bad:?}"
            );
        }
        assert!(check_not_root("", "remove").is_err());
    }
}
