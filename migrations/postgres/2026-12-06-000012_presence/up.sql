-- Presence across instances (`db::presence`): a row per running server instance, whose
-- `beat_at` it refreshes every few seconds, and a row per user with a live subscription
-- on an instance. A user is online while a row of theirs belongs to an instance that beat
-- recently; the rows of an instance that stopped beating are swept.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    beat_at BIGINT NOT NULL
);
CREATE TABLE presence (
    user_id BIGINT NOT NULL,
    instance TEXT NOT NULL,
    PRIMARY KEY (user_id, instance)
);
CREATE INDEX presence_by_instance ON presence (instance);
