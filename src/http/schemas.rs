//! Response bodies: the original API's shapes, plus additive fields.

use crate::db::{RosterLine, StudentRow, SubmissionRow};
use crate::depository::{DownloadLink, UploadCompletion};
use serde::Serialize;
use utoipa::ToSchema;

/// An accepted upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct Submission {
    /// Name of the stored object (random, not the student's file name).
    pub file_name: String,
    /// Lowercase hex MD5 of the stored bytes.
    pub md5: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Code that unlocks the download URL.
    pub verification_code: String,
    /// Upload time, RFC 3339 UTC.
    pub created_at: String,
    /// Lowercase hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// The file name the student's browser sent, sanitised.
    pub original_filename: String,
    /// Content type stored with the file.
    pub content_type: String,
    /// When retention deletes the file, RFC 3339 UTC.
    pub expires_at: String,
    /// 1 for the student's first accepted upload, and so on.
    pub attempt: i64,
}

/// An accepted upload as the student sees it (no stored object name).
#[derive(Debug, Serialize, ToSchema)]
pub struct SubmissionReceipt {
    /// Lowercase hex MD5 of the stored bytes.
    pub md5: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Code that unlocks the download URL.
    pub verification_code: String,
    /// Upload time, RFC 3339 UTC.
    pub created_at: String,
    /// Lowercase hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// The file name the student's browser sent, sanitised.
    pub original_filename: String,
    /// Content type stored with the file.
    pub content_type: String,
    /// When retention deletes the file, RFC 3339 UTC.
    pub expires_at: String,
    /// 1 for the student's first accepted upload, and so on.
    pub attempt: i64,
}

/// A registered student.
#[derive(Debug, Serialize, ToSchema)]
pub struct Student {
    /// Registration order.
    pub id: i64,
    /// Unique nickname.
    pub nickname: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// E-mail address.
    pub email: String,
    /// The student's secret upload code.
    pub upload_code: String,
    /// Whether the student has uploaded.
    pub has_submission: bool,
    /// The latest accepted upload.
    pub last_submission: Option<Submission>,
    /// Registration time, RFC 3339 UTC.
    pub created_at: String,
    /// Accepted uploads so far.
    pub uploads_used: i64,
    /// Extra time after the close, in seconds.
    pub extra_seconds: i64,
}

/// The latest submission in a roster line.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubmissionRef {
    /// Upload time, RFC 3339 UTC.
    pub created_at: String,
    /// Its verification code.
    pub verification_code: String,
}

/// A roster line.
#[derive(Debug, Serialize, ToSchema)]
pub struct StudentSummary {
    /// Unique nickname.
    pub nickname: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Whether the student has uploaded.
    pub has_submission: bool,
    /// The latest accepted upload.
    pub last_submission: Option<SubmissionRef>,
    /// Accepted uploads so far.
    pub uploads_used: i64,
    /// The upload code, only with `?with_codes=true` (for printing slips).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_code: Option<String>,
}

/// Roster totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct Totals {
    /// Registered students.
    pub total_students: i64,
    /// Students with at least one submission.
    pub total_submissions: i64,
}

/// The roster.
#[derive(Debug, Serialize, ToSchema)]
pub struct StudentList {
    /// Totals over all students.
    pub totals: Totals,
    /// Students in registration order.
    pub students: Vec<StudentSummary>,
}

/// Who an upload code belongs to (shown on the student page).
#[derive(Debug, Serialize, ToSchema)]
pub struct StudentIdentity {
    /// Nickname.
    pub nickname: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
}

/// When a student may upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowBody {
    /// Uploads before this are refused (null: no start).
    pub opens_at: Option<String>,
    /// Uploads from this instant are refused, extra time included (null: no end).
    pub closes_at: Option<String>,
    /// The server's clock now, to compare with.
    pub server_time: String,
}

/// A student's upload status.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadCompletionBody {
    /// The submission window.
    pub window: WindowBody,
    /// When download URLs were issued for the current submission (times only).
    pub download_urls_issued_at: Vec<String>,
    /// The student the code belongs to.
    pub student: StudentIdentity,
    /// Attempts left.
    pub uploads_available: i64,
    /// Whether the student has uploaded.
    pub has_submission: bool,
    /// The latest accepted upload.
    pub last_submission: Option<SubmissionReceipt>,
}

