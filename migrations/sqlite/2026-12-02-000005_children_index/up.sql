-- A directory listing reads one page of children in path order after a cursor. With the
-- path in the index the database seeks to the cursor and reads the page in order, instead
-- of sorting every child of the directory for every page.
DROP INDEX entries_by_parent;
CREATE INDEX entries_by_parent ON entries (namespace_id, parent, path);
