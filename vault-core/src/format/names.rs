//! Encrypted path segments (docs/FORMAT.md §7.5).
//!
//! The name key is 64 bytes, `HKDF(AK or GK_0, "vault/v1/names")`, used as an AES-SIV
//! (RFC 5297, CMAC, AES-256) key. Each segment of a path is encrypted on its own:
//!
//! ```text
//! padded    = utf8(name) ‖ 0x80 ‖ 0x00 × k      (smallest k ≥ 0 making the length a multiple of 16)
//! siv       = AES-SIV(name_key, ad = [parent], padded)      (16-byte synthetic IV ‖ ciphertext)
//! segment   = lowercase RFC 4648 base32 of siv, without '=' padding
//! parent    = the encrypted segments above it joined by '/', "" at the root
//! ```
//!
//! The associated data is always exactly one component (the parent string, possibly
//! empty). Encryption is deterministic, so the server can compare names (and detect that
//! a name exists) without learning them; the same name in another directory encrypts
//! differently, and an encrypted name moved to another directory fails to decrypt. The
//! server learns the tree shape and each name's length rounded up to 16 bytes.
//!
//! A plaintext segment is 1 to [`MAX_NAME_LEN`] bytes of UTF-8, not `.` or `..`, without
//! `/` or NUL. Names are compared byte for byte (no Unicode normalization).

use aes_siv::KeyInit;
use aes_siv::siv::Aes256Siv;
use data_encoding::BASE32_NOPAD;
use zeroize::Zeroizing;

use super::error::{FormatError, Result};
use crate::crypto::Key32;
use crate::crypto::kdf::{LABEL_NAMES, hkdf_sha256};

/// Longest plaintext segment, in UTF-8 bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Length of the AES-SIV name key.
pub const NAME_KEY_LEN: usize = 64;
/// Padding block: padded names are a multiple of this.
const PAD_BLOCK: usize = 16;
/// The synthetic IV that starts every AES-SIV output.
const SIV_LEN: usize = 16;
/// Longest padded name: 255 bytes + 0x80, rounded up to 16.
const MAX_PADDED_LEN: usize = (MAX_NAME_LEN + 1).div_ceil(PAD_BLOCK) * PAD_BLOCK;
/// Longest encrypted segment text: base32 of 16 + 256 bytes.
pub const MAX_ENCRYPTED_NAME_LEN: usize = ((SIV_LEN + MAX_PADDED_LEN) * 8).div_ceil(5);

/// Checks one plaintext path segment; the error says what is wrong.
pub fn validate_segment(name: &str) -> Result<()> {
    let refuse = |why: String| Err(FormatError::InvalidName(why));
    if name.is_empty() {
        return refuse("a name can't be empty".into());
    }
    if name == "." || name == ".." {
        return refuse(format!("{name:?} is not allowed as a name"));
    }
    if name.contains('/') {
        return refuse("a name can't contain '/'".into());
    }
    if name.contains('\0') {
        return refuse("a name can't contain a NUL character".into());
    }
    if name.len() > MAX_NAME_LEN {
        return refuse(format!(
            "a name is at most {MAX_NAME_LEN} bytes of UTF-8; this one has {}",
            name.len()
        ));
    }
    Ok(())
}

/// Splits a remote path into its checked segments. One leading `/` is optional; `""` and
/// `"/"` are the root (no segments). Empty segments (`a//b`, a trailing `/`), `.`, `..`,
/// NUL and over-long names are refused with the position of the bad segment.
pub fn split_path(path: &str) -> Result<Vec<&str>> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let segments: Vec<&str> = rest.split('/').collect();
    for (i, s) in segments.iter().enumerate() {
        validate_segment(s).map_err(|e| match e {
            FormatError::InvalidName(why) => FormatError::InvalidName(format!(
                "segment {} of the path: {why}{}",
                i + 1,
                if s.is_empty() {
                    " (two '/' in a row, or a '/' at the end)"
                } else {
                    ""
                }
            )),
            other => other,
        })?;
    }
    Ok(segments)
}

fn pad(name: &str) -> Zeroizing<Vec<u8>> {
    let len = (name.len() + 1).div_ceil(PAD_BLOCK) * PAD_BLOCK;
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    out.extend_from_slice(name.as_bytes());
    out.push(0x80);
    out.resize(len, 0);
    out
}

