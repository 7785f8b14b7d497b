-- Users and failed logins (the auth function). Timestamps are Unix seconds / milliseconds.
CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    email         TEXT    NOT NULL,
    email_key     TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE login_failures (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    email_key TEXT    NOT NULL,
    failed_at INTEGER NOT NULL
);

CREATE INDEX login_failures_by_email ON login_failures (email_key, failed_at);
