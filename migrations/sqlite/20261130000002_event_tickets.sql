-- Single-use tickets for opening an event stream where a browser's EventSource cannot send an
-- Authorization header (`POST /v1/events/ticket`, then `GET /v1/events?ticket=`). Only the
-- SHA-256 of a ticket is kept. Redeeming claims the row with a fresh value in `claim` (one
-- UPDATE: only one redeemer can set it), then deletes it; rows past `expires_at` are swept.
CREATE TABLE event_tickets (
    hash             TEXT    NOT NULL PRIMARY KEY,
    user_id          TEXT    NOT NULL,
    -- Unix seconds: when the token that minted it expires (streams end by then).
    token_expires_at INTEGER NOT NULL,
    -- Unix milliseconds.
    expires_at       INTEGER NOT NULL,
    claim            TEXT    NULL
);

CREATE INDEX event_tickets_expires_at ON event_tickets (expires_at);