/// A short-lived download URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct DownloadUrl {
    /// The URL.
    pub download_url: String,
    /// Seconds it stays valid.
    pub expires_seconds: u64,
}

/// The demo examiner token.
#[derive(Debug, Serialize, ToSchema)]
pub struct Token {
    /// An examiner API key.
    pub token: String,
}

/// An error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A human-readable message, or a list of field errors on validation failures.
    pub detail: Detail,
}

/// The `detail` of an error.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Detail {
    /// A message.
    Message(String),
    /// Field errors (validation).
    Fields(Vec<FieldErrorBody>),
    /// Bad lines of an imported roster.
    Lines(Vec<crate::domain::roster::LineError>),
}

/// One invalid field, in FastAPI's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldErrorBody {
    /// Where: `["body", field]`, `["body"]` or `["query"]`.
    pub loc: Vec<String>,
    /// Why.
    pub msg: String,
    /// `value_error` or `json_invalid`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Liveness or readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: &'static str,
}

impl From<&SubmissionRow> for Submission {
    fn from(s: &SubmissionRow) -> Self {
        Self {
            file_name: s.storage_key.clone(),
            md5: s.md5.clone(),
            size_bytes: s.size_bytes,
            verification_code: s.verification_code.clone(),
            created_at: s.created_at.clone(),
            sha256: s.sha256.clone(),
            original_filename: s.original_filename.clone(),
            content_type: s.content_type.clone(),
            expires_at: s.expires_at.clone(),
            attempt: s.attempt,
        }
    }
}

impl From<&SubmissionRow> for SubmissionReceipt {
    fn from(s: &SubmissionRow) -> Self {
        let Submission {
            md5,
            size_bytes,
            verification_code,
            created_at,
            sha256,
            original_filename,
            content_type,
            expires_at,
            attempt,
            ..
        } = Submission::from(s);
        Self {
            md5,
            size_bytes,
            verification_code,
            created_at,
            sha256,
            original_filename,
            content_type,
            expires_at,
            attempt,
        }
    }
}

impl Student {
    /// The full view of a student.
    pub fn new(student: &StudentRow, last: Option<&SubmissionRow>) -> Self {
        Self {
            id: student.id,
            nickname: student.nickname.clone(),
            first_name: student.first_name.clone(),
            last_name: student.last_name.clone(),
            email: student.email.clone(),
            upload_code: student.upload_code.clone(),
            has_submission: last.is_some(),
            last_submission: last.map(Submission::from),
            created_at: student.created_at.clone(),
            uploads_used: student.uploads_used,
            extra_seconds: student.extra_seconds,
        }
    }
}

impl StudentSummary {
    /// A roster line, with the upload code if asked for.
    pub fn new(line: RosterLine, with_code: bool) -> Self {
        Self {
            nickname: line.nickname,
            first_name: line.first_name,
            last_name: line.last_name,
            has_submission: line.latest.is_some(),
            last_submission: line.latest.map(|s| SubmissionRef {
                created_at: s.created_at,
                verification_code: s.verification_code,
            }),
            uploads_used: line.uploads_used,
            upload_code: with_code.then_some(line.upload_code),
        }
    }
}

impl From<&UploadCompletion> for UploadCompletionBody {
    fn from(c: &UploadCompletion) -> Self {
        Self {
            window: WindowBody {
                opens_at: c.window.0.clone(),
                closes_at: c.window.1.clone(),
                server_time: crate::domain::time::now(),
            },
            download_urls_issued_at: c.downloads.clone(),
            student: StudentIdentity {
                nickname: c.student.nickname.clone(),
                first_name: c.student.first_name.clone(),
                last_name: c.student.last_name.clone(),
            },
            uploads_available: c.uploads_available,
            has_submission: c.last_submission.is_some(),
            last_submission: c.last_submission.as_ref().map(SubmissionReceipt::from),
        }
    }
}

impl From<DownloadLink> for DownloadUrl {
    fn from(link: DownloadLink) -> Self {
        Self {
            download_url: link.url,
            expires_seconds: link.expires_seconds,
        }
    }
}
