-- Chunks of format version 2 (docs/FORMAT.md §7.10): each distinct chunk of a space is
-- stored once, as a blob of its own under a server-chosen id, and found by the keyed id
-- the client computed (never a plain hash of the plaintext, so it names nothing outside
-- the space). A version of format 2 lists the chunks it uses in version_chunks (its
-- order and lengths are only in its sealed chunk list). gc removes a chunk no kept
-- version uses once it has not been used for files.blob_grace_s.
CREATE TABLE chunks (
    id BIGSERIAL PRIMARY KEY,
    namespace_id BIGINT NOT NULL,
    chunk_id BYTEA NOT NULL,                     -- the client's keyed id, 32 bytes
    blob_id TEXT NOT NULL UNIQUE,
    sealed_size BIGINT NOT NULL,              -- counted in namespaces.used_bytes
    blob_blake3 BYTEA NOT NULL,                  -- BLAKE3 of the sealed bytes as stored
    used_at BIGINT NOT NULL,                  -- last stored, reported held or committed
    UNIQUE (namespace_id, chunk_id)
);
CREATE TABLE version_chunks (
    version_id BIGINT NOT NULL,
    chunk BIGINT NOT NULL,                    -- chunks.id
    PRIMARY KEY (version_id, chunk)
);
CREATE INDEX version_chunks_by_chunk ON version_chunks (chunk);
-- Bytes of chunks an open upload of format 2 said it will store: counted with its
-- sealed_size against the quota (and the disk) until it commits or expires.
ALTER TABLE uploads ADD COLUMN chunk_bytes BIGINT NOT NULL DEFAULT 0;
-- Sealed bytes of the distinct chunks a version of format 2 uses (0 for format 1): with
-- sealed_size, what the version would take stored whole (`usage.logical_bytes`, `du`).
ALTER TABLE versions ADD COLUMN chunk_bytes BIGINT NOT NULL DEFAULT 0;
