-- Exam integrity: per-student extra time, and a hash-chained, append-only audit log.

-- Extra seconds after SUBMISSIONS_CLOSE_AT for this student (set by an examiner).
ALTER TABLE student ADD COLUMN extra_seconds BIGINT NOT NULL DEFAULT 0;

-- Every state change and disclosure, in order. `hash` = SHA-256 over the event's fields and
-- `prev_hash`, so editing or removing a row breaks the chain (`exam-depository audit verify`).
-- Appends are serialised by the row lock on `audit_head`, so replicas keep one chain.
CREATE TABLE audit_event (
    audit_event_id BIGINT PRIMARY KEY,
    at             TEXT NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    details        TEXT NOT NULL,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
);
CREATE INDEX audit_event_subject ON audit_event (subject, action);

CREATE TABLE audit_head (
    audit_head_id BIGINT PRIMARY KEY,
    seq           BIGINT NOT NULL,
    last_hash     TEXT NOT NULL
);
INSERT INTO audit_head (audit_head_id, seq, last_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event
FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
