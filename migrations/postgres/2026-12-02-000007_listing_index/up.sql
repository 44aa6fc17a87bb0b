-- A directory listing reads everything it shows of an entry from this index, in path
-- order, instead of looking each child up in the table (entries sit in the table in upload
-- order, not in the encrypted-path order a listing walks). Every query by parent also asks
-- for live entries, so the index holds only those.
DROP INDEX entries_by_parent;
CREATE INDEX entries_by_parent ON entries (namespace_id, parent, path)
    INCLUDE (kind, current_version, id, revision, updated_at)
    WHERE trash_id IS NULL;
