-- Single-use tickets for opening an event stream where a browser's EventSource cannot send an
-- Authorization header (`POST /v1/events/ticket`, then `GET /v1/events?ticket=`). Only the
-- SHA-256 of a ticket is kept. Redeeming claims the row with a fresh value in `claim` (one
-- UPDATE: only one redeemer can set it), then deletes it; rows past `expires_at` are swept.
CREATE TABLE event_tickets (
    hash             CHAR(64)     NOT NULL,
    user_id          CHAR(36)     NOT NULL,
    -- Unix seconds: when the token that minted it expires (streams end by then).
    token_expires_at BIGINT       NOT NULL,
    -- Unix milliseconds.
    expires_at       BIGINT       NOT NULL,
    claim            VARCHAR(64)  NULL,
    PRIMARY KEY (hash),
    KEY event_tickets_expires_at (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