/// Removes `0x80 0x00*`; `None` if the padding is not exactly that (at most 16 bytes).
fn unpad(padded: &[u8]) -> Option<&[u8]> {
    let end = padded.iter().rposition(|&b| b != 0)?;
    (padded[end] == 0x80 && padded.len() - end <= PAD_BLOCK).then(|| &padded[..end])
}

/// The AES-SIV key that encrypts names of one namespace, wiped on drop.
pub struct NameKey(Zeroizing<[u8; NAME_KEY_LEN]>);

impl std::fmt::Debug for NameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameKey(<redacted>)")
    }
}

impl NameKey {
    /// `HKDF(key, "vault/v1/names")`, 64 bytes; `key` is the account key (personal space)
    /// or generation 0 of the group key (group space).
    pub fn derive(account_or_group0_key: &Key32) -> Result<Self> {
        let mut out = Zeroizing::new([0u8; NAME_KEY_LEN]);
        hkdf_sha256(
            account_or_group0_key.dangerously_leak_secret(),
            LABEL_NAMES,
            out.as_mut_slice(),
        )?;
        Ok(Self(out))
    }

    /// The raw 64 key bytes (for golden vectors). The name is a reminder to keep them out
    /// of logs and long-lived copies.
    pub fn dangerously_leak_secret(&self) -> &[u8; NAME_KEY_LEN] {
        &self.0
    }

    fn siv(&self) -> Result<Aes256Siv> {
        Aes256Siv::new_from_slice(self.0.as_slice()).map_err(|_| FormatError::Encrypt)
    }

    /// Encrypts one segment `name` that sits under the directory whose encrypted path is
    /// `parent_encrypted` (`""` at the root).
    pub fn encrypt_segment(&self, parent_encrypted: &str, name: &str) -> Result<String> {
        validate_segment(name)?;
        let padded = pad(name);
        let sealed = self
            .siv()?
            .encrypt([parent_encrypted.as_bytes()], &padded)
            .map_err(|_| FormatError::Encrypt)?;
        Ok(BASE32_NOPAD.encode(&sealed).to_ascii_lowercase())
    }

    /// Decrypts one encrypted segment found under `parent_encrypted`. A name that was
    /// encrypted under another parent or key, or altered, is
    /// [`FormatError::NameDecrypt`]; text that is not a name Vault writes is
    /// [`FormatError::MalformedEncryptedName`].
    pub fn decrypt_segment(&self, parent_encrypted: &str, encrypted: &str) -> Result<String> {
        let malformed = |why: &str| Err(FormatError::MalformedEncryptedName(why.into()));
        if encrypted.len() > MAX_ENCRYPTED_NAME_LEN {
            return malformed("too long");
        }
        if !encrypted
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        {
            return malformed("not lowercase base32 (a-z, 2-7)");
        }
        let Ok(bytes) = BASE32_NOPAD.decode(encrypted.to_ascii_uppercase().as_bytes()) else {
            return malformed("not canonical unpadded base32");
        };
        if bytes.len() < SIV_LEN + PAD_BLOCK || !(bytes.len() - SIV_LEN).is_multiple_of(PAD_BLOCK) {
            return malformed("impossible length");
        }
        let plain = Zeroizing::new(
            self.siv()?
                .decrypt([parent_encrypted.as_bytes()], &bytes)
                .map_err(|_| FormatError::NameDecrypt)?,
        );
        let Some(name) = unpad(&plain) else {
            return malformed("bad padding");
        };
        let Ok(name) = std::str::from_utf8(name) else {
            return malformed("not UTF-8");
        };
        validate_segment(name).map_err(|e| {
            FormatError::MalformedEncryptedName(format!("it decrypts to an invalid name: {e}"))
        })?;
        Ok(name.to_owned())
    }

