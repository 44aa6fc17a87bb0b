//! Golden vectors for the wire format: each file in `vectors/wire/` holds the hex of one
//! complete frame. A message must encode to exactly those bytes and decode back to
//! itself, so the protocol cannot drift silently. To add a vector, write the file by
//! hand-checking `VAULT_PRINT_VECTORS=1 cargo test -p vault-core --test wire_vectors`.

use vault_core::crypto::KdfParams;
use vault_core::proto::{
    AccountKeys, ApiError, BatchResult, ByteBuf, CommittedFile, EntryInfo, EntryKind, ErrorCode,
    LoggedIn, NewAccount, NewEnvelope, NsRef, OpenFile, OpenedUpload, PROTOCOL_VERSION,
    PasswordMaterial, PutFile, Request, Response, SecretBytes, VersionInfo, decode_body,
    encode_frame, parse_header,
};

fn check<T>(name: &str, message: T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let frame = encode_frame(&message).expect("encode");
    if std::env::var_os("VAULT_PRINT_VECTORS").is_some() {
        println!("{name}: {}", hex::encode(&frame));
    }
    let path = format!(
        "{}/tests/vectors/wire/{name}.hex",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let golden = hex::decode(text.trim()).unwrap_or_else(|e| panic!("{path}: not hex: {e}"));
    assert_eq!(
        hex::encode(&frame),
        hex::encode(&golden),
        "vector {name}: encoding drifted"
    );
    let len = parse_header(golden[..4].try_into().expect("header")).expect("length");
    assert_eq!(len, golden.len() - 4, "vector {name}: header length");
    let back: T = decode_body(&golden[4..]).expect("decode");
    assert_eq!(back, message, "vector {name}: decoding");
}

fn bytes(n: u8, len: usize) -> ByteBuf {
    ByteBuf::from(vec![n; len])
}

#[test]
fn hello_at_the_current_protocol_version() {
    // A new protocol version must re-pin this vector (and docs/FORMAT.md section 4).
    check(
        "request_hello",
        Request::Hello {
            protocol_version: PROTOCOL_VERSION,
        },
    );
}

#[test]
fn logout_is_a_bare_string() {
    check("request_logout", Request::Logout);
}

#[test]
fn login_carries_the_auth_key_as_bytes() {
    check(
        "request_login",
        Request::Login {
            username: "alice".into(),
            auth_key: SecretBytes::new(vec![0xAA; 32]),
        },
    );
}

#[test]
fn register_finish() {
    let kdf = KdfParams {
        memory_kib: 65536,
        iterations: 3,
        parallelism: 1,
    };
    check(
        "request_register_finish",
        Request::RegisterFinish {
            username: "alice".into(),
            code: "ABCD2345".into(),
            account: NewAccount {
                password: PasswordMaterial {
                    salt: bytes(1, 16),
                    kdf,
                    auth_key: SecretBytes::new(vec![2; 32]),
                    account_key_by_kek: bytes(3, 61),
                },
                account_key_by_recovery: bytes(4, 61),
                public_key: bytes(5, 8),
                private_key_sealed: bytes(6, 8),
            },
        },
    );
}

#[test]
fn throttled_error() {
    check(
        "response_error_throttled",
        Response::Error(ApiError::new(
            ErrorCode::Throttled { retry_after_s: 30 },
            "too many failed logins",
        )),
    );
}

#[test]
fn logged_in() {
    check(
        "response_logged_in",
        Response::LoggedIn(LoggedIn {
            token: Some(SecretBytes::new(vec![7; 32])),
            keys: AccountKeys {
                username: "alice".into(),
                account_key_by_kek: bytes(3, 4),
                public_key: bytes(5, 4),
                private_key_sealed: bytes(6, 4),
            },
            key_tasks: 0,
        }),
    );
    // With key work waiting, the count is one more field; without, the encoding above
    // is what clients before groups expect.
    check(
        "response_logged_in_key_tasks",
        Response::LoggedIn(LoggedIn {
            token: None,
            keys: AccountKeys {
                username: "bob".into(),
                account_key_by_kek: bytes(3, 2),
                public_key: bytes(5, 2),
                private_key_sealed: bytes(6, 2),
            },
            key_tasks: 2,
        }),
    );
}

#[test]
fn group_join() {
    check(
        "request_group_join",
        Request::GroupJoin {
            invite_id: 12,
            auth: SecretBytes::new(vec![9; 4]),
            envelopes: vec![NewEnvelope {
                member: "bob".into(),
                generation: 1,
                envelope: bytes(1, 3),
                signature: bytes(2, 3),
            }],
        },
    );
}

#[test]
fn upload_open_many() {
    check(
        "request_upload_open_many",
        Request::UploadOpenMany {
            ns: NsRef::Personal,
            files: vec![
                OpenFile {
                    path: "abc".into(),
                    sealed_size: 17,
                    if_current: None,
                },
                OpenFile {
                    path: "abc/de".into(),
                    sealed_size: 65536,
                    if_current: None,
                },
            ],
            batch: None,
        },
    );
}

#[test]
fn upload_open_many_under_a_batch_token_and_its_abort() {
    let token = "00112233445566778899aabbccddeeff";
    check(
        "request_upload_open_many_batch",
        Request::UploadOpenMany {
            ns: NsRef::Personal,
            files: vec![OpenFile {
                path: "abc".into(),
                sealed_size: 17,
                if_current: None,
            }],
            batch: Some(token.into()),
        },
    );
    check(
        "request_upload_open_batch",
        Request::UploadOpen {
            ns: NsRef::Personal,
            path: "abc".into(),
            sealed_size: 1_048_832,
            chunk_bytes: 2_097_664,
            batch: Some(token.into()),
            if_current: None,
        },
    );
    check(
        "request_upload_abort_batch",
        Request::UploadAbortBatch {
            batch: token.into(),
        },
    );
}

#[test]
fn uploads_opened_with_one_refused() {
    check(
        "response_uploads_opened",
        Response::UploadsOpened {
            results: vec![
                BatchResult::Ok(OpenedUpload {
                    upload_id: 5,
                    file_id: 9,
                    version: 1,
                    generation: 0,
                    expires_at: 1_700_000_000,
                }),
                BatchResult::Error(ApiError::new(ErrorCode::Conflict, "a folder is there")),
            ],
        },
    );
}

#[test]
fn upload_put_many() {
    check(
        "request_upload_put_many",
        Request::UploadPutMany {
            files: vec![PutFile {
                upload_id: 5,
                sealed: bytes(1, 17),
                wrapped_key: bytes(2, 4),
                sealed_meta: bytes(3, 4),
            }],
        },
    );
}

#[test]
fn uploads_committed() {
    check(
        "response_uploads_committed",
        Response::UploadsCommitted {
            results: vec![
                BatchResult::Ok(CommittedFile {
                    file_id: 9,
                    version: 1,
                    revision: 42,
                }),
                BatchResult::Error(ApiError::not_found("no such upload")),
            ],
        },
    );
}

/// Listed entries are arrays of their fields in order, not maps (protocol version 2).
#[test]
fn listing_entries_are_arrays() {
    check(
        "response_listing",
        Response::Listing {
            entries: vec![
                EntryInfo {
                    id: 7,
                    path: "ab/cd".into(),
                    kind: EntryKind::File,
                    current: Some(VersionInfo {
                        version: 2,
                        sealed_size: 300,
                        wrapped_key: bytes(4, 3),
                        sealed_meta: bytes(5, 2),
                        generation: 1,
                        created_at: 1_700_000_000,
                        chunk_bytes: 5 << 20,
                    }),
                    version_count: 2,
                    revision: 42,
                    updated_at: -1,
                },
                EntryInfo {
                    id: 8,
                    path: "ef".into(),
                    kind: EntryKind::Dir,
                    current: None,
                    version_count: 0,
                    revision: 43,
                    updated_at: 1_700_000_001,
                },
            ],
            next: Some("ef".into()),
        },
    );
}

/// A listing of names is one more field; without it, the encoding is the one servers
/// before listings of names read.
#[test]
fn list_with_and_without_names_only() {
    let list = |names_only| Request::List {
        ns: NsRef::Personal,
        dir: "ab".into(),
        recursive: false,
        after: None,
        before: Some("ab/k".into()),
        names_only,
    };
    check("request_list", list(false));
    check("request_list_names_only", list(true));
}

/// The requests of format 2's chunks, and a commit that names chunks; a commit without
/// them, and a `chunk_put` that names no upload, are encoded as before those fields existed.
#[test]
fn chunk_requests_and_a_commit_that_names_chunks() {
    check(
        "request_chunks_missing",
        Request::ChunksMissing {
            ns: NsRef::Personal,
            ids: vec![ByteBuf::from(vec![0x11; 32]), ByteBuf::from(vec![0x22; 32])],
        },
    );
    check(
        "request_chunk_put",
        Request::ChunkPut {
            ns: NsRef::Group {
                name: "team".into(),
            },
            id: ByteBuf::from(vec![0x33; 32]),
            sealed_size: 131_072,
            upload_id: None,
        },
    );
    check(
        "request_chunk_put_for_upload",
        Request::ChunkPut {
            ns: NsRef::Personal,
            id: ByteBuf::from(vec![0x33; 32]),
            sealed_size: 131_072,
            upload_id: Some(7),
        },
    );
    check(
        "response_chunks_missing",
        Response::ChunksMissing {
            missing: vec![1, 300],
        },
    );
    let commit = |chunks: Vec<ByteBuf>| Request::UploadCommit {
        upload_id: 7,
        wrapped_key: ByteBuf::from(vec![1; 2]),
        sealed_meta: ByteBuf::from(vec![2; 2]),
        chunks,
    };
    check("request_upload_commit", commit(Vec::new()));
    check(
        "request_upload_commit_chunks",
        commit(vec![ByteBuf::from(vec![0x44; 32])]),
    );
}

#[test]
fn watch_space_and_its_frames() {
    check(
        "request_watch_space",
        Request::WatchSpace {
            ns: NsRef::Group {
                name: "team".into(),
            },
        },
    );
    check("response_watching", Response::Watching { revision: 41 });
    check(
        "response_space_changed",
        Response::SpaceChanged { revision: 300 },
    );
}

#[test]
fn uploads_opened_for_the_current_version_only() {
    check(
        "request_upload_open_if_current",
        Request::UploadOpen {
            ns: NsRef::Personal,
            path: "abc".into(),
            sealed_size: 17,
            chunk_bytes: 0,
            batch: None,
            if_current: Some(3),
        },
    );
    check(
        "request_upload_open_many_if_current",
        Request::UploadOpenMany {
            ns: NsRef::Personal,
            files: vec![OpenFile {
                path: "abc".into(),
                sealed_size: 17,
                if_current: Some(0),
            }],
            batch: None,
        },
    );
}
