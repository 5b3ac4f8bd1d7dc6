//! Rows as the rest of the service sees them.

use sqlx::Row;
use sqlx::any::AnyRow;

/// A registered student.
#[derive(Debug, Clone)]
pub struct StudentRow {
    /// Primary key, in registration order.
    pub id: i64,
    /// Unique nickname.
    pub nickname: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// E-mail address.
    pub email: String,
    /// Secret code for uploading.
    pub upload_code: String,
    /// Accepted uploads so far.
    pub uploads_used: i64,
    /// Registration time (RFC 3339).
    pub created_at: String,
    /// Extra time after the close, in seconds.
    pub extra_seconds: i64,
}

/// One accepted upload.
#[derive(Debug, Clone)]
pub struct SubmissionRow {
    /// Primary key.
    pub id: i64,
    /// Owner.
    pub student_id: i64,
    /// Code that unlocks the download URL.
    pub verification_code: String,
    /// Random object key in storage.
    pub storage_key: String,
    /// Sanitised name the student's browser sent.
    pub original_filename: String,
    /// Sanitised content type.
    pub content_type: String,
    /// Exact size in bytes.
    pub size_bytes: i64,
    /// Lowercase hex MD5 of the stored bytes.
    pub md5: String,
    /// Lowercase hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// 1 for the first accepted upload, and so on.
    pub attempt: i64,
    /// `current`, `replaced` or `expired`.
    pub state: SubmissionState,
    /// Upload time (RFC 3339).
    pub created_at: String,
    /// When retention deletes the file (RFC 3339).
    pub expires_at: String,
}

/// Where a submission is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmissionState {
    /// The student's file, downloadable.
    Current,
    /// A later upload took its place; the file is deleted.
    Replaced,
    /// Retention deleted the file.
    Expired,
}

impl SubmissionRow {
    /// Whether its file can be downloaded at `now` (RFC 3339): current and not yet expired.
    pub fn is_downloadable_at(&self, now: &str) -> bool {
        self.state == SubmissionState::Current && self.expires_at.as_str() > now
    }
}

impl SubmissionState {
    fn parse(s: &str) -> Self {
        match s {
            "current" => Self::Current,
            "replaced" => Self::Replaced,
            _ => Self::Expired,
        }
    }
}

/// A line of the roster: what `GET /students` and `students list` show of a student.
#[derive(Debug, Clone)]
pub struct RosterLine {
    /// Nickname.
    pub nickname: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// E-mail address.
    pub email: String,
    /// The student's upload code.
    pub upload_code: String,
    /// Accepted uploads so far.
    pub uploads_used: i64,
    /// The latest accepted submission, if any.
    pub latest: Option<LatestSubmission>,
}

/// The latest submission as the roster shows it.
#[derive(Debug, Clone)]
pub struct LatestSubmission {
    /// Its verification code.
    pub verification_code: String,
    /// When it was accepted.
    pub created_at: String,
}

/// Columns of a roster line, in the order [`RosterLine::from_row`] reads them.
pub(crate) const ROSTER_COLUMNS: &str = "s.nickname, s.first_name, s.last_name, s.email, \
     s.upload_code, s.uploads_used, sub.verification_code, sub.created_at AS sub_created_at";

impl RosterLine {
    /// Decodes [`ROSTER_COLUMNS`] by position (the roster is the one large result set).
    pub(crate) fn from_row(row: &AnyRow) -> sqlx::Result<Self> {
        let verification_code: Option<String> = row.try_get(6)?;
        let created_at: Option<String> = row.try_get(7)?;
        Ok(Self {
            nickname: row.try_get(0)?,
            first_name: row.try_get(1)?,
            last_name: row.try_get(2)?,
            email: row.try_get(3)?,
            upload_code: row.try_get(4)?,
            uploads_used: row.try_get(5)?,
            latest: verification_code
                .zip(created_at)
                .map(|(verification_code, created_at)| LatestSubmission {
                    verification_code,
                    created_at,
                }),
        })
    }
}

