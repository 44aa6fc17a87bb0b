-- An upload may be opened "if the file's current version is still N" (0: while the path
-- holds no file), as `vault sync` does: the commit is refused (`conflict`) when another
-- upload became current meanwhile, so that two machines changing one file at once end in
-- a conflict copy instead of one upload silently following the other.
ALTER TABLE uploads ADD COLUMN if_current BIGINT;
