-- Files (PostgreSQL): namespaces, entries (files and directories by encrypted path), kept
-- versions, the trash, and unfinished uploads. Contents live in the blob store under
-- server-chosen blob ids; the database holds only encrypted names and sealed keys.
CREATE TABLE namespaces (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,                         -- 'personal' | 'group'
    owner_user_id BIGINT UNIQUE,                -- personal: the user
    group_id BIGINT UNIQUE,                     -- group: the group
    revision BIGINT NOT NULL DEFAULT 0,         -- bumped by every change
    purged_revision BIGINT NOT NULL DEFAULT 0,  -- last revision at which rows were hard-deleted
    used_bytes BIGINT NOT NULL DEFAULT 0,       -- ciphertext bytes of all versions
    quota_bytes BIGINT,                         -- NULL: the owner's quota (personal)
    created_at BIGINT NOT NULL
);

CREATE TABLE entries (
    id BIGSERIAL PRIMARY KEY,
    namespace_id BIGINT NOT NULL,
    path TEXT NOT NULL,                         -- encrypted segments joined by '/'
    parent TEXT NOT NULL,                       -- encrypted parent path, '' at the root
    kind TEXT NOT NULL,                         -- 'file' | 'dir'
    current_version BIGINT,                     -- NULL: a file whose first upload is unfinished
    next_version BIGINT NOT NULL DEFAULT 1,
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    trash_id BIGINT                             -- NULL: live
);
CREATE UNIQUE INDEX entries_live_path ON entries (namespace_id, path) WHERE trash_id IS NULL;
CREATE INDEX entries_by_parent ON entries (namespace_id, parent);
CREATE INDEX entries_by_revision ON entries (namespace_id, revision, id);
CREATE INDEX entries_by_trash ON entries (trash_id);

CREATE TABLE trash (
    id BIGSERIAL PRIMARY KEY,
    namespace_id BIGINT NOT NULL,
    root_entry_id BIGINT NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    entries BIGINT NOT NULL,
    sealed_bytes BIGINT NOT NULL,
    trashed_at BIGINT NOT NULL
);
CREATE INDEX trash_by_namespace ON trash (namespace_id, trashed_at);

CREATE TABLE versions (
    id BIGSERIAL PRIMARY KEY,
    entry_id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    blob_id TEXT NOT NULL UNIQUE,
    sealed_size BIGINT NOT NULL,
    wrapped_key BYTEA NOT NULL,
    sealed_meta BYTEA NOT NULL,
    generation BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (entry_id, version)
);

CREATE TABLE uploads (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    namespace_id BIGINT NOT NULL,
    entry_id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    generation BIGINT NOT NULL DEFAULT 0,
    sealed_size BIGINT NOT NULL,
    blob_id TEXT NOT NULL UNIQUE,               -- where the bytes go once committed
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX uploads_by_expiry ON uploads (expires_at);

-- Blobs whose versions were deleted: the files go at the next gc after a grace period,
-- so a backup that copied the database just before still finds them.
CREATE TABLE deleted_blobs (
    blob_id TEXT PRIMARY KEY NOT NULL,
    deleted_at BIGINT NOT NULL
);
