DROP TABLE audit_log;
DROP TABLE login_failures;
DROP TABLE sessions;
DROP TABLE codes;
DROP TABLE users;
DROP TABLE settings;