    /// Encrypts every segment of `path` (see [`split_path`]), each with the encrypted path
    /// above it as associated data. The root gives an empty list.
    pub fn encrypt_path(&self, path: &str) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        let mut parent = String::new();
        for segment in split_path(path)? {
            let enc = self.encrypt_segment(&parent, segment)?;
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(&enc);
            out.push(enc);
        }
        Ok(out)
    }

    /// Decrypts a list of encrypted segments from the root down, returning the plaintext
    /// path as segments joined by `/` (no leading `/`; `""` for the root).
    pub fn decrypt_path<S: AsRef<str>>(&self, encrypted: &[S]) -> Result<String> {
        let mut names: Vec<String> = Vec::with_capacity(encrypted.len());
        let mut parent = String::new();
        for enc in encrypted {
            let enc = enc.as_ref();
            names.push(self.decrypt_segment(&parent, enc)?);
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(enc);
        }
        Ok(names.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nk(b: u8) -> Result<NameKey> {
        NameKey::derive(&Key32::from_bytes([b; 32]))
    }

    #[test]
    fn constants() {
        assert_eq!(MAX_PADDED_LEN, 256);
        assert_eq!(MAX_ENCRYPTED_NAME_LEN, 436);
    }

    #[test]
    fn padding_boundaries() {
        for (len, padded) in [
            (1, 16),
            (15, 16),
            (16, 32),
            (17, 32),
            (31, 32),
            (32, 48),
            (255, 256),
        ] {
            let name = "x".repeat(len);
            let p = pad(&name);
            assert_eq!(p.len(), padded, "len {len}");
            assert_eq!(p[len], 0x80);
            assert_eq!(unpad(&p), Some(name.as_bytes()));
        }
        assert_eq!(unpad(&[0u8; 16]), None);
        assert_eq!(unpad(b"abc\x81\0\0"), None);
        let mut long = vec![b'a', 0x80];
        long.resize(2 + 16, 0);
        assert_eq!(unpad(&long), None, "17 bytes of padding");
    }

    #[test]
    fn encrypted_length_by_name_length() -> Result<()> {
        let k = nk(1)?;
        for (len, bytes) in [(15, 32), (16, 48), (17, 48), (255, 272)] {
            let e = k.encrypt_segment("", &"n".repeat(len))?;
            assert_eq!(e.len(), (bytes * 8usize).div_ceil(5), "len {len}");
            assert_eq!(k.decrypt_segment("", &e)?, "n".repeat(len));
        }
        Ok(())
    }

    #[test]
    fn round_trip_and_form() -> Result<()> {
        let k = nk(2)?;
        for name in [
            "a",
            "report.pdf",
            "Ünïcødé ✓",
            " leading space",
            "a\\b",
            "...",
        ] {
            let e = k.encrypt_segment("", name)?;
            assert!(
                e.bytes()
                    .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
            );
            assert_eq!(k.decrypt_segment("", &e)?, name);
        }
        Ok(())
    }

    #[test]
    fn deterministic_and_parent_bound() -> Result<()> {
        let k = nk(3)?;
        let a = k.encrypt_segment("", "notes.txt")?;
        assert_eq!(a, k.encrypt_segment("", "notes.txt")?);
        let dir = k.encrypt_segment("", "docs")?;
        let b = k.encrypt_segment(&dir, "notes.txt")?;
        assert_ne!(a, b);
        assert_eq!(k.decrypt_segment(&dir, &b)?, "notes.txt");
        // Moved to another directory: refused.
        assert_eq!(
            k.decrypt_segment("", &b).err(),
            Some(FormatError::NameDecrypt)
        );
        assert_eq!(
            k.decrypt_segment(&dir, &a).err(),
            Some(FormatError::NameDecrypt)
        );
        // Another namespace key: different ciphertext, refused.
        let other = nk(4)?;
        assert_ne!(other.encrypt_segment("", "notes.txt")?, a);
        assert_eq!(
            other.decrypt_segment("", &a).err(),
            Some(FormatError::NameDecrypt)
        );
        Ok(())
    }

    #[test]
    fn paths() -> Result<()> {
        let k = nk(5)?;
        assert!(k.encrypt_path("")?.is_empty());
        assert!(k.encrypt_path("/")?.is_empty());
        let p = k.encrypt_path("/a/b/c.txt")?;
        assert_eq!(p.len(), 3);
        assert_eq!(p, k.encrypt_path("a/b/c.txt")?);
        assert_eq!(p[0], k.encrypt_segment("", "a")?);
        assert_eq!(p[1], k.encrypt_segment(&p[0], "b")?);
        assert_eq!(
            p[2],
            k.encrypt_segment(&format!("{}/{}", p[0], p[1]), "c.txt")?
        );
        assert_eq!(k.decrypt_path(&p)?, "a/b/c.txt");
        assert_eq!(k.decrypt_path::<String>(&[])?, "");
        // Same leaf under another parent differs.
        let q = k.encrypt_path("x/b/c.txt")?;
        assert_ne!(p[2], q[2]);
        // Segments swapped between paths fail.
        let mixed = vec![p[0].clone(), q[1].clone()];
        assert_eq!(k.decrypt_path(&mixed).err(), Some(FormatError::NameDecrypt));
        Ok(())
    }

    #[test]
    fn validation_errors() -> Result<()> {
        let k = nk(6)?;
        let cases: [(&str, &str); 6] = [
            ("", "empty"),
            (".", "not allowed"),
            ("..", "not allowed"),
            ("a/b", "'/'"),
            ("a\0b", "NUL"),
            (&"x".repeat(256), "at most 255 bytes"),
        ];
        for (name, says) in cases {
            match k.encrypt_segment("", name) {
                Err(FormatError::InvalidName(msg)) => assert!(msg.contains(says), "{msg}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
        assert!(k.encrypt_segment("", &"x".repeat(255)).is_ok());
        // 255 bytes is the limit in bytes, not characters.
        assert!(k.encrypt_segment("", &"é".repeat(128)).is_err());
        for path in ["a//b", "a/", "/a/../b", "./a", "//", "a/\0"] {
            match k.encrypt_path(path) {
                Err(FormatError::InvalidName(msg)) => assert!(msg.contains("segment"), "{msg}"),
                other => panic!("{path:?}: {other:?}"),
            }
        }
        match split_path("a//b") {
            Err(FormatError::InvalidName(msg)) => {
                assert!(
                    msg.contains("segment 2") && msg.contains("two '/'"),
                    "{msg}"
                )
            }
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    #[test]
    fn malformed_encrypted_names() -> Result<()> {
        let k = nk(7)?;
        let good = k.encrypt_segment("", "file")?;
        let is_malformed = |s: &str| {
            matches!(
                k.decrypt_segment("", s),
                Err(FormatError::MalformedEncryptedName(_))
            )
        };
        assert!(is_malformed(""));
        assert!(is_malformed(&good.to_ascii_uppercase()));
        assert!(is_malformed(&format!("{good}=")));
        assert!(is_malformed(&good[..good.len() - 1]));
        assert!(is_malformed("abc"));
        assert!(is_malformed(&"a".repeat(MAX_ENCRYPTED_NAME_LEN + 1)));
        assert!(is_malformed(&format!("{good}1")));
        // Non-canonical trailing bits: 32 bytes are 52 characters, the last of which
        // carries 1 data bit and 4 spare bits that must be zero; 'b' and 'c' set them.
        assert_eq!(good.len(), 52);
        let mut chars: Vec<u8> = good.clone().into_bytes();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == b'b' { b'c' } else { b'b' };
        let tweaked = String::from_utf8(chars).map_err(|_| FormatError::Encrypt)?;
        assert!(is_malformed(&tweaked));
        // Tampering inside: authentication fails.
        let mut bytes = BASE32_NOPAD
            .decode(good.to_ascii_uppercase().as_bytes())
            .map_err(|_| FormatError::Encrypt)?;
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            let t = BASE32_NOPAD.encode(&bytes).to_ascii_lowercase();
            assert_eq!(
                k.decrypt_segment("", &t).err(),
                Some(FormatError::NameDecrypt)
            );
            bytes[i] ^= 1;
        }
        Ok(())
    }

    #[test]
    fn debug_is_redacted() -> Result<()> {
        assert_eq!(format!("{:?}", nk(8)?), "NameKey(<redacted>)");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn prop_segment_round_trip(name in "[^/\u{0}]{1,60}", parent in "[a-z2-7/]{0,40}") {
            prop_assume!(name != "." && name != "..");
            let k = nk(9).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let e = k.encrypt_segment(&parent, &name).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&e, &k.encrypt_segment(&parent, &name).map_err(|e| TestCaseError::fail(e.to_string()))?);
            prop_assert_eq!(k.decrypt_segment(&parent, &e).map_err(|e| TestCaseError::fail(e.to_string()))?, name);
        }

        #[test]
        fn prop_path_round_trip(segs in proptest::collection::vec("[a-zA-Z0-9 ._-]{1,20}", 0..5)) {
            prop_assume!(segs.iter().all(|s| s != "." && s != ".."));
            let k = nk(10).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let path = segs.join("/");
            let enc = k.encrypt_path(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(enc.len(), segs.len());
            prop_assert_eq!(k.decrypt_path(&enc).map_err(|e| TestCaseError::fail(e.to_string()))?, path);
        }
    }
}
