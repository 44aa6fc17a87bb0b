-- Invitations to open an account (`vault-admin user invite`, `user create`): single-use
-- codes bound to an address, stored as salted SHA-256 like the mailed verification codes.
-- `username` is set when the operator chose the name (`user create`): it is reserved for
-- the invited address until the invitation is used, revoked or expired.
CREATE TABLE invitations (
    id BIGSERIAL PRIMARY KEY,
    email TEXT NOT NULL,
    username TEXT,
    code_salt BYTEA NOT NULL,
    code_hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    used_by TEXT,
    used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX invitations_email ON invitations (email);
CREATE INDEX invitations_username ON invitations (username);
