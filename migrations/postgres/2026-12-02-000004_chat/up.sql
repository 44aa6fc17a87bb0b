-- Chat (PostgreSQL): profiles (display name, when last connected), contact relationships
-- (both directions stored), messages as their senders' clients sealed them (the server
-- cannot open them), and one delivery row per reader with its delivered and read state.
CREATE TABLE profiles (
    user_id BIGINT PRIMARY KEY,
    display_name TEXT,                          -- NULL: none set
    last_seen_at BIGINT                         -- Unix seconds; NULL: never subscribed
);

CREATE TABLE contacts (
    user_id BIGINT NOT NULL,                    -- whose view this row is
    other_id BIGINT NOT NULL,
    state TEXT NOT NULL,                        -- 'contact' | 'request_sent' | 'request_received'
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, other_id)
);
CREATE INDEX contacts_by_other ON contacts (other_id);

CREATE TABLE chat_messages (
    id BIGSERIAL PRIMARY KEY,                   -- increasing in arrival order
    sender_id BIGINT NOT NULL,
    sender_name TEXT NOT NULL,
    kind TEXT NOT NULL,                         -- 'user' | 'group'
    recipient_id BIGINT,                        -- kind 'user'
    group_id BIGINT,                            -- kind 'group'
    body BYTEA NOT NULL,                        -- CBOR of the SealedMessage, as it came
    sender_key BYTEA NOT NULL,                  -- the sender's public key at arrival
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX chat_messages_by_group ON chat_messages (group_id);
CREATE INDEX chat_messages_by_time ON chat_messages (received_at_ms);

CREATE TABLE chat_deliveries (
    message_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,                    -- the reader
    conversation TEXT NOT NULL,                 -- 'user:<other user id>' | 'group:<group id>'
    delivered BOOLEAN NOT NULL,                 -- written to one of the reader's subscriptions
    read BOOLEAN NOT NULL,                      -- returned by the reader's chat_history
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX chat_deliveries_by_conversation ON chat_deliveries (user_id, conversation, message_id);
CREATE INDEX chat_deliveries_by_user ON chat_deliveries (user_id, message_id);
