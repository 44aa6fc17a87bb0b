ALTER TABLE uploads DROP COLUMN if_current;
