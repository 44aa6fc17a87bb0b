DROP INDEX entries_by_parent;
CREATE INDEX entries_by_parent ON entries (namespace_id, parent, path);
