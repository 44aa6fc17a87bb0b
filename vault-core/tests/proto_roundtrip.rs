//! Property tests of the wire messages: every `Request` and `Response` variant, with
//! arbitrary field values, encodes to a frame that decodes back to the same value.
//!
//! Each enum has one strategy per variant. `every_variant_has_a_strategy` compares the
//! variants those strategies make with the list serde itself derives from the enum, so a
//! variant added without a strategy fails that test by name.

use proptest::prelude::*;
use proptest::strategy::{Union, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use serde::Serialize;
use serde::de::DeserializeOwned;

use vault_core::crypto::KdfParams;
use vault_core::proto::{
    AccountInfo, AccountKeys, ApiError, Attachment, BatchResult, ByteBuf, Change, ChangeCursor,
    ChatMessage, ChatTarget, CommittedFile, ContactInfo, ContactState, Conversation, EntryInfo,
    EntryKind, EnvelopeInfo, ErrorCode, Event, GroupDetails, GroupRole, GroupSummary, InviteInfo,
    KeyTask, LoggedIn, MemberInfo, NewAccount, NewEnvelope, NsRef, OpenFile, OpenedUpload,
    PasswordMaterial, PutFile, Rename, Request, ResetMaterial, Response, Rotation, SealedMessage,
    SecretBytes, TrashItem, Usage, UserKey, VersionInfo, WrappedMessageKey, decode_body,
    encode_frame, parse_header,
};

type Cases<T> = Vec<BoxedStrategy<T>>;

// ---- Building blocks ----

/// Any text, control characters and every plane included.
fn text() -> BoxedStrategy<String> {
    prop::collection::vec(any::<char>(), 0..24)
        .prop_map(String::from_iter)
        .boxed()
}

fn bytes() -> BoxedStrategy<ByteBuf> {
    prop::collection::vec(any::<u8>(), 0..48)
        .prop_map(ByteBuf::from)
        .boxed()
}

fn secret() -> BoxedStrategy<SecretBytes> {
    prop::collection::vec(any::<u8>(), 0..48)
        .prop_map(SecretBytes::new)
        .boxed()
}

fn few<T: std::fmt::Debug + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Vec<T>> {
    prop::collection::vec(s, 0..4).boxed()
}

fn kdf() -> BoxedStrategy<KdfParams> {
    (any::<u32>(), any::<u32>(), any::<u32>())
        .prop_map(|(memory_kib, iterations, parallelism)| KdfParams {
            memory_kib,
            iterations,
            parallelism,
        })
        .boxed()
}

fn ns() -> BoxedStrategy<NsRef> {
    prop_oneof![
        Just(NsRef::Personal),
        text().prop_map(|name| NsRef::Group { name }),
    ]
    .boxed()
}

fn entry_kind() -> BoxedStrategy<EntryKind> {
    prop_oneof![Just(EntryKind::File), Just(EntryKind::Dir)].boxed()
}

fn role() -> BoxedStrategy<GroupRole> {
    prop_oneof![
        Just(GroupRole::Owner),
        Just(GroupRole::Manager),
        Just(GroupRole::Member),
    ]
    .boxed()
}

fn error_code_cases() -> Cases<ErrorCode> {
    vec![
        Just(ErrorCode::InvalidCredentials).boxed(),
        any::<u64>()
            .prop_map(|retry_after_s| ErrorCode::Throttled { retry_after_s })
            .boxed(),
        Just(ErrorCode::NotFound).boxed(),
        Just(ErrorCode::Forbidden).boxed(),
        Just(ErrorCode::QuotaExceeded).boxed(),
        Just(ErrorCode::Conflict).boxed(),
        Just(ErrorCode::BadRequest).boxed(),
        Just(ErrorCode::TooLarge).boxed(),
        Just(ErrorCode::UnsupportedVersion).boxed(),
        Just(ErrorCode::Internal).boxed(),
    ]
}

fn api_error() -> BoxedStrategy<ApiError> {
    (Union::new(error_code_cases()), text())
        .prop_map(|(code, message)| ApiError { code, message })
        .boxed()
}

fn version_info() -> BoxedStrategy<VersionInfo> {
    (
        any::<u64>(),
        any::<u64>(),
        bytes(),
        bytes(),
        any::<u32>(),
        any::<i64>(),
    )
        .prop_map(
            |(version, sealed_size, wrapped_key, sealed_meta, generation, created_at)| {
                VersionInfo {
                    version,
                    sealed_size,
                    wrapped_key,
                    sealed_meta,
                    generation,
                    created_at,
                    chunk_bytes: created_at as u64 / 3,
                }
            },
        )
        .boxed()
}

fn entry_info() -> BoxedStrategy<EntryInfo> {
    (
        any::<i64>(),
        text(),
        entry_kind(),
        prop::option::of(version_info()),
        any::<u64>(),
        any::<u64>(),
        any::<i64>(),
    )
        .prop_map(
            |(id, path, kind, current, version_count, revision, updated_at)| EntryInfo {
                id,
                path,
                kind,
                current,
                version_count,
                revision,
                updated_at,
            },
        )
        .boxed()
}

fn trash_item() -> BoxedStrategy<TrashItem> {
    (
        any::<i64>(),
        text(),
        entry_kind(),
        any::<u64>(),
        any::<u64>(),
        any::<i64>(),
    )
        .prop_map(
            |(trash_id, path, kind, entries, sealed_bytes, trashed_at)| TrashItem {
                trash_id,
                path,
                kind,
                entries,
                sealed_bytes,
                trashed_at,
            },
        )
        .boxed()
}

fn usage() -> BoxedStrategy<Usage> {
    any::<[u64; 8]>()
        .prop_map(
            |[
                used_bytes,
                logical_bytes,
                quota_bytes,
                files,
                dirs,
                versions,
                trash_items,
                revision,
            ]| {
                Usage {
                    used_bytes,
                    logical_bytes,
                    quota_bytes,
                    files,
                    dirs,
                    versions,
                    trash_items,
                    revision,
                }
            },
        )
        .boxed()
}

fn cursor() -> BoxedStrategy<ChangeCursor> {
    (any::<u64>(), any::<i64>())
        .prop_map(|(revision, id)| ChangeCursor { revision, id })
        .boxed()
}

fn batch_result<T: Clone + std::fmt::Debug + 'static>(
    ok: BoxedStrategy<T>,
) -> BoxedStrategy<BatchResult<T>> {
    prop_oneof![
        ok.prop_map(BatchResult::Ok),
        api_error().prop_map(BatchResult::Error),
    ]
    .boxed()
}

