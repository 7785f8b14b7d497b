-- Tokens signed out before they expire (`POST /v1/logout`): the gateway refuses a token whose
-- id is here, in the same query that checks its user still exists. Rows past `expires_at` (the
-- token's own expiry, Unix seconds) can never match a valid token again and are swept.
CREATE TABLE revoked_tokens (
    jti        TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);
