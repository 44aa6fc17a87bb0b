DROP TABLE abandoned_batches;
DROP INDEX uploads_by_batch;
ALTER TABLE uploads DROP COLUMN batch_token;
