//! What the fuzz targets share: a reader that cuts an input into the fields of a target's
//! layout, the frame reader of both sides ([`read_frame`]), and the fixed test keys the sealed inputs are opened with. The keys come from
//! the golden vectors in `vault-core/tests/vectors/`, so the seeds made from those vectors
//! open and reach the parsers behind the openers.

use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;
use vault_core::crypto::{Key32, UserKeyPair};
use vault_core::proto::{FrameError, MAX_FRAME_LEN, decode_body, encode_frame, parse_header};

/// Reads one frame from the front of `data` as both sides read a stream: a 4-byte header
/// through `parse_header`, then the body it announces through `decode_body`. A header may
/// be refused only as too large; a message that decodes must encode again, and that
/// encoding must decode to the same message, which is returned.
pub fn read_frame<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let (header, rest) = data.split_first_chunk::<4>()?;
    let len = match parse_header(*header) {
        Ok(len) => len,
        Err(FrameError::TooLarge(n)) => {
            assert!(
                n > MAX_FRAME_LEN,
                "a header of {n} bytes refused as too large"
            );
            return None;
        }
        Err(e) => panic!("a header fails only as too large: {e}"),
    };
    assert!(len <= MAX_FRAME_LEN);
    // Short of the body: the stream ended inside the frame (the server answers
    // `bad_request`, the client reports a protocol error).
    let message: T = decode_body(rest.get(..len)?).ok()?;
    let frame = encode_frame(&message).expect("a decoded message encodes");
    let again: T = decode_body(&frame[4..]).expect("an encoded message decodes");
    assert_eq!(again, message);
    Some(again)
}

/// Reads fixed-size fields from the front of a fuzz input; a field past the end reads as
/// zeros (or empty), so every input has a meaning.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { rest: data }
    }

    /// The next `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        head
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let head = self.bytes(N);
        out[..head.len()].copy_from_slice(head);
        out
    }

    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }

    pub fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }

    pub fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.array())
    }

    /// A length-prefixed (u8) byte string.
    pub fn short(&mut self) -> &'a [u8] {
        let n = self.u8();
        self.bytes(usize::from(n))
    }

    /// A length-prefixed (u16 BE) byte string.
    pub fn long(&mut self) -> &'a [u8] {
        let n = self.u16();
        self.bytes(usize::from(n))
    }

    pub fn rest_is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Everything left.
    pub fn rest(self) -> &'a [u8] {
        self.rest
    }
}

/// One field of a `key = value` vector file.
pub fn vector_field(file: &str, name: &str) -> String {
    file.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no field {name} in the vector file"))
}

/// The value of field `name` of every case of a vector file, in order.
pub fn vector_fields(file: &str, name: &str) -> Vec<String> {
    file.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

pub fn hex_field(file: &str, name: &str) -> Vec<u8> {
    hex(&vector_field(file, name))
}

pub fn hex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

pub fn key32(bytes: &[u8]) -> Key32 {
    Key32::from_slice(bytes).expect("a 32-byte key")
}

pub const RSA_V1: &str = include_str!("../../vault-core/tests/vectors/rsa_v1.txt");
pub const GROUPKEY_V1: &str = include_str!("../../vault-core/tests/vectors/format/groupkey_v1.txt");
pub const CHAT_V1: &str = include_str!("../../vault-core/tests/vectors/format/chat_v1.txt");
pub const INVITE_V1: &str = include_str!("../../vault-core/tests/vectors/format/invite_v1.txt");

/// bob: the TEST-ONLY key pair of `rsa_v1.txt`, the member and recipient of the vectors.
pub fn bob() -> &'static UserKeyPair {
    static PAIR: OnceLock<UserKeyPair> = OnceLock::new();
    PAIR.get_or_init(|| UserKeyPair::from_pkcs8(&hex_field(RSA_V1, "pkcs8")).expect("the test key"))
}

/// alice's public key (SPKI DER): the signer of the first group-key vector and the sender
/// of the first chat vector.
pub fn alice_spki() -> &'static [u8] {
    static SPKI: OnceLock<Vec<u8>> = OnceLock::new();
    SPKI.get_or_init(|| hex_field(GROUPKEY_V1, "signer_spki"))
}

/// bob's public key (SPKI DER).
pub fn bob_spki() -> &'static [u8] {
    static SPKI: OnceLock<Vec<u8>> = OnceLock::new();
    SPKI.get_or_init(|| hex_field(RSA_V1, "spki"))
}
