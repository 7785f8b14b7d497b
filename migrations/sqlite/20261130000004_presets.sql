-- Presets: a user's named sets of conversion options (`/v1/presets`, read by the gateway when a
-- job names one). `options` is the contract's `Options` as JSON, checked when it was saved and
-- again when it is read. At most 50 per user (the gateway's insert counts in the same
-- statement). Deleted with the account. Timestamps are Unix milliseconds.
CREATE TABLE presets (
    user_id    TEXT    NOT NULL,
    -- 1-64 characters (`contract::options::preset_name`); case counts (BINARY collation).
    name       TEXT    NOT NULL,
    options    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, name)
);