fn opened_upload() -> BoxedStrategy<OpenedUpload> {
    (
        any::<i64>(),
        any::<i64>(),
        any::<u64>(),
        any::<u32>(),
        any::<i64>(),
    )
        .prop_map(
            |(upload_id, file_id, version, generation, expires_at)| OpenedUpload {
                upload_id,
                file_id,
                version,
                generation,
                expires_at,
            },
        )
        .boxed()
}

fn committed_file() -> BoxedStrategy<CommittedFile> {
    (any::<i64>(), any::<u64>(), any::<u64>())
        .prop_map(|(file_id, version, revision)| CommittedFile {
            file_id,
            version,
            revision,
        })
        .boxed()
}

fn password_material() -> BoxedStrategy<PasswordMaterial> {
    (bytes(), kdf(), secret(), bytes())
        .prop_map(
            |(salt, kdf, auth_key, account_key_by_kek)| PasswordMaterial {
                salt,
                kdf,
                auth_key,
                account_key_by_kek,
            },
        )
        .boxed()
}

fn new_account() -> BoxedStrategy<NewAccount> {
    (password_material(), bytes(), bytes(), bytes())
        .prop_map(
            |(password, account_key_by_recovery, public_key, private_key_sealed)| NewAccount {
                password,
                account_key_by_recovery,
                public_key,
                private_key_sealed,
            },
        )
        .boxed()
}

fn reset_material_cases() -> Cases<ResetMaterial> {
    vec![
        password_material()
            .prop_map(|password| ResetMaterial::KeepKeys { password })
            .boxed(),
        new_account()
            .prop_map(|account| ResetMaterial::DiscardEncryptedData { account })
            .boxed(),
    ]
}

fn user_key() -> BoxedStrategy<UserKey> {
    (text(), bytes())
        .prop_map(|(username, public_key)| UserKey {
            username,
            public_key,
        })
        .boxed()
}

