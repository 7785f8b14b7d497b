-- Tokens signed out before they expire (`POST /v1/logout`): the gateway refuses a token whose
-- id is here, in the same query that checks its user still exists. Rows past `expires_at` (the
-- token's own expiry, Unix seconds) can never match a valid token again and are swept.
CREATE TABLE revoked_tokens (
    jti        VARCHAR(64) NOT NULL,
    user_id    CHAR(36)    NOT NULL,
    expires_at BIGINT      NOT NULL,
    PRIMARY KEY (jti),
    KEY revoked_tokens_expires_at (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
