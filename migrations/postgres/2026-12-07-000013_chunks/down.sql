ALTER TABLE versions DROP COLUMN chunk_bytes;
ALTER TABLE uploads DROP COLUMN chunk_bytes;
DROP TABLE version_chunks;
DROP TABLE chunks;
