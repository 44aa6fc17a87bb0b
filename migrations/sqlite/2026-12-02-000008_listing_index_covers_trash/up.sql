-- SQLite reads a row from a partial index alone only when the index holds every column the
-- query names, and every listing names `trash_id` (`trash_id IS NULL`): without the column
-- each listed entry was still looked up in the table. The index holds live rows only, so
-- the column is always NULL in it and costs a byte a row. (PostgreSQL knows a partial
-- index's predicate holds; its index needs no change.)
DROP INDEX entries_by_parent;
CREATE INDEX entries_by_parent ON entries
    (namespace_id, parent, path, kind, current_version, id, revision, updated_at, trash_id)
    WHERE trash_id IS NULL;
