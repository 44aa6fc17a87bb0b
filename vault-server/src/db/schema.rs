//! Diesel table definitions, written to match `migrations/{sqlite,postgres}` exactly.
//! Only types that both backends share through `MultiConnection` appear here.

diesel::table! {
    settings (name) {
        name -> Text,
        value -> Binary,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        email -> Text,
        auth_hash -> Text,
        kdf_salt -> Binary,
        kdf_memory_kib -> BigInt,
        kdf_iterations -> BigInt,
        kdf_parallelism -> BigInt,
        account_key_by_kek -> Binary,
        account_key_by_recovery -> Binary,
        public_key -> Binary,
        private_key_sealed -> Binary,
        quota_bytes -> BigInt,
        locked -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    codes (id) {
        id -> BigInt,
        purpose -> Text,
        username -> Text,
        email -> Text,
        code_salt -> Binary,
        code_hash -> Binary,
        created_at -> BigInt,
        expires_at -> BigInt,
        failed_attempts -> BigInt,
        used -> Bool,
    }
}

diesel::table! {
    sessions (id) {
        id -> BigInt,
        user_id -> BigInt,
        token_hash -> Binary,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        client_ip -> Text,
        ended_at -> Nullable<BigInt>,
        end_reason -> Nullable<Text>,
    }
}

diesel::table! {
    invitations (id) {
        id -> BigInt,
        email -> Text,
        username -> Nullable<Text>,
        code_salt -> Binary,
        code_hash -> Binary,
        created_at -> BigInt,
        expires_at -> BigInt,
        failed_attempts -> BigInt,
        used_by -> Nullable<Text>,
        used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    login_attempts (id) {
        id -> BigInt,
        subject -> Text,
        started_at -> BigInt,
    }
}

diesel::table! {
    login_failures (subject) {
        subject -> Text,
        failures -> BigInt,
        window_start -> BigInt,
        last_failure_at -> BigInt,
        locked_until -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> BigInt,
        actor -> Text,
        event -> Text,
        username -> Nullable<Text>,
        client_ip -> Nullable<Text>,
        detail -> Text,
    }
}

diesel::table! {
    namespaces (id) {
        id -> BigInt,
        kind -> Text,
        owner_user_id -> Nullable<BigInt>,
        group_id -> Nullable<BigInt>,
        revision -> BigInt,
        purged_revision -> BigInt,
        used_bytes -> BigInt,
        quota_bytes -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    entries (id) {
        id -> BigInt,
        namespace_id -> BigInt,
        path -> Text,
        parent -> Text,
        kind -> Text,
        current_version -> Nullable<BigInt>,
        next_version -> BigInt,
        revision -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        trash_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    trash (id) {
        id -> BigInt,
        namespace_id -> BigInt,
        root_entry_id -> BigInt,
        path -> Text,
        kind -> Text,
        entries -> BigInt,
        sealed_bytes -> BigInt,
        trashed_at -> BigInt,
    }
}

diesel::table! {
    versions (id) {
        id -> BigInt,
        entry_id -> BigInt,
        version -> BigInt,
        blob_id -> Text,
        sealed_size -> BigInt,
        wrapped_key -> Binary,
        sealed_meta -> Binary,
        generation -> BigInt,
        created_at -> BigInt,
        blob_blake3 -> Nullable<Binary>,
        chunk_bytes -> BigInt,
    }
}

diesel::table! {
    uploads (id) {
        id -> BigInt,
        user_id -> BigInt,
        namespace_id -> BigInt,
        entry_id -> BigInt,
        version -> BigInt,
        generation -> BigInt,
        sealed_size -> BigInt,
        blob_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        batch_token -> Nullable<Text>,
        chunk_bytes -> BigInt,
        if_current -> Nullable<BigInt>,
    }
}

diesel::table! {
    abandoned_batches (user_id, token) {
        user_id -> BigInt,
        token -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    deleted_blobs (blob_id) {
        blob_id -> Text,
        deleted_at -> BigInt,
    }
}

diesel::table! {
    groups (id) {
        id -> BigInt,
        name -> Text,
        key_generation -> Nullable<BigInt>,
        needs_rotation -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    group_members (group_id, user_id) {
        group_id -> BigInt,
        user_id -> BigInt,
        role -> Text,
        joined_at -> BigInt,
    }
}

diesel::table! {
    group_envelopes (group_id, generation, user_id) {
        group_id -> BigInt,
        generation -> BigInt,
        user_id -> BigInt,
        envelope -> Binary,
        signature -> Binary,
        signer -> Text,
        signer_key -> Binary,
        created_at -> BigInt,
    }
}

diesel::table! {
    group_invites (id) {
        id -> BigInt,
        group_id -> BigInt,
        created_by -> BigInt,
        auth_hash -> Binary,
        sealed_keys -> Binary,
        uses_left -> BigInt,
        expires_at -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    profiles (user_id) {
        user_id -> BigInt,
        display_name -> Nullable<Text>,
        last_seen_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    contacts (user_id, other_id) {
        user_id -> BigInt,
        other_id -> BigInt,
        state -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    chat_messages (id) {
        id -> BigInt,
        sender_id -> BigInt,
        sender_name -> Text,
        kind -> Text,
        recipient_id -> Nullable<BigInt>,
        group_id -> Nullable<BigInt>,
        body -> Binary,
        sender_key -> Binary,
        received_at_ms -> BigInt,
    }
}

diesel::table! {
    chat_deliveries (message_id, user_id) {
        message_id -> BigInt,
        user_id -> BigInt,
        conversation -> Text,
        delivered -> Bool,
        read -> Bool,
    }
}

diesel::table! {
    chat_attachments (message_id) {
        message_id -> BigInt,
        entry_id -> BigInt,
        version -> BigInt,
    }
}

diesel::table! {
    instances (id) {
        id -> Text,
        beat_at -> BigInt,
    }
}

diesel::table! {
    presence (user_id, instance) {
        user_id -> BigInt,
        instance -> Text,
    }
}

diesel::table! {
    chunks (id) {
        id -> BigInt,
        namespace_id -> BigInt,
        chunk_id -> Binary,
        blob_id -> Text,
        sealed_size -> BigInt,
        blob_blake3 -> Binary,
        used_at -> BigInt,
    }
}

diesel::table! {
    version_chunks (version_id, chunk) {
        version_id -> BigInt,
        chunk -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    users,
    sessions,
    namespaces,
    entries,
    trash,
    versions,
    uploads,
    chunks,
    version_chunks,
    groups,
    group_members,
    group_envelopes,
    group_invites,
    profiles,
    contacts,
    chat_messages,
    chat_deliveries,
    chat_attachments,
    instances,
    presence,
);
