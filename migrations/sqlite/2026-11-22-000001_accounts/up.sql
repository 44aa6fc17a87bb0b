-- Accounts, verification codes, sessions, login throttling and the audit log (SQLite).
-- Times are Unix seconds (BIGINT) so both backends share one schema in Rust.
CREATE TABLE settings (
    name TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL UNIQUE,
    auth_hash TEXT NOT NULL,
    kdf_salt BLOB NOT NULL,
    kdf_memory_kib BIGINT NOT NULL,
    kdf_iterations BIGINT NOT NULL,
    kdf_parallelism BIGINT NOT NULL,
    account_key_by_kek BLOB NOT NULL,
    account_key_by_recovery BLOB NOT NULL,
    public_key BLOB NOT NULL,
    private_key_sealed BLOB NOT NULL,
    quota_bytes BIGINT NOT NULL,
    locked BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

CREATE TABLE codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    purpose TEXT NOT NULL,
    username TEXT NOT NULL,
    email TEXT NOT NULL,
    code_salt BLOB NOT NULL,
    code_hash BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    used BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX codes_by_user ON codes (purpose, username);
CREATE INDEX codes_by_email ON codes (email, created_at);

CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    client_ip TEXT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE login_failures (
    subject TEXT PRIMARY KEY NOT NULL,
    failures BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    event TEXT NOT NULL,
    username TEXT,
    client_ip TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_by_time ON audit_log (at);
