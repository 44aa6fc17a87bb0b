ALTER TABLE versions DROP COLUMN blob_blake3;
