-- Notifications (written by the notifier, read by the gateway), webhooks and deliveries.
-- Timestamps are Unix milliseconds.
CREATE TABLE notifications (
    id         TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    -- The CloudEvent id: a redelivered event finds its notification here.
    event_id   TEXT    NOT NULL UNIQUE,
    job_id     TEXT    NOT NULL,
    -- done or failed: one notification per job and outcome, whatever the events say.
    status     TEXT    NOT NULL,
    title      TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    audio_url  TEXT,
    error_code TEXT,
    created_at INTEGER NOT NULL,
    read_at    INTEGER,
    UNIQUE (job_id, status)
);

CREATE INDEX notifications_by_user ON notifications (user_id, created_at);

CREATE TABLE webhooks (
    user_id    TEXT    NOT NULL PRIMARY KEY,
    url        TEXT    NOT NULL,
    secret     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- One row per notification and channel (webhook, email) once it was delivered or given up.
CREATE TABLE deliveries (
    notification_id TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    last_error      TEXT,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (notification_id, channel)
);
