//! The recovery key: 32 random bytes shown once to the user as
//! `vault-rk-XXXX-XXXX-…-XXXX` (RFC 4648 base32, 13 groups of 4), which can open the
//! account key when the password is lost (docs/FORMAT.md §1, §3).

use data_encoding::BASE32_NOPAD;
use zeroize::Zeroizing;

use super::error::CryptoError;
use super::secret::Key32;

/// The prefix of a displayed recovery key.
pub const RECOVERY_PREFIX: &str = "vault-rk-";
/// Base32 characters in a recovery key (32 bytes, no padding).
const CHARS: usize = 52;
/// Characters per group.
const GROUP: usize = 4;
/// Length of the displayed form: prefix, 52 characters and 12 dashes.
const DISPLAY_LEN: usize = RECOVERY_PREFIX.len() + CHARS + CHARS / GROUP - 1;

const SHAPE: &str = "a recovery key looks like vault-rk-XXXX-…-XXXX (13 groups of 4)";

fn invalid(msg: impl Into<String>) -> CryptoError {
    CryptoError::InvalidRecoveryKey(msg.into())
}

/// A recovery key. `Debug` is redacted; the text form comes only from
/// [`RecoveryKey::to_display`].
pub struct RecoveryKey(Key32);

impl RecoveryKey {
    /// A fresh random recovery key.
    pub fn generate() -> Result<Self, CryptoError> {
        Key32::generate().map(Self)
    }

    /// Wraps existing key bytes (for tests and vectors).
    pub fn from_key(key: Key32) -> Self {
        Self(key)
    }

    /// The key that seals the account key.
    pub fn key(&self) -> &Key32 {
        &self.0
    }

    /// The text shown to the user once: `vault-rk-` + 13 dash-separated groups of 4
    /// uppercase base32 characters (73 characters in all).
    pub fn to_display(&self) -> Zeroizing<String> {
        let mut chars = Zeroizing::new([0u8; CHARS]);
        BASE32_NOPAD.encode_mut(self.0.dangerously_leak_secret(), chars.as_mut_slice());
        // Exact capacity so the secret text is never copied by a reallocation.
        let mut out = Zeroizing::new(String::with_capacity(DISPLAY_LEN));
        out.push_str(RECOVERY_PREFIX);
        for (i, group) in chars.chunks(GROUP).enumerate() {
            if i > 0 {
                out.push('-');
            }
            for &c in group {
                out.push(char::from(c));
            }
        }
        out
    }

