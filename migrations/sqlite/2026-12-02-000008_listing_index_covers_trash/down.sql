DROP INDEX entries_by_parent;
CREATE INDEX entries_by_parent ON entries
    (namespace_id, parent, path, kind, current_version, id, revision, updated_at)
    WHERE trash_id IS NULL;
