//! The service's queries. The SQL is portable between SQLite (3.35+) and PostgreSQL:
//! `$N` placeholders, `RETURNING`, `ON CONFLICT DO NOTHING` and partial indexes.

use super::audit;
use super::models::{ROSTER_COLUMNS, STUDENT_COLUMNS, SUBMISSION_COLUMNS};
use super::{Db, DbError, ErrorRow, NewSubmission, RosterLine, StudentRow, SubmissionRow};
use crate::domain::audit::AuditEntry;
use crate::domain::student::NewStudent;
use crate::domain::time;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A student with their latest submission, if any.
pub type StudentWithSubmission = (StudentRow, Option<SubmissionRow>);

/// Roster totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Registered students.
    pub total_students: i64,
    /// Students with at least one accepted submission.
    pub total_submissions: i64,
}

/// The result of trying to record an upload.
#[derive(Debug)]
pub enum CommitOutcome {
    /// Recorded; the student's previous file (if any) is queued for deletion.
    Accepted {
        /// The new current submission.
        submission: Box<SubmissionRow>,
        /// Accepted uploads including this one.
        uploads_used: i64,
        /// Storage key of the file this one replaced.
        replaced_key: Option<String>,
    },
    /// The student has no uploads left (another upload took the last one).
    LimitReached,
    /// The student was deleted while the upload was streaming.
    StudentGone,
    /// The object's reservation lapsed (the upload overran its deadline) and the sweeper
    /// may already be deleting it.
    ReservationLost,
}

/// Why a key is listed for deletion.
pub const REASON_UPLOAD: &str = "upload";
const REASON_REPLACED: &str = "replaced";
/// Students per INSERT of an import (6 parameters each).
const STUDENT_ROWS: usize = 500;
const REASON_EXPIRED: &str = "expired";
const REASON_STUDENT_DELETED: &str = "student-deleted";

fn with_latest_submission(filter: &str) -> String {
    with_latest(&format!("{STUDENT_COLUMNS}, {SUBMISSION_COLUMNS}"), filter)
}

fn with_latest(columns: &str, filter: &str) -> String {
    // The latest submission per student, found through the (student_id, submission_id) index.
    format!(
        "SELECT {columns} FROM student s \
         LEFT JOIN submission sub ON sub.submission_id = \
           (SELECT MAX(submission_id) FROM submission WHERE student_id = s.student_id) \
         {filter}"
    )
}

fn decode_pair(row: &AnyRow) -> sqlx::Result<StudentWithSubmission> {
    Ok((StudentRow::from_row(row)?, SubmissionRow::from_row(row)?))
}

impl Db {
    /// Registers a student; `Conflict` when the nickname, e-mail or upload code is taken.
    pub async fn insert_student(
        &self,
        student: &NewStudent,
        upload_code: &str,
        audit: &AuditEntry,
    ) -> Result<StudentRow, DbError> {
        let sql = "INSERT INTO student \
             (nickname, first_name, last_name, email, upload_code, uploads_used, created_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6) \
             RETURNING student_id, nickname, first_name, last_name, email, upload_code, \
             uploads_used, created_at, extra_seconds";
        self.timed(async {
            let mut tx = self.begin().await?;
            let row = sqlx::query(sql)
                .bind(&student.nickname)
                .bind(&student.first_name)
                .bind(&student.last_name)
                .bind(&student.email)
                .bind(upload_code)
                .bind(time::now())
                .fetch_one(&mut *tx)
                .await?;
            let student = StudentRow::from_row(&row)?;
            audit::append(&mut tx, audit).await?;
            tx.commit().await?;
            Ok(student)
        })
        .await
    }

