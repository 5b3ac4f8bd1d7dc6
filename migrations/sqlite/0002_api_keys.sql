-- Named examiner API keys, managed with `exam-depository keys …`. Only the SHA-256 of a key
-- is stored; the key itself is shown once, when it is created. Revoked keys stay for the
-- record; a name can be reused once its key is revoked.
CREATE TABLE api_key (
    api_key_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE UNIQUE INDEX api_key_live_name ON api_key (name) WHERE revoked_at IS NULL;
