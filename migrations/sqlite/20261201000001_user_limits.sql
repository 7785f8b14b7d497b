-- Quotas an operator set for one user (`mp3conv users limit`), replacing the worker's defaults
-- (`MP3CONV_WORKER__QUOTA__*`). NULL: the default; 9223372036854775807: no limit. The
-- gateway reads a caller's row with the check that their account exists and hands it to the
-- worker, which enforces it. Deleted with the account.
CREATE TABLE user_limits (
    user_id           TEXT    NOT NULL PRIMARY KEY,
    storage_bytes     INTEGER,
    concurrent_jobs   INTEGER,
    jobs_per_hour     INTEGER,
    max_upload_bytes  INTEGER,
    max_duration_secs INTEGER,
    updated_at        INTEGER NOT NULL
);
