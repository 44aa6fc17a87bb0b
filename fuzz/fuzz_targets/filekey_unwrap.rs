//! Wrapped file keys (`format::filekey`), as the client unwraps the key of every version a
//! server lists, under the wrapping keys of `filekey_v1.txt`.
//!
//! Input: `ns (bit 0: group) ‖ user (u8 length + bytes) or group_id (i64 BE) ‖ generation
//! (u32 BE) ‖ file_id (i64 BE) ‖ version (u64 BE) ‖ wrapped key`. The associated data is
//! refused exactly for the usernames that could make two slots share it, and otherwise
//! reads back as the fields it was made of (no two slots share associated data). A key that
//! unwraps wraps back to the same bytes with its nonce.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vault_core::crypto::Key32;
use vault_core::format::filekey::{
    FileKeyAd, Namespace, unwrap_file_key, wrap_file_key_with_nonce, wrapping_key_for,
};
use vault_fuzz::{Reader, key32};

fn wrapping_keys() -> &'static [Key32] {
    static KEYS: OnceLock<Vec<Key32>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let counting: Vec<u8> = (0..32).collect();
        [key32(&[0x11; 32]), key32(&[0x22; 32]), key32(&counting)]
            .iter()
            .map(|parent| wrapping_key_for(parent).expect("wrapping key"))
            .collect()
    })
}

/// Reads the associated data back into its fields.
fn read_back(ad: &str) -> FileKeyAd {
    let rest = ad.strip_prefix("vault/v1/ad/file-key;ns=").expect("prefix");
    let fields: Vec<&str> = rest.split(';').collect();
    let value = |i: usize, name: &str| -> &str {
        fields[i]
            .strip_prefix(name)
            .and_then(|f| f.strip_prefix('='))
            .expect("field")
    };
    let namespace = if let Some(user) = fields[0].strip_prefix("user:") {
        assert_eq!(fields.len(), 3, "{ad}");
        Namespace::Personal {
            user: user.to_owned(),
        }
    } else {
        assert_eq!(fields.len(), 4, "{ad}");
        Namespace::Group {
            group_id: fields[0]
                .strip_prefix("group:")
                .expect("group")
                .parse()
                .expect("id"),
            generation: value(3, "gen").parse().expect("gen"),
        }
    };
    FileKeyAd {
        namespace,
        file_id: value(1, "file").parse().expect("file id"),
        version: value(2, "version").parse().expect("version"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let namespace = if r.u8() & 1 == 0 {
        let Ok(user) = std::str::from_utf8(r.short()) else {
            return;
        };
        Namespace::Personal {
            user: user.to_owned(),
        }
    } else {
        Namespace::Group {
            group_id: r.i64(),
            generation: r.u32(),
        }
    };
    let ad = FileKeyAd {
        namespace,
        file_id: r.i64(),
        version: r.u64(),
    };
    let wrapped = r.rest();
    let refusable = match &ad.namespace {
        Namespace::Personal { user } => {
            user.is_empty() || user.chars().any(|c| c == ';' || c == '=' || c.is_control())
        }
        Namespace::Group { .. } => false,
    };
    match ad.to_bytes() {
        Ok(bytes) => {
            assert!(!refusable, "associated data made for an ambiguous username");
            let text = String::from_utf8(bytes).expect("associated data is text");
            assert_eq!(
                read_back(&text),
                ad,
                "associated data that reads back as another slot"
            );
        }
        Err(_) => {
            assert!(refusable, "associated data refused for a valid slot");
            return;
        }
    }
    for key in wrapping_keys() {
        if let Ok(file_key) = unwrap_file_key(key, &ad, wrapped) {
            let nonce: [u8; 12] = wrapped[1..13].try_into().expect("nonce");
            let again = wrap_file_key_with_nonce(key, nonce, &ad, &file_key).expect("wraps");
            assert_eq!(again, wrapped);
        }
    }
});
