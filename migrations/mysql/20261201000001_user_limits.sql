-- Quotas an operator set for one user (`mp3conv users limit`), replacing the worker's defaults
-- (`MP3CONV_WORKER__QUOTA__*`). NULL: the default; 9223372036854775807: no limit. The
-- gateway reads a caller's row with the check that their account exists and hands it to the
-- worker, which enforces it. Deleted with the account.
CREATE TABLE user_limits (
    user_id           CHAR(36) NOT NULL PRIMARY KEY,
    storage_bytes     BIGINT   NULL,
    concurrent_jobs   BIGINT   NULL,
    jobs_per_hour     BIGINT   NULL,
    max_upload_bytes  BIGINT   NULL,
    max_duration_secs BIGINT   NULL,
    updated_at        BIGINT   NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
