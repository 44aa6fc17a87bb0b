//! `vault key fingerprint [USER]` and `vault key verify USER SHA256:…` (docs/FORMAT.md §8.4): show
//! a public key's fingerprint with what the pin store knows about it, and pin one as verified after
//! comparing it with its owner.

use vault_core::crypto::public_key_fingerprint;

use super::ops::{user_key, username};
use super::pins::KnownKey;
use crate::files::{Files, FilesError};

/// A user's key as the server has it, and what this client trusts for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    pub username: String,
    /// `SHA256:<hex>` of the public key the server holds.
    pub fingerprint: String,
    /// The caller's own key.
    pub own: bool,
    /// The pin store's entry (never for the caller's own key).
    pub pin: Option<KnownKey>,
}

impl KeyReport {
    /// Whether the server's key is the one trusted (own keys and unpinned users: `None`).
    pub fn matches_pin(&self) -> Option<bool> {
        self.pin.as_ref().map(|p| p.fingerprint == self.fingerprint)
    }
}

/// Checks the `SHA256:<64 hex>` form of a fingerprint typed by the user.
pub fn parse_fingerprint(text: &str) -> Result<String, FilesError> {
    let hex = text
        .strip_prefix("SHA256:")
        .or_else(|| text.strip_prefix("sha256:"))
        .unwrap_or("");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FilesError::Usage(format!(
            "invalid fingerprint {text:?}: expected SHA256: followed by 64 hex digits, as \
             `vault key fingerprint` prints it"
        )));
    }
    Ok(format!("SHA256:{}", hex.to_ascii_lowercase()))
}

/// The caller's own fingerprint (`user` = `None`), or `user`'s as the server has it.
pub async fn fingerprint(files: &Files, user: Option<&str>) -> Result<KeyReport, FilesError> {
    let me = files.me()?;
    let Some(user) = user else {
        return Ok(KeyReport {
            username: me.username().to_owned(),
            fingerprint: me.fingerprint(),
            own: true,
            pin: None,
        });
    };
    let user = username(user)?;
    let key = user_key(files, &user).await?;
    let fingerprint = public_key_fingerprint(&key.public_key);
    if user == me.username() {
        if key.public_key.as_slice() != me.public_key() {
            return Err(FilesError::Integrity(format!(
                "the server gives your own account the public key {fingerprint}, but your key \
                 is {}",
                me.fingerprint()
            )));
        }
        return Ok(KeyReport {
            username: user,
            fingerprint,
            own: true,
            pin: None,
        });
    }
    Ok(KeyReport {
        pin: files.pins().get(&user)?,
        username: user,
        fingerprint,
        own: false,
    })
}

/// What `verify` pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub username: String,
    pub fingerprint: String,
    /// What was trusted for the user before (`None`: nothing, or it is the own key).
    pub before: Option<KnownKey>,
}

/// Compares `user`'s key on the server with `expected` (as the user read it from its
/// owner) and pins it as verified; a different key is refused showing both.
pub async fn verify(files: &Files, user: &str, expected: &str) -> Result<Verified, FilesError> {
    let expected = parse_fingerprint(expected)?;
    let report = fingerprint(files, Some(user)).await?;
    if report.fingerprint != expected {
        return Err(FilesError::Integrity(format!(
            "the server gives {user} the public key {actual}, not {expected}; nothing was \
             pinned. Compare again with {user} (`vault key fingerprint` on their machine): if \
             they see {expected}, the server is handing out another key for them",
            user = report.username,
            actual = report.fingerprint,
        )));
    }
    let before = if report.own {
        None
    } else {
        files.pins().verify(&report.username, &expected)?
    };
    Ok(Verified {
        username: report.username,
        fingerprint: expected,
        before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::pins::PinSource;

    #[test]
    fn fingerprints_are_checked_and_lowercased() {
        let hex = "AB".repeat(32);
        assert_eq!(
            parse_fingerprint(&format!("SHA256:{hex}")).expect("upper"),
            format!("SHA256:{}", hex.to_lowercase())
        );
        for bad in [
            "",
            "SHA256:abc",
            &format!("MD5:{hex}"),
            &format!("SHA256:{}", "g".repeat(64)),
        ] {
            let err = parse_fingerprint(bad).expect_err(bad);
            assert!(err.to_string().contains("vault key fingerprint"), "{err}");
        }
    }

    #[test]
    fn a_report_says_whether_the_server_key_is_the_pinned_one() {
        let pin = |fp: &str| KnownKey {
            fingerprint: fp.into(),
            source: PinSource::Verified,
            since: 0,
            previous: Vec::new(),
        };
        let mut r = KeyReport {
            username: "bob".into(),
            fingerprint: "SHA256:aa".into(),
            own: false,
            pin: None,
        };
        assert_eq!(r.matches_pin(), None);
        r.pin = Some(pin("SHA256:aa"));
        assert_eq!(r.matches_pin(), Some(true));
        r.pin = Some(pin("SHA256:bb"));
        assert_eq!(r.matches_pin(), Some(false));
    }
}
