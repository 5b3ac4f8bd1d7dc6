-- exam-depository schema, PostgreSQL flavour. Timestamps are RFC 3339 UTC text of fixed width
-- (see src/domain/time.rs), so text order is time order.

-- A registered student. `uploads_used` counts accepted uploads; it only grows, and the
-- upload transaction increments it with a conditional UPDATE so the limit holds under
-- any concurrency.
CREATE TABLE student (
    student_id   BIGSERIAL PRIMARY KEY,
    nickname     TEXT NOT NULL,
    first_name   TEXT NOT NULL,
    last_name    TEXT NOT NULL,
    email        TEXT NOT NULL,
    upload_code  TEXT NOT NULL UNIQUE,
    uploads_used BIGINT NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL
);
CREATE UNIQUE INDEX student_nickname_key ON student (lower(nickname));
CREATE UNIQUE INDEX student_email_key ON student (lower(email));

-- Every accepted upload. At most one row per student is `current`; older ones are
-- `replaced`, and retention turns a current one into `expired`. Rows stay so that old
-- verification codes answer 410 rather than 404.
CREATE TABLE submission (
    submission_id     BIGSERIAL PRIMARY KEY,
    student_id        BIGINT NOT NULL REFERENCES student (student_id) ON DELETE CASCADE,
    verification_code TEXT NOT NULL UNIQUE,
    storage_key       TEXT NOT NULL UNIQUE,
    original_filename TEXT NOT NULL,
    content_type      TEXT NOT NULL,
    size_bytes        BIGINT NOT NULL,
    md5               TEXT NOT NULL,
    sha256            TEXT NOT NULL,
    attempt           BIGINT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('current', 'replaced', 'expired')),
    created_at        TEXT NOT NULL,
    expires_at        TEXT NOT NULL
);
CREATE UNIQUE INDEX submission_one_current ON submission (student_id) WHERE state = 'current';
CREATE INDEX submission_student ON submission (student_id, submission_id);
CREATE INDEX submission_expiry ON submission (expires_at) WHERE state = 'current';

-- Objects to delete from storage. A row is written *before* an upload starts writing
-- (so a crash mid-upload leaves a record of the key) and removed when the upload commits;
-- replaced and expired files get a row in the same transaction that retires them.
-- The sweeper deletes each object once `not_before` has passed, retrying with backoff.
CREATE TABLE pending_delete (
    storage_key TEXT PRIMARY KEY,
    reason      TEXT NOT NULL,
    not_before  TEXT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX pending_delete_due ON pending_delete (not_before);

-- Server-side failures (500s), for operators: `exam-depository errors`.
CREATE TABLE errors (
    id         BIGSERIAL PRIMARY KEY,
    detail     TEXT NOT NULL,
    cause      TEXT,
    route      TEXT,
    request_id TEXT,
    created_at TEXT NOT NULL
);
