-- Files sent with chat messages (`vault chat send --file`): the file is kept in the
-- sender's personal space; this row names the entry and version a message carries, so
-- that the message's readers can download that version while the sender keeps it.
CREATE TABLE chat_attachments (
    message_id BIGINT PRIMARY KEY,              -- chat_messages.id
    entry_id BIGINT NOT NULL,                   -- entries.id in the sender's personal space
    version BIGINT NOT NULL                     -- versions.version of that entry
);
