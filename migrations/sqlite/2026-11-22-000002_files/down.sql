DROP TABLE deleted_blobs;
DROP TABLE uploads;
DROP TABLE versions;
DROP TABLE trash;
DROP TABLE entries;
DROP TABLE namespaces;
