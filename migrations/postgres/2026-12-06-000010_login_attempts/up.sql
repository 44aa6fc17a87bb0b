-- Logins being checked: a row per subject (`user:NAME`, `ip:ADDR`) from the moment a login
-- is admitted until its outcome is written. Admission counts these with the failures in
-- one transaction, so a burst of concurrent attempts cannot pass the check together.
CREATE TABLE login_attempts (
    id BIGSERIAL PRIMARY KEY,
    subject TEXT NOT NULL,
    started_at BIGINT NOT NULL
);
CREATE INDEX login_attempts_by_subject ON login_attempts (subject, started_at);