    /// Registers many students in one transaction: all or none. `Conflict` when a unique
    /// value is taken (the caller checks which).
    pub async fn insert_students(
        &self,
        students: &[(NewStudent, String)],
        actor: &str,
    ) -> Result<Vec<StudentRow>, DbError> {
        // A large roster is one transaction of many small inserts: allow it more time.
        let timeout = self.timeout * 4;
        let work = async {
            let mut tx = self.begin().await?;
            let now = time::now();
            // Multi-row inserts: one statement per `STUDENT_ROWS` students instead of one
            // each. RETURNING gives no order, so rows are matched back by nickname.
            let mut inserted = std::collections::HashMap::with_capacity(students.len());
            for chunk in students.chunks(STUDENT_ROWS) {
                let sql = format!(
                    "INSERT INTO student \
                     (nickname, first_name, last_name, email, upload_code, created_at) \
                     VALUES {} \
                     RETURNING student_id, nickname, first_name, last_name, email, upload_code, \
                     uploads_used, created_at, extra_seconds",
                    super::values_placeholders(self.kind, chunk.len(), 6)
                );
                let mut query = sqlx::query(&sql).persistent(false);
                for (student, upload_code) in chunk {
                    query = query
                        .bind(&student.nickname)
                        .bind(&student.first_name)
                        .bind(&student.last_name)
                        .bind(&student.email)
                        .bind(upload_code)
                        .bind(&now);
                }
                for row in query.fetch_all(&mut *tx).await? {
                    let student = StudentRow::from_row(&row)?;
                    inserted.insert(student.nickname.clone(), student);
                }
            }
            let rows = students
                .iter()
                .map(|(student, _)| {
                    inserted
                        .remove(&student.nickname)
                        .ok_or(sqlx::Error::RowNotFound)
                })
                .collect::<sqlx::Result<Vec<_>>>()?;
            let events: Vec<_> = rows
                .iter()
                .map(|student| {
                    AuditEntry::new(
                        actor,
                        "student.imported",
                        format!("student:{}", student.nickname),
                        serde_json::json!({"first_name": student.first_name, "last_name": student.last_name, "email": student.email}),
                    )
                })
                .collect();
            // One head update for all the events: updating the head row once per student
            // made a 5,000-row import quadratic on PostgreSQL (a long chain of row versions).
            audit::append_many(&mut tx, &events).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(rows)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result.map_err(DbError::from),
            Err(_) => Err(DbError::Timeout),
        }
    }

    /// Lowercased nicknames and e-mails of every student (to check an import against).
    pub async fn taken_identities(&self) -> Result<Vec<(String, String)>, DbError> {
        self.timed(
            sqlx::query_as("SELECT lower(nickname), lower(email) FROM student")
                .fetch_all(&self.pool),
        )
        .await
    }

    /// Which of the nickname and e-mail (case-insensitively) already belong to a student.
    pub async fn taken(&self, nickname: &str, email: &str) -> Result<(bool, bool), DbError> {
        let sql = "SELECT \
             (SELECT COUNT(*) FROM student WHERE lower(nickname) = lower($1)) AS nick, \
             (SELECT COUNT(*) FROM student WHERE lower(email) = lower($2)) AS email";
        let row = self
            .timed(
                sqlx::query(sql)
                    .bind(nickname)
                    .bind(email)
                    .fetch_one(&self.pool),
            )
            .await?;
        let nick: i64 = row.try_get("nick")?;
        let email: i64 = row.try_get("email")?;
        Ok((nick > 0, email > 0))
    }

