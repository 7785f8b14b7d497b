-- Users and failed logins (the auth function). Timestamps are Unix seconds / milliseconds.
CREATE TABLE users (
    id            CHAR(36)     NOT NULL PRIMARY KEY,
    email         VARCHAR(320) NOT NULL,
    email_key     VARCHAR(320) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created_at    BIGINT       NOT NULL,
    UNIQUE KEY users_email_key (email_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE login_failures (
    id        BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email_key VARCHAR(320) NOT NULL,
    failed_at BIGINT       NOT NULL,
    KEY login_failures_by_email (email_key, failed_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