fn new_envelope() -> BoxedStrategy<NewEnvelope> {
    (text(), any::<u32>(), bytes(), bytes())
        .prop_map(|(member, generation, envelope, signature)| NewEnvelope {
            member,
            generation,
            envelope,
            signature,
        })
        .boxed()
}

fn rotation() -> BoxedStrategy<Rotation> {
    (any::<u32>(), few(new_envelope()))
        .prop_map(|(generation, envelopes)| Rotation {
            generation,
            envelopes,
        })
        .boxed()
}

fn group_summary() -> BoxedStrategy<GroupSummary> {
    (
        any::<i64>(),
        text(),
        role(),
        any::<u64>(),
        any::<Option<u32>>(),
        any::<bool>(),
    )
        .prop_map(
            |(id, name, role, members, generation, has_key)| GroupSummary {
                id,
                name,
                role,
                members,
                generation,
                has_key,
            },
        )
        .boxed()
}

fn key_task_cases() -> Cases<KeyTask> {
    vec![
        (any::<i64>(), text(), few(user_key()))
            .prop_map(|(group_id, group, members)| KeyTask::FirstKey {
                group_id,
                group,
                members,
            })
            .boxed(),
        (any::<i64>(), text(), any::<u32>(), few(user_key()))
            .prop_map(
                |(group_id, group, next_generation, members)| KeyTask::Rotate {
                    group_id,
                    group,
                    next_generation,
                    members,
                },
            )
            .boxed(),
        (any::<i64>(), text(), user_key(), few(any::<u32>()))
            .prop_map(|(group_id, group, member, generations)| KeyTask::Wrap {
                group_id,
                group,
                member,
                generations,
            })
            .boxed(),
    ]
}

fn chat_target() -> BoxedStrategy<ChatTarget> {
    prop_oneof![
        text().prop_map(|username| ChatTarget::User { username }),
        text().prop_map(|name| ChatTarget::Group { name }),
    ]
    .boxed()
}

fn contact_state() -> BoxedStrategy<ContactState> {
    prop_oneof![
        Just(ContactState::Contact),
        Just(ContactState::RequestSent),
        Just(ContactState::RequestReceived),
    ]
    .boxed()
}

fn sealed_message() -> BoxedStrategy<SealedMessage> {
    (
        (
            text(),
            chat_target(),
            any::<Option<i64>>(),
            any::<Option<u32>>(),
        ),
        (any::<i64>(), bytes(), few((text(), bytes())), bytes()),
        prop::option::of((text(), any::<u64>())),
    )
        .prop_map(
            |(
                (sender, target, group_id, generation),
                (sent_at_ms, ciphertext, keys, signature),
                attachment,
            )| SealedMessage {
                sender,
                target,
                group_id,
                generation,
                sent_at_ms,
                ciphertext,
                keys: keys
                    .into_iter()
                    .map(|(member, wrapped)| WrappedMessageKey { member, wrapped })
                    .collect(),
                signature,
                attachment: attachment.map(|(path, version)| Attachment { path, version }),
            },
        )
        .boxed()
}

fn chat_message() -> BoxedStrategy<ChatMessage> {
    (any::<i64>(), any::<i64>(), sealed_message(), bytes())
        .prop_map(|(id, received_at_ms, message, sender_key)| ChatMessage {
            id,
            received_at_ms,
            message,
            sender_key,
        })
        .boxed()
}

fn event_cases() -> Cases<Event> {
    vec![
        chat_message().prop_map(Event::Message).boxed(),
        text()
            .prop_map(|from| Event::ContactRequest { from })
            .boxed(),
        (text(), prop::option::of(contact_state()))
            .prop_map(|(username, state)| Event::ContactChanged { username, state })
            .boxed(),
        (text(), any::<bool>(), any::<Option<i64>>())
            .prop_map(|(username, online, last_seen)| Event::Presence {
                username,
                online,
                last_seen,
            })
            .boxed(),
    ]
}

// ---- Requests: one strategy per variant ----