    /// Roster lines in registration order, each with the latest submission: one query.
    pub async fn list_students(&self, limit: i64, offset: i64) -> Result<Vec<RosterLine>, DbError> {
        let sql = with_latest(ROSTER_COLUMNS, "ORDER BY s.student_id LIMIT $1 OFFSET $2");
        let rows = self
            .timed(
                sqlx::query(&sql)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&self.pool),
            )
            .await?;
        Ok(rows
            .iter()
            .map(RosterLine::from_row)
            .collect::<sqlx::Result<_>>()?)
    }

    /// Registered students and students with at least one submission.
    pub async fn totals(&self) -> Result<Totals, DbError> {
        let sql = "SELECT (SELECT COUNT(*) FROM student) AS total_students, \
             (SELECT COUNT(*) FROM student WHERE uploads_used > 0) AS total_submissions";
        let row = self.timed(sqlx::query(sql).fetch_one(&self.pool)).await?;
        Ok(Totals {
            total_students: row.try_get("total_students")?,
            total_submissions: row.try_get("total_submissions")?,
        })
    }

    /// A student by nickname (exact match), with their latest submission.
    pub async fn student_by_nickname(
        &self,
        nickname: &str,
    ) -> Result<Option<StudentWithSubmission>, DbError> {
        let sql = with_latest_submission("WHERE s.nickname = $1");
        let row = self
            .timed(sqlx::query(&sql).bind(nickname).fetch_optional(&self.pool))
            .await?;
        Ok(row.as_ref().map(decode_pair).transpose()?)
    }

    /// A student by upload code, with their latest submission.
    pub async fn student_by_upload_code(
        &self,
        upload_code: &str,
    ) -> Result<Option<StudentWithSubmission>, DbError> {
        let sql = with_latest_submission("WHERE s.upload_code = $1");
        let row = self
            .timed(
                sqlx::query(&sql)
                    .bind(upload_code)
                    .fetch_optional(&self.pool),
            )
            .await?;
        Ok(row.as_ref().map(decode_pair).transpose()?)
    }

    /// Deletes a student and their submissions; their current file is queued for deletion.
    /// Returns the queued storage key, or `None` when there was no such student.
    pub async fn delete_student(
        &self,
        nickname: &str,
        actor: &str,
    ) -> Result<Option<Vec<String>>, DbError> {
        self.timed(async {
            let mut tx = self.begin().await?;
            let keys: Vec<String> = sqlx::query_scalar(
                "UPDATE submission SET state = 'replaced' WHERE state = 'current' AND \
                 student_id = (SELECT student_id FROM student WHERE nickname = $1) \
                 RETURNING storage_key",
            )
            .bind(nickname)
            .fetch_all(&mut *tx)
            .await?;
            for key in &keys {
                queue_delete(&mut tx, key, REASON_STUDENT_DELETED).await?;
            }
            let deleted = sqlx::query("DELETE FROM student WHERE nickname = $1")
                .bind(nickname)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted > 0 {
                let entry = AuditEntry::new(
                    actor,
                    "student.deleted",
                    format!("student:{nickname}"),
                    serde_json::json!({"files_deleted": keys.len()}),
                );
                audit::append(&mut tx, &entry).await?;
            }
            tx.commit().await?;
            Ok((deleted > 0).then_some(keys))
        })
        .await
    }

    /// A student's nickname by id.
    pub async fn student_nickname(&self, student_id: i64) -> Result<Option<String>, DbError> {
        self.timed(
            sqlx::query_scalar("SELECT nickname FROM student WHERE student_id = $1")
                .bind(student_id)
                .fetch_optional(&self.pool),
        )
        .await
    }

    /// Sets a student's extra time; false when there is no such student.
    pub async fn set_extra_seconds(
        &self,
        nickname: &str,
        extra_seconds: i64,
        audit_entry: &AuditEntry,
    ) -> Result<bool, DbError> {
        self.timed(async {
            let mut tx = self.begin().await?;
            let changed = sqlx::query("UPDATE student SET extra_seconds = $2 WHERE nickname = $1")
                .bind(nickname)
                .bind(extra_seconds)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed > 0 {
                audit::append(&mut tx, audit_entry).await?;
            }
            tx.commit().await?;
            Ok(changed > 0)
        })
        .await
    }

    /// Makes a reservation due now: the upload failed and its object should go.
    pub async fn abandon_key(&self, key: &str) -> Result<(), DbError> {
        let sql = "UPDATE pending_delete SET not_before = $2 WHERE storage_key = $1";
        self.timed(
            sqlx::query(sql)
                .bind(key)
                .bind(time::now())
                .execute(&self.writer),
        )
        .await
        .map(drop)
    }

    /// A submission by verification code, whatever its state.
    pub async fn submission_by_verification_code(
        &self,
        code: &str,
    ) -> Result<Option<SubmissionRow>, DbError> {
        self.submission_where("verification_code", code).await
    }

    /// A submission by storage key, whatever its state.
    pub async fn submission_by_storage_key(
        &self,
        key: &str,
    ) -> Result<Option<SubmissionRow>, DbError> {
        self.submission_where("storage_key", key).await
    }

    async fn submission_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<SubmissionRow>, DbError> {
        let sql =
            format!("SELECT {SUBMISSION_COLUMNS} FROM submission sub WHERE sub.{column} = $1");
        let row = self
            .timed(sqlx::query(&sql).bind(value).fetch_optional(&self.pool))
            .await?;
        Ok(row
            .as_ref()
            .map(SubmissionRow::from_row)
            .transpose()?
            .flatten())
    }

    /// Retires every current submission whose retention ran out and queues its file for
    /// deletion. Concurrent sweepers each retire a row at most once (the state re-check).
    pub async fn expire_due(&self, now: &str) -> Result<Vec<String>, DbError> {
        self.timed(async {
            let mut tx = self.begin().await?;
            let expired: Vec<(String, i64)> = sqlx::query_as(
                "UPDATE submission SET state = 'expired' \
                 WHERE state = 'current' AND expires_at <= $1 RETURNING storage_key, submission_id",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            for (key, _) in &expired {
                queue_delete(&mut tx, key, REASON_EXPIRED).await?;
            }
            let events: Vec<AuditEntry> = expired
                .iter()
                .map(|(_, id)| {
                    AuditEntry::new(
                        "system",
                        "submission.expired",
                        format!("submission:{id}"),
                        serde_json::json!({}),
                    )
                })
                .collect();
            audit::append_many(&mut tx, &events).await?;
            tx.commit().await?;
            Ok(expired.into_iter().map(|(key, _)| key).collect())
        })
        .await
    }

    /// Claims up to `limit` due deletions by pushing their `not_before` to `lease_until`;
    /// a claimed row is invisible to other sweepers until then. Returns the keys with their
    /// attempt count (1 on the first try).
    pub async fn claim_deletions(
        &self,
        now: &str,
        lease_until: &str,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, DbError> {
        // The outer `not_before <= $1` is re-checked by PostgreSQL on a row another sweeper
        // just claimed, so two sweepers never claim the same row.
        let sql = "UPDATE pending_delete SET not_before = $2, attempts = attempts + 1 \
             WHERE not_before <= $1 AND storage_key IN \
               (SELECT storage_key FROM pending_delete WHERE not_before <= $1 \
                ORDER BY not_before LIMIT $3) \
             RETURNING storage_key, attempts";
        let rows = self
            .timed(
                sqlx::query(sql)
                    .bind(now)
                    .bind(lease_until)
                    .bind(limit)
                    .fetch_all(&self.writer),
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<sqlx::Result<_>>()
            .map_err(DbError::from)
    }

    /// The object is gone: forget the deletion.
    pub async fn deletion_done(&self, key: &str) -> Result<(), DbError> {
        self.timed(
            sqlx::query("DELETE FROM pending_delete WHERE storage_key = $1")
                .bind(key)
                .execute(&self.writer),
        )
        .await
        .map(drop)
    }

    /// The delete failed: try again at `retry_at`.
    pub async fn deletion_failed(
        &self,
        key: &str,
        error: &str,
        retry_at: &str,
    ) -> Result<(), DbError> {
        self.timed(
            sqlx::query(
                "UPDATE pending_delete SET last_error = $2, not_before = $3 WHERE storage_key = $1",
            )
            .bind(key)
            .bind(error)
            .bind(retry_at)
            .execute(&self.writer),
        )
        .await
        .map(drop)
    }

    /// Number of deletions still waiting (due or not).
    pub async fn pending_deletions(&self) -> Result<i64, DbError> {
        self.timed(sqlx::query_scalar("SELECT COUNT(*) FROM pending_delete").fetch_one(&self.pool))
            .await
    }

    /// Every student with a current submission and that submission, in registration order.
    pub async fn current_submissions(&self) -> Result<Vec<(StudentRow, SubmissionRow)>, DbError> {
        let sql = format!(
            "SELECT {STUDENT_COLUMNS}, {SUBMISSION_COLUMNS} FROM student s \
             JOIN submission sub ON sub.student_id = s.student_id AND sub.state = 'current' \
             ORDER BY s.student_id"
        );
        let rows = self.timed(sqlx::query(&sql).fetch_all(&self.pool)).await?;
        rows.iter()
            .map(|row| {
                let (student, submission) = decode_pair(row)?;
                Ok((student, submission.ok_or(sqlx::Error::RowNotFound)?))
            })
            .collect::<sqlx::Result<_>>()
            .map_err(DbError::from)
    }

    /// Storage keys of every current submission (for audits).
    pub async fn live_storage_keys(&self) -> Result<Vec<(String, String)>, DbError> {
        self.timed(
            sqlx::query_as("SELECT storage_key, sha256 FROM submission WHERE state = 'current'")
                .fetch_all(&self.pool),
        )
        .await
    }

    /// Students whose counter differs from their number of accepted submissions (audits).
    pub async fn counter_mismatches(&self) -> Result<i64, DbError> {
        self.timed(
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM student s WHERE s.uploads_used <> \
                 (SELECT COUNT(*) FROM submission WHERE student_id = s.student_id)",
            )
            .fetch_one(&self.pool),
        )
        .await
    }

    /// Writes a row to the `errors` table.
    pub async fn record_error(
        &self,
        detail: &str,
        cause: &str,
        route: Option<&str>,
        request_id: Option<&str>,
    ) -> Result<(), DbError> {
        self.timed(
            sqlx::query(
                "INSERT INTO errors (detail, cause, route, request_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(detail)
            .bind(cause)
            .bind(route)
            .bind(request_id)
            .bind(time::now())
            .execute(&self.writer),
        )
        .await
        .map(drop)
    }

    /// The most recent rows of the `errors` table, newest first.
    pub async fn recent_errors(&self, limit: i64) -> Result<Vec<ErrorRow>, DbError> {
        let rows = self
            .timed(
                sqlx::query(
                    "SELECT id, detail, cause, route, request_id, created_at FROM errors \
                     ORDER BY id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool),
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ErrorRow {
                    id: row.try_get("id")?,
                    detail: row.try_get("detail")?,
                    cause: row.try_get("cause")?,
                    route: row.try_get("route")?,
                    request_id: row.try_get("request_id")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<sqlx::Result<_>>()
            .map_err(DbError::from)
    }
}

/// An upload to record: the student, their limit and the stored object.
#[derive(Debug, Clone)]
pub struct UploadCommit {
    /// The student's id.
    pub student_id: i64,
    /// The student's nickname (the audit log's actor).
    pub nickname: String,
    /// Accepted uploads allowed per student.
    pub limit: i64,
    /// The new submission; its verification code is redrawn if it is taken.
    pub new: NewSubmission,
}

/// Records an upload inside `tx`: takes one attempt with a conditional update (so the limit
/// holds however many uploads race), retires the previous file, inserts the new one and
/// releases the key's reservation. The outcomes other than `Accepted` leave the database as
/// they found it (and the reservation in place, so the sweeper removes the object even if
/// the caller's own cleanup fails). Audit events go to `events`, for the caller to append
/// last.
pub(super) async fn commit_upload_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    upload: &UploadCommit,
    events: &mut Vec<AuditEntry>,
) -> sqlx::Result<CommitOutcome> {
    let student_id = upload.student_id;
    let used: Option<i64> = sqlx::query_scalar(
        "UPDATE student SET uploads_used = uploads_used + 1 \
         WHERE student_id = $1 AND uploads_used < $2 RETURNING uploads_used",
    )
    .bind(student_id)
    .bind(upload.limit)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(uploads_used) = used else {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT student_id FROM student WHERE student_id = $1")
                .bind(student_id)
                .fetch_optional(&mut **tx)
                .await?;
        return Ok(if exists.is_some() {
            CommitOutcome::LimitReached
        } else {
            CommitOutcome::StudentGone
        });
    };
    let new = &upload.new;
    let released = sqlx::query(
        "DELETE FROM pending_delete WHERE storage_key = $1 AND reason = $2 AND attempts = 0",
    )
    .bind(&new.storage_key)
    .bind(REASON_UPLOAD)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if released == 0 {
        // The sweeper has claimed the object: give the attempt back.
        sqlx::query("UPDATE student SET uploads_used = uploads_used - 1 WHERE student_id = $1")
            .bind(student_id)
            .execute(&mut **tx)
            .await?;
        return Ok(CommitOutcome::ReservationLost);
    }
    let replaced: Option<(String, i64)> = sqlx::query_as(
        "UPDATE submission SET state = 'replaced' \
         WHERE student_id = $1 AND state = 'current' RETURNING storage_key, submission_id",
    )
    .bind(student_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some((key, _)) = &replaced {
        queue_delete(tx, key, REASON_REPLACED).await?;
    }
    let sql = format!(
        "INSERT INTO submission (student_id, verification_code, storage_key, \
         original_filename, content_type, size_bytes, md5, sha256, attempt, state, \
         created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'current', $10, $11) \
         ON CONFLICT (verification_code) DO NOTHING RETURNING {}",
        SUBMISSION_COLUMNS.replace("sub.", "")
    );
    let mut code = new.verification_code.clone();
    let row = loop {
        let row = sqlx::query(&sql)
            .bind(student_id)
            .bind(&code)
            .bind(&new.storage_key)
            .bind(&new.original_filename)
            .bind(&new.content_type)
            .bind(new.size_bytes)
            .bind(&new.md5)
            .bind(&new.sha256)
            .bind(uploads_used)
            .bind(time::now())
            .bind(&new.expires_at)
            .fetch_optional(&mut **tx)
            .await?;
        match row {
            Some(row) => break row,
            // Only the verification code can be taken: draw another.
            None => code = crate::domain::codes::new_verification_code(),
        }
    };
    let submission = SubmissionRow::from_row(&row)?.ok_or(sqlx::Error::RowNotFound)?;
    let actor = format!("student:{}", upload.nickname);
    if let Some((_, old_id)) = &replaced {
        events.push(AuditEntry::new(
            &actor,
            "upload.replaced",
            format!("submission:{old_id}"),
            serde_json::json!({"by": submission.id}),
        ));
    }
    events.push(AuditEntry::new(
        &actor,
        "upload.accepted",
        format!("submission:{}", submission.id),
        serde_json::json!({
            "student": upload.nickname,
            "attempt": submission.attempt,
            "original_filename": submission.original_filename,
            "size_bytes": submission.size_bytes,
            "sha256": submission.sha256,
        }),
    ));
    Ok(CommitOutcome::Accepted {
        submission: Box::new(submission),
        uploads_used,
        replaced_key: replaced.map(|(key, _)| key),
    })
}

async fn queue_delete(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    key: &str,
    reason: &str,
) -> sqlx::Result<()> {
    let now = time::now();
    sqlx::query(
        "INSERT INTO pending_delete (storage_key, reason, not_before, created_at) \
         VALUES ($1, $2, $3, $3) ON CONFLICT (storage_key) DO NOTHING",
    )
    .bind(key)
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
