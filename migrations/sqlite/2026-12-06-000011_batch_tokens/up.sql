-- A small-file batch is opened under a token the client recorded before sending
-- (`upload_open_many`), so that the next command can abort what a killed client opened
-- (`upload_abort_batch`) even when the answer with the upload ids never arrived.
ALTER TABLE uploads ADD COLUMN batch_token TEXT;
CREATE INDEX uploads_by_batch ON uploads (user_id, batch_token);
-- Tokens aborted that way: an `upload_open_many` still on its way with one of them is
-- refused. Rows go once `expires_at` passes (gc).
CREATE TABLE abandoned_batches (
    user_id BIGINT NOT NULL,
    token TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, token)
);
