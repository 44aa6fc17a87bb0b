//! SHA-256 and the `SHA256:<hex>` fingerprints shown for public keys and TLS certificates.

use aws_lc_rs::digest;

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// `"SHA256:"` followed by the lowercase hex of SHA-256(`bytes`): 71 characters.
pub fn sha256_fingerprint(bytes: &[u8]) -> String {
    format!("SHA256:{}", hex::encode(sha256(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // FIPS 180-2 example: SHA-256("abc").
        assert_eq!(
            sha256_fingerprint(b"abc"),
            "SHA256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_fingerprint(b"").len(), 71);
    }
}
