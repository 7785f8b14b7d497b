-- Failed logins as numbered slots, `login_max_failures` per email: a login reserves a free slot
-- with one INSERT before the password is checked, so parallel attempts cannot all pass a count
-- read before any of them was recorded. A slot is free again once its attempt is older than
-- the window. Replaces login_failures (its rows only throttled for the current window).
CREATE TABLE login_attempts (
    email_key    TEXT    NOT NULL,
    slot         INTEGER NOT NULL,
    attempted_at INTEGER NOT NULL,
    PRIMARY KEY (email_key, slot)
);

DROP TABLE login_failures;
