-- Failed logins as numbered slots, `login_max_failures` per email: a login reserves a free slot
-- with one INSERT before the password is checked, so parallel attempts cannot all pass a count
-- read before any of them was recorded. A slot is free again once its attempt is older than
-- the window. Replaces login_failures (its rows only throttled for the current window).
CREATE TABLE login_attempts (
    email_key    VARCHAR(320) NOT NULL,
    slot         INT          NOT NULL,
    attempted_at BIGINT       NOT NULL,
    PRIMARY KEY (email_key, slot)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

DROP TABLE login_failures;