fn request_cases() -> Cases<Request> {
    use Request as R;
    vec![
        any::<u32>()
            .prop_map(|protocol_version| R::Hello { protocol_version })
            .boxed(),
        text().prop_map(|username| R::Prelogin { username }).boxed(),
        (text(), text(), proptest::option::of(text()))
            .prop_map(|(username, email, invite)| R::RegisterStart {
                username,
                email,
                invite,
            })
            .boxed(),
        (text(), text(), new_account())
            .prop_map(|(username, code, account)| R::RegisterFinish {
                username,
                code,
                account,
            })
            .boxed(),
        (text(), secret())
            .prop_map(|(username, auth_key)| R::Login { username, auth_key })
            .boxed(),
        secret().prop_map(|token| R::Resume { token }).boxed(),
        Just(R::Logout).boxed(),
        Just(R::Whoami).boxed(),
        (secret(), password_material())
            .prop_map(|(old_auth_key, new)| R::ChangePassword { old_auth_key, new })
            .boxed(),
        text()
            .prop_map(|username| R::ResetStart { username })
            .boxed(),
        (text(), text())
            .prop_map(|(username, code)| R::ResetRecovery { username, code })
            .boxed(),
        (text(), text(), Union::new(reset_material_cases()))
            .prop_map(|(username, code, reset)| R::ResetFinish {
                username,
                code,
                reset,
            })
            .boxed(),
        (
            ns(),
            text(),
            any::<bool>(),
            prop::option::of(text()),
            prop::option::of(text()),
            any::<bool>(),
        )
            .prop_map(|(ns, dir, recursive, after, before, names_only)| R::List {
                ns,
                dir,
                recursive,
                after,
                before,
                names_only,
            })
            .boxed(),
        (ns(), text())
            .prop_map(|(ns, path)| R::Stat { ns, path })
            .boxed(),
        (ns(), text())
            .prop_map(|(ns, path)| R::Mkdir { ns, path })
            .boxed(),
        (
            ns(),
            text(),
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(text()),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(
                |(ns, path, sealed_size, chunk_bytes, batch, if_current)| R::UploadOpen {
                    ns,
                    path,
                    sealed_size,
                    chunk_bytes,
                    batch,
                    if_current,
                },
            )
            .boxed(),
        any::<i64>()
            .prop_map(|upload_id| R::UploadStatus { upload_id })
            .boxed(),
        (any::<i64>(), any::<u64>())
            .prop_map(|(upload_id, offset)| R::UploadData { upload_id, offset })
            .boxed(),
        (any::<i64>(), bytes(), bytes(), few(bytes()))
            .prop_map(
                |(upload_id, wrapped_key, sealed_meta, chunks)| R::UploadCommit {
                    upload_id,
                    wrapped_key,
                    sealed_meta,
                    chunks,
                },
            )
            .boxed(),
        (ns(), few(bytes()))
            .prop_map(|(ns, ids)| R::ChunksMissing { ns, ids })
            .boxed(),
        (
            ns(),
            bytes(),
            any::<u64>(),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(|(ns, id, sealed_size, upload_id)| R::ChunkPut {
                ns,
                id,
                sealed_size,
                upload_id,
            })
            .boxed(),
        (ns(), bytes())
            .prop_map(|(ns, id)| R::ChunkGet { ns, id })
            .boxed(),
        any::<i64>()
            .prop_map(|upload_id| R::UploadAbort { upload_id })
            .boxed(),
        (
            ns(),
            few((text(), any::<u64>(), proptest::option::of(any::<u64>()))),
            proptest::option::of(text()),
        )
            .prop_map(|(ns, files, batch)| R::UploadOpenMany {
                ns,
                files: files
                    .into_iter()
                    .map(|(path, sealed_size, if_current)| OpenFile {
                        path,
                        sealed_size,
                        if_current,
                    })
                    .collect(),
                batch,
            })
            .boxed(),
        text()
            .prop_map(|batch| R::UploadAbortBatch { batch })
            .boxed(),
        few((any::<i64>(), bytes(), bytes(), bytes()))
            .prop_map(|files| R::UploadPutMany {
                files: files
                    .into_iter()
                    .map(|(upload_id, sealed, wrapped_key, sealed_meta)| PutFile {
                        upload_id,
                        sealed,
                        wrapped_key,
                        sealed_meta,
                    })
                    .collect(),
            })
            .boxed(),
        (ns(), text(), any::<Option<u64>>(), any::<u64>())
            .prop_map(|(ns, path, version, from_chunk)| R::Download {
                ns,
                path,
                version,
                from_chunk,
            })
            .boxed(),
        (ns(), text())
            .prop_map(|(ns, path)| R::Versions { ns, path })
            .boxed(),
        (ns(), text(), any::<u64>())
            .prop_map(|(ns, path, version)| R::Restore { ns, path, version })
            .boxed(),
        (ns(), text(), any::<bool>())
            .prop_map(|(ns, path, recursive)| R::Remove {
                ns,
                path,
                recursive,
            })
            .boxed(),
        (ns(), few((text(), text())))
            .prop_map(|(ns, renames)| R::Move {
                ns,
                renames: renames
                    .into_iter()
                    .map(|(from, to)| Rename { from, to })
                    .collect(),
            })
            .boxed(),
        ns().prop_map(|ns| R::TrashList { ns }).boxed(),
        (ns(), any::<i64>())
            .prop_map(|(ns, trash_id)| R::TrashRestore { ns, trash_id })
            .boxed(),
        ns().prop_map(|ns| R::TrashEmpty { ns }).boxed(),
        ns().prop_map(|ns| R::Usage { ns }).boxed(),
        (ns(), any::<u64>(), prop::option::of(cursor()))
            .prop_map(|(ns, since, after)| R::Changes { ns, since, after })
            .boxed(),
        text().prop_map(|username| R::UserKey { username }).boxed(),
        text().prop_map(|name| R::GroupCreate { name }).boxed(),
        Just(R::GroupList).boxed(),
        text().prop_map(|group| R::GroupInfo { group }).boxed(),
        text().prop_map(|group| R::GroupMembers { group }).boxed(),
        text().prop_map(|group| R::GroupKeys { group }).boxed(),
        (text(), secret(), bytes(), any::<u32>(), any::<u64>())
            .prop_map(
                |(group, auth, sealed_keys, uses, expires_s)| R::GroupInviteCreate {
                    group,
                    auth,
                    sealed_keys,
                    uses,
                    expires_s,
                },
            )
            .boxed(),
        (any::<i64>(), secret())
            .prop_map(|(invite_id, auth)| R::GroupInviteOpen { invite_id, auth })
            .boxed(),
        (any::<i64>(), secret(), few(new_envelope()))
            .prop_map(|(invite_id, auth, envelopes)| R::GroupJoin {
                invite_id,
                auth,
                envelopes,
            })
            .boxed(),
        (text(), text(), few(new_envelope()))
            .prop_map(|(group, username, envelopes)| R::GroupAdd {
                group,
                username,
                envelopes,
            })
            .boxed(),
        (text(), text(), prop::option::of(rotation()))
            .prop_map(|(group, username, rotation)| R::GroupRemove {
                group,
                username,
                rotation,
            })
            .boxed(),
        (text(), prop::option::of(rotation()))
            .prop_map(|(group, rotation)| R::GroupLeave { group, rotation })
            .boxed(),
        (text(), text(), role())
            .prop_map(|(group, username, role)| R::GroupSetRole {
                group,
                username,
                role,
            })
            .boxed(),
        (text(), text())
            .prop_map(|(group, new_name)| R::GroupRename { group, new_name })
            .boxed(),
        text().prop_map(|group| R::GroupDelete { group }).boxed(),
        (text(), rotation())
            .prop_map(|(group, rotation)| R::GroupRotate { group, rotation })
            .boxed(),
        (text(), few(new_envelope()))
            .prop_map(|(group, envelopes)| R::GroupPutEnvelopes { group, envelopes })
            .boxed(),
        Just(R::KeyTasks).boxed(),
        prop::option::of(text())
            .prop_map(|display_name| R::ProfileSet { display_name })
            .boxed(),
        text()
            .prop_map(|username| R::ContactAdd { username })
            .boxed(),
        text()
            .prop_map(|username| R::ContactAccept { username })
            .boxed(),
        text()
            .prop_map(|username| R::ContactReject { username })
            .boxed(),
        text()
            .prop_map(|username| R::ContactRemove { username })
            .boxed(),
        Just(R::ContactList).boxed(),
        text()
            .prop_map(|username| R::ContactGet { username })
            .boxed(),
        sealed_message()
            .prop_map(|message| R::ChatSend { message })
            .boxed(),
        (chat_target(), any::<u32>(), any::<Option<i64>>())
            .prop_map(|(target, limit, before)| R::ChatHistory {
                target,
                limit,
                before,
            })
            .boxed(),
        Just(R::ChatInbox).boxed(),
        any::<i64>().prop_map(|id| R::ChatGet { id }).boxed(),
        (any::<i64>(), any::<u64>())
            .prop_map(|(message_id, from_chunk)| R::ChatFileDownload {
                message_id,
                from_chunk,
            })
            .boxed(),
        Just(R::Subscribe).boxed(),
        ns().prop_map(|ns| R::WatchSpace { ns }).boxed(),
    ]
}

// ---- Responses: one strategy per variant ----

fn response_cases() -> Cases<Response> {
    use Response as R;
    vec![
        (any::<u32>(), text())
            .prop_map(|(protocol_version, server_version)| R::Hello {
                protocol_version,
                server_version,
            })
            .boxed(),
        Just(R::Ok).boxed(),
        (bytes(), kdf())
            .prop_map(|(salt, kdf)| R::Prelogin { salt, kdf })
            .boxed(),
        (kdf(), any::<u64>())
            .prop_map(|(kdf, code_ttl_s)| R::RegisterStarted { kdf, code_ttl_s })
            .boxed(),
        (
            prop::option::of(secret()),
            (text(), bytes(), bytes(), bytes()),
            any::<u32>(),
        )
            .prop_map(
                |(
                    token,
                    (username, account_key_by_kek, public_key, private_key_sealed),
                    key_tasks,
                )| {
                    R::LoggedIn(LoggedIn {
                        token,
                        keys: AccountKeys {
                            username,
                            account_key_by_kek,
                            public_key,
                            private_key_sealed,
                        },
                        key_tasks,
                    })
                },
            )
            .boxed(),
        (text(), text(), any::<[u64; 3]>(), any::<i64>())
            .prop_map(
                |(username, email, [quota_bytes, used_bytes, sessions], created_at)| {
                    R::Whoami(AccountInfo {
                        username,
                        email,
                        quota_bytes,
                        used_bytes,
                        created_at,
                        sessions,
                    })
                },
            )
            .boxed(),
        bytes()
            .prop_map(|account_key_by_recovery| R::ResetRecovery {
                account_key_by_recovery,
            })
            .boxed(),
        any::<u64>()
            .prop_map(|code_ttl_s| R::ResetStarted { code_ttl_s })
            .boxed(),
        (few(entry_info()), prop::option::of(text()))
            .prop_map(|(entries, next)| R::Listing { entries, next })
            .boxed(),
        entry_info().prop_map(R::Entry).boxed(),
        opened_upload()
            .prop_map(|o| R::UploadOpened {
                upload_id: o.upload_id,
                file_id: o.file_id,
                version: o.version,
                generation: o.generation,
                expires_at: o.expires_at,
            })
            .boxed(),
        (any::<u64>(), any::<u64>())
            .prop_map(|(received, sealed_size)| R::UploadStatus {
                received,
                sealed_size,
            })
            .boxed(),
        few(batch_result(opened_upload()))
            .prop_map(|results| R::UploadsOpened { results })
            .boxed(),
        few(batch_result(committed_file()))
            .prop_map(|results| R::UploadsCommitted { results })
            .boxed(),
        few(any::<u32>())
            .prop_map(|missing| R::ChunksMissing { missing })
            .boxed(),
        any::<u64>()
            .prop_map(|sealed_size| R::Chunk { sealed_size })
            .boxed(),
        (any::<i64>(), version_info(), any::<u64>())
            .prop_map(|(file_id, version, offset)| R::Download {
                file_id,
                version,
                offset,
            })
            .boxed(),
        (any::<i64>(), any::<u64>(), few(version_info()))
            .prop_map(|(file_id, current, versions)| R::Versions {
                file_id,
                current,
                versions,
            })
            .boxed(),
        (any::<i64>(), any::<u64>())
            .prop_map(|(trash_id, entries)| R::Trashed { trash_id, entries })
            .boxed(),
        few(trash_item())
            .prop_map(|items| R::Trash { items })
            .boxed(),
        (any::<u64>(), any::<u64>())
            .prop_map(|(items, sealed_bytes)| R::TrashEmptied {
                items,
                sealed_bytes,
            })
            .boxed(),
        usage().prop_map(R::Usage).boxed(),
        (
            any::<u64>(),
            few((entry_info(), any::<bool>())),
            prop::option::of(cursor()),
            any::<bool>(),
        )
            .prop_map(|(revision, changes, next, resync)| R::Changes {
                revision,
                changes: changes
                    .into_iter()
                    .map(|(entry, deleted)| Change { entry, deleted })
                    .collect(),
                next,
                resync,
            })
            .boxed(),
        user_key().prop_map(R::UserKey).boxed(),
        (any::<i64>(), text())
            .prop_map(|(group_id, name)| R::GroupCreated { group_id, name })
            .boxed(),
        few(group_summary())
            .prop_map(|groups| R::Groups { groups })
            .boxed(),
        (
            group_summary(),
            any::<i64>(),
            any::<u64>(),
            any::<bool>(),
            any::<[u64; 2]>(),
        )
            .prop_map(
                |(summary, created_at, waiting, rotation_pending, [used_bytes, quota_bytes])| {
                    R::GroupInfo(GroupDetails {
                        summary,
                        created_at,
                        waiting,
                        rotation_pending,
                        used_bytes,
                        quota_bytes,
                    })
                },
            )
            .boxed(),
        (
            any::<i64>(),
            any::<Option<u32>>(),
            few((text(), role(), any::<bool>(), any::<i64>(), bytes())),
        )
            .prop_map(|(group_id, generation, members)| R::GroupMembers {
                group_id,
                generation,
                members: members
                    .into_iter()
                    .map(
                        |(username, role, has_key, joined_at, public_key)| MemberInfo {
                            username,
                            role,
                            has_key,
                            joined_at,
                            public_key,
                        },
                    )
                    .collect(),
            })
            .boxed(),
        (
            any::<i64>(),
            any::<Option<u32>>(),
            few((any::<u32>(), bytes(), bytes(), text(), bytes())),
        )
            .prop_map(|(group_id, generation, envelopes)| R::GroupKeys {
                group_id,
                generation,
                envelopes: envelopes
                    .into_iter()
                    .map(
                        |(generation, envelope, signature, signer, signer_key)| EnvelopeInfo {
                            generation,
                            envelope,
                            signature,
                            signer,
                            signer_key,
                        },
                    )
                    .collect(),
            })
            .boxed(),
        (any::<i64>(), any::<i64>())
            .prop_map(|(invite_id, expires_at)| R::InviteCreated {
                invite_id,
                expires_at,
            })
            .boxed(),
        (any::<i64>(), text(), bytes())
            .prop_map(|(group_id, group, sealed_keys)| {
                R::InviteOpened(InviteInfo {
                    group_id,
                    group,
                    sealed_keys,
                })
            })
            .boxed(),
        (any::<i64>(), text())
            .prop_map(|(group_id, name)| R::GroupJoined { group_id, name })
            .boxed(),
        few(Union::new(key_task_cases()))
            .prop_map(|tasks| R::KeyTasks { tasks })
            .boxed(),
        few((
            text(),
            prop::option::of(text()),
            contact_state(),
            any::<bool>(),
            any::<Option<i64>>(),
            bytes(),
        ))
        .prop_map(|contacts| R::Contacts {
            contacts: contacts
                .into_iter()
                .map(
                    |(username, display_name, state, online, last_seen, public_key)| ContactInfo {
                        username,
                        display_name,
                        state,
                        online,
                        last_seen,
                        public_key,
                    },
                )
                .collect(),
        })
        .boxed(),
        (any::<i64>(), any::<i64>())
            .prop_map(|(id, received_at_ms)| R::ChatSent { id, received_at_ms })
            .boxed(),
        few(chat_message())
            .prop_map(|messages| R::ChatMessages { messages })
            .boxed(),
        few((chat_target(), any::<i64>(), any::<i64>(), any::<u64>()))
            .prop_map(|conversations| R::Inbox {
                conversations: conversations
                    .into_iter()
                    .map(
                        |(target, last_id, last_received_at_ms, unread)| Conversation {
                            target,
                            last_id,
                            last_received_at_ms,
                            unread,
                        },
                    )
                    .collect(),
            })
            .boxed(),
        Just(R::Subscribed).boxed(),
        any::<u64>()
            .prop_map(|revision| R::Watching { revision })
            .boxed(),
        any::<u64>()
            .prop_map(|revision| R::SpaceChanged { revision })
            .boxed(),
        Union::new(event_cases()).prop_map(R::Event).boxed(),
        api_error().prop_map(R::Error).boxed(),
    ]
}

// ---- The checks ----

/// The variant names serde derived for `T`, as they appear on the wire: read from what
/// `T`'s `Deserialize` asks of a deserializer, so nothing here lists them by hand.
fn wire_variants<T: DeserializeOwned>() -> Vec<&'static str> {
    use serde::de::{Error as _, Visitor};

    struct Names<'a>(&'a mut Vec<&'static str>);

    impl<'de> serde::Deserializer<'de> for Names<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not an enum"))
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.extend_from_slice(variants);
            Err(Self::Error::custom("names taken"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
            identifier ignored_any
        }
    }

    let mut names = Vec::new();
    let _ = T::deserialize(Names(&mut names));
    assert!(
        !names.is_empty(),
        "{} is not an enum",
        std::any::type_name::<T>()
    );
    names.sort_unstable();
    names
}

/// The variant a value encodes as: a unit variant is a text string, any other a map with
/// one entry whose key names the variant.
fn wire_variant<T: Serialize>(value: &T) -> String {
    match ciborium::Value::serialized(value).expect("serialize") {
        ciborium::Value::Text(name) => name,
        ciborium::Value::Map(entries) if entries.len() == 1 => match &entries[0].0 {
            ciborium::Value::Text(name) => name.clone(),
            other => panic!("a variant key that is not text: {other:?}"),
        },
        other => panic!("not an externally tagged variant: {other:?}"),
    }
}

/// One value from each strategy: together they must make every variant of `T`, each once.
fn assert_covers_every_variant<T: Serialize + DeserializeOwned + std::fmt::Debug>(cases: Cases<T>) {
    let mut runner = TestRunner::deterministic();
    let mut made: Vec<String> = cases
        .iter()
        .map(|s| wire_variant(&s.new_tree(&mut runner).expect("value").current()))
        .collect();
    made.sort_unstable();
    let expected = wire_variants::<T>();
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|v| !made.iter().any(|m| m == v))
        .collect();
    assert!(
        missing.is_empty(),
        "variants of {} without a strategy: {missing:?}",
        std::any::type_name::<T>()
    );
    assert_eq!(
        made,
        expected,
        "the strategies of {} must make each variant once",
        std::any::type_name::<T>()
    );
}

/// Encodes `value` as a frame, reads its header and decodes the body: the same value.
fn assert_round_trips<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let frame = encode_frame(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let header: [u8; 4] = frame[..4].try_into().expect("a frame has a header");
    let len = parse_header(header).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(len, frame.len() - 4);
    let back: T = decode_body(&frame[4..]).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

/// Runs the round trip on 64 values of every variant's strategy.
fn each_variant_round_trips<T>(cases: Cases<T>)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    for (i, strategy) in cases.into_iter().enumerate() {
        let mut runner = TestRunner::new(Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, |value| assert_round_trips(&value)) {
            panic!(
                "{} strategy {i} does not round-trip: {e}",
                std::any::type_name::<T>()
            );
        }
    }
}

#[test]
fn every_variant_has_a_strategy() {
    assert_covers_every_variant(request_cases());
    assert_covers_every_variant(response_cases());
    assert_covers_every_variant(error_code_cases());
    assert_covers_every_variant(key_task_cases());
    assert_covers_every_variant(event_cases());
    assert_covers_every_variant(reset_material_cases());
}

#[test]
fn every_request_variant_round_trips() {
    each_variant_round_trips(request_cases());
}

#[test]
fn every_response_variant_round_trips() {
    each_variant_round_trips(response_cases());
}
