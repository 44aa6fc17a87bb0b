-- BLAKE3 (32 bytes) of each version's sealed blob, as the server stored it: `fsck
-- --read-data` and the server's scrub read the blob again and compare. It covers
-- ciphertext only. NULL for versions stored before this migration (reported as having no
-- recorded hash; `vault-admin fsck --read-data --repair` records one).
ALTER TABLE versions ADD COLUMN blob_blake3 BLOB;
