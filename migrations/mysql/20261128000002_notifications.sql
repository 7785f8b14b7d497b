-- Notifications (written by the notifier, read by the gateway), webhooks and deliveries.
-- Timestamps are Unix milliseconds.
CREATE TABLE notifications (
    id         CHAR(36)      NOT NULL PRIMARY KEY,
    user_id    CHAR(36)      NOT NULL,
    -- The CloudEvent id: a redelivered event finds its notification here.
    event_id   VARCHAR(255)  NOT NULL,
    job_id     CHAR(36)      NOT NULL,
    -- done or failed: one notification per job and outcome, whatever the events say.
    status     VARCHAR(16)   NOT NULL,
    title      VARCHAR(255)  NOT NULL,
    message    VARCHAR(1024) NOT NULL,
    audio_url  VARCHAR(255),
    error_code VARCHAR(64),
    created_at BIGINT        NOT NULL,
    read_at    BIGINT,
    UNIQUE KEY notifications_event (event_id),
    UNIQUE KEY notifications_job (job_id, status),
    KEY notifications_by_user (user_id, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE webhooks (
    user_id    CHAR(36)      NOT NULL PRIMARY KEY,
    url        VARCHAR(2048) NOT NULL,
    secret     VARCHAR(128)  NOT NULL,
    created_at BIGINT        NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per notification and channel (webhook, email) once it was delivered or given up.
CREATE TABLE deliveries (
    notification_id CHAR(36)      NOT NULL,
    channel         VARCHAR(16)   NOT NULL,
    state           VARCHAR(16)   NOT NULL,
    attempts        INT           NOT NULL,
    last_error      VARCHAR(1024),
    updated_at      BIGINT        NOT NULL,
    PRIMARY KEY (notification_id, channel)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