/// An accepted upload about to be recorded.
#[derive(Debug, Clone)]
pub struct NewSubmission {
    /// Code that will unlock the download URL.
    pub verification_code: String,
    /// Where the bytes are.
    pub storage_key: String,
    /// Sanitised original file name.
    pub original_filename: String,
    /// Sanitised content type.
    pub content_type: String,
    /// Exact size in bytes.
    pub size_bytes: i64,
    /// Lowercase hex MD5.
    pub md5: String,
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// Retention deadline (RFC 3339).
    pub expires_at: String,
}

/// A row of the `errors` table.
#[derive(Debug, Clone)]
pub struct ErrorRow {
    /// Primary key.
    pub id: i64,
    /// The message the client saw.
    pub detail: String,
    /// The internal cause, for operators.
    pub cause: Option<String>,
    /// Route template.
    pub route: Option<String>,
    /// `x-request-id` of the failed request.
    pub request_id: Option<String>,
    /// When (RFC 3339).
    pub created_at: String,
}

pub(crate) const STUDENT_COLUMNS: &str = "s.student_id, s.nickname, s.first_name, s.last_name, \
     s.email, s.upload_code, s.uploads_used, s.created_at, s.extra_seconds";

pub(crate) const SUBMISSION_COLUMNS: &str = "sub.submission_id, sub.student_id AS sub_student_id, \
     sub.verification_code, sub.storage_key, sub.original_filename, sub.content_type, \
     sub.size_bytes, sub.md5, sub.sha256, sub.attempt, sub.state, \
     sub.created_at AS sub_created_at, sub.expires_at";

impl StudentRow {
    pub(crate) fn from_row(row: &AnyRow) -> sqlx::Result<Self> {
        Ok(Self {
            id: row.try_get("student_id")?,
            nickname: row.try_get("nickname")?,
            first_name: row.try_get("first_name")?,
            last_name: row.try_get("last_name")?,
            email: row.try_get("email")?,
            upload_code: row.try_get("upload_code")?,
            uploads_used: row.try_get("uploads_used")?,
            created_at: row.try_get("created_at")?,
            extra_seconds: row.try_get("extra_seconds")?,
        })
    }
}

impl SubmissionRow {
    /// Decodes the columns of [`SUBMISSION_COLUMNS`]; `None` when a LEFT JOIN found none.
    pub(crate) fn from_row(row: &AnyRow) -> sqlx::Result<Option<Self>> {
        let Some(id) = row.try_get::<Option<i64>, _>("submission_id")? else {
            return Ok(None);
        };
        let state: String = row.try_get("state")?;
        Ok(Some(Self {
            id,
            student_id: row.try_get("sub_student_id")?,
            verification_code: row.try_get("verification_code")?,
            storage_key: row.try_get("storage_key")?,
            original_filename: row.try_get("original_filename")?,
            content_type: row.try_get("content_type")?,
            size_bytes: row.try_get("size_bytes")?,
            md5: row.try_get("md5")?,
            sha256: row.try_get("sha256")?,
            attempt: row.try_get("attempt")?,
            state: SubmissionState::parse(&state),
            created_at: row.try_get("sub_created_at")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{SubmissionRow, SubmissionState};

    fn submission(state: SubmissionState, expires_at: &str) -> SubmissionRow {
        SubmissionRow {
            id: 1,
            student_id: 1,
            verification_code: "abcdefghj".into(),
            storage_key: "key".into(),
            original_filename: "a.pdf".into(),
            content_type: "application/pdf".into(),
            size_bytes: 1,
            md5: String::new(),
            sha256: String::new(),
            attempt: 1,
            state,
            created_at: "2026-12-01T10:00:00.000Z".into(),
            expires_at: expires_at.into(),
        }
    }

    #[test]
    fn downloadable_while_current_and_before_expiry() {
        let now = "2026-12-02T10:00:00.000Z";
        let later = "2026-12-02T10:00:00.001Z";
        assert!(submission(SubmissionState::Current, later).is_downloadable_at(now));
        assert!(!submission(SubmissionState::Current, now).is_downloadable_at(now));
        assert!(!submission(SubmissionState::Replaced, later).is_downloadable_at(now));
        assert!(!submission(SubmissionState::Expired, later).is_downloadable_at(now));
    }
}
