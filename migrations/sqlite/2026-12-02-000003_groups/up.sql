-- Groups (SQLite): groups with the key generation in force, their members and roles, the
-- envelopes that carry each generation of a group key to each member (made and opened by
-- clients only), and join codes. A group's files live in its namespace
-- (`namespaces.kind = 'group'`, `namespaces.group_id`), created with the group.
CREATE TABLE groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,                  -- case-folded like a username
    key_generation BIGINT,                      -- NULL until the first key (GK_0) is stored
    needs_rotation BOOLEAN NOT NULL DEFAULT FALSE, -- a member left without a new generation
    created_at BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    role TEXT NOT NULL,                         -- 'owner' | 'manager' | 'member'
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id);
-- Exactly one owner per group: at most one here, at least one by the code that changes roles.
CREATE UNIQUE INDEX group_members_one_owner ON group_members (group_id) WHERE role = 'owner';

CREATE TABLE group_envelopes (
    group_id BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    user_id BIGINT NOT NULL,                    -- the member who can open it
    envelope BLOB NOT NULL,                     -- RSA-OAEP of GK_generation
    signature BLOB NOT NULL,                    -- RSA-PSS by the signer
    signer TEXT NOT NULL,                       -- the member who wrapped it
    signer_key BLOB NOT NULL,                   -- the signer's public key when it was stored
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, generation, user_id)
);
CREATE INDEX group_envelopes_by_user ON group_envelopes (user_id);

CREATE TABLE group_invites (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id BIGINT NOT NULL,
    created_by BIGINT NOT NULL,
    auth_hash BLOB NOT NULL,                    -- SHA-256 of the code's auth part
    sealed_keys BLOB NOT NULL,                  -- the group keys under the code's key part
    uses_left BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX group_invites_by_group ON group_invites (group_id);
CREATE INDEX group_invites_by_expiry ON group_invites (expires_at);