    /// Reads a recovery key as typed by a user: the `vault-rk-` prefix is required (any case),
    /// letters may be in any case, and spaces and dashes between characters are ignored.
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        let s = s.trim();
        let prefix = s
            .get(..RECOVERY_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(RECOVERY_PREFIX));
        if prefix.is_none() {
            return Err(invalid(format!(
                "it must start with \"vault-rk-\"; {SHAPE}"
            )));
        }
        let mut chars = Zeroizing::new([0u8; CHARS]);
        let mut n = 0;
        for c in s[RECOVERY_PREFIX.len()..].chars() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            let up = c.to_ascii_uppercase();
            if !matches!(up, 'A'..='Z' | '2'..='7') {
                return Err(invalid(format!(
                    "{c:?} is not a recovery key character (only letters A-Z and digits 2-7); {SHAPE}"
                )));
            }
            if n == CHARS {
                return Err(invalid(format!(
                    "it has more than {CHARS} characters; {SHAPE}"
                )));
            }
            chars[n] = up as u8;
            n += 1;
        }
        if n != CHARS {
            return Err(invalid(format!(
                "it has {n} characters instead of {CHARS}; {SHAPE}"
            )));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        BASE32_NOPAD
            .decode_mut(chars.as_slice(), bytes.as_mut_slice())
            .map_err(|_| invalid(format!("it is not a valid key (check for a typo); {SHAPE}")))?;
        Key32::from_slice(bytes.as_slice()).map(Self)
    }
}

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(r: Result<RecoveryKey, CryptoError>) -> String {
        match r {
            Err(CryptoError::InvalidRecoveryKey(m)) => m,
            other => panic!("expected InvalidRecoveryKey, got {other:?}"),
        }
    }

    #[test]
    fn display_shape() -> Result<(), CryptoError> {
        let rk = RecoveryKey::generate()?;
        let text = rk.to_display();
        assert_eq!(text.len(), DISPLAY_LEN);
        assert_eq!(text.len(), 73);
        assert_eq!(text.capacity(), DISPLAY_LEN);
        let groups: Vec<&str> = text["vault-rk-".len()..].split('-').collect();
        assert_eq!(groups.len(), 13);
        for g in groups {
            assert_eq!(g.len(), 4);
            assert!(g.chars().all(|c| matches!(c, 'A'..='Z' | '2'..='7')), "{g}");
        }
        Ok(())
    }

    #[test]
    fn known_display() {
        let rk = RecoveryKey::from_key(Key32::from_bytes([0u8; 32]));
        assert_eq!(
            rk.to_display().as_str(),
            format!("vault-rk-{}AAAA", "AAAA-".repeat(12))
        );
        let rk = RecoveryKey::from_key(Key32::from_bytes([0xff; 32]));
        assert_eq!(
            rk.to_display().as_str(),
            format!("vault-rk-{}777Q", "7777-".repeat(12))
        );
    }

    #[test]
    fn round_trip_and_lenient_input() -> Result<(), CryptoError> {
        for _ in 0..20 {
            let rk = RecoveryKey::generate()?;
            let text = rk.to_display();
            let want = rk.key().dangerously_leak_secret();
            let variants = [
                text.to_string(),
                text.to_lowercase(),
                format!("  {}\n", text.as_str()),
                text.replace('-', " ").replacen("vault rk ", "VAULT-RK-", 1),
                format!("Vault-Rk-{}", text["vault-rk-".len()..].replace('-', "")),
                text.replace('-', "--")
                    .replacen("vault--rk--", "vault-rk- ", 1),
            ];
            for v in variants {
                let back = RecoveryKey::parse(&v)?;
                assert_eq!(back.key().dangerously_leak_secret(), want, "{v}");
            }
        }
        Ok(())
    }

    #[test]
    fn bad_prefix() {
        let good = RecoveryKey::from_key(Key32::from_bytes([1u8; 32])).to_display();
        let body = &good["vault-rk-".len()..];
        for bad in [
            body.to_string(),
            format!("vault-{body}"),
            format!("vault-rx-{body}"),
            String::new(),
        ] {
            let m = msg(RecoveryKey::parse(&bad));
            assert!(
                m.contains("vault-rk-") && m.contains("13 groups of 4"),
                "{m}"
            );
        }
    }

    #[test]
    fn bad_length() {
        let good = RecoveryKey::from_key(Key32::from_bytes([1u8; 32])).to_display();
        let short = &good[..good.len() - 1];
        assert!(msg(RecoveryKey::parse(short)).contains("51 characters"));
        assert!(msg(RecoveryKey::parse(&format!("{}A", good.as_str()))).contains("more than 52"));
        assert!(msg(RecoveryKey::parse("vault-rk-")).contains("0 characters"));
    }

    #[test]
    fn bad_characters() {
        let good = RecoveryKey::from_key(Key32::from_bytes([1u8; 32])).to_display();
        for bad_char in ['0', '1', '8', '9', 'é', '_', '+'] {
            let mut bad = good.to_string();
            bad.replace_range(9..10, &bad_char.to_string());
            let m = msg(RecoveryKey::parse(&bad));
            assert!(m.contains("not a recovery key character"), "{bad}: {m}");
        }
    }

    #[test]
    fn non_canonical_last_character_is_refused() {
        // The 52nd character carries 1 bit; "B" sets one of the unused low bits.
        let text = format!("vault-rk-{}AAAB", "AAAA-".repeat(12));
        assert!(RecoveryKey::parse(&format!("vault-rk-{}AAAQ", "AAAA-".repeat(12))).is_ok());
        assert!(msg(RecoveryKey::parse(&text)).contains("typo"));
    }

    #[test]
    fn debug_is_redacted() {
        let rk = RecoveryKey::from_key(Key32::from_bytes([1u8; 32]));
        assert_eq!(format!("{rk:?}"), "RecoveryKey(<redacted>)");
    }
}
