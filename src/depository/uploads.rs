//! Uploading a submission and handing out download links.
//!
//! The order that makes a 201 durable and leaves no orphans (SPEC section 3):
//! 1. the body is spooled and hashed locally (nothing in storage or the database yet);
//! 2. a fresh random key is *reserved* in `pending_delete`, so a crash from here on leaves a
//!    record the sweeper acts on once the reservation's lease runs out;
//! 3. the object is written under that key;
//! 4. one transaction takes an attempt (conditional update), retires the previous file into
//!    `pending_delete`, inserts the submission and drops the reservation;
//! 5. the answer is sent, and the previous object is deleted in the background (the sweeper
//!    retries if that fails).

use super::{Depository, DepositoryError, SpooledFile};
use crate::db::{
    BatchOp, CommitOutcome, NewSubmission, StudentRow, SubmissionRow, SubmissionState, UploadCommit,
};
use crate::domain::audit::AuditEntry;
use crate::domain::window::OutsideWindow;
use crate::domain::{codes, filename, time};
use crate::receipts::Receipt;
use crate::storage::ObjectHeaders;

/// A student who may upload, found before the body is read.
#[derive(Debug, Clone)]
pub struct UploadSlot {
    /// The student.
    pub student: StudentRow,
}

/// What a student sees after uploading, and on `GET /submissions/{code}`.
#[derive(Debug, Clone)]
pub struct UploadCompletion {
    /// The student.
    pub student: StudentRow,
    /// When the student's window opens and closes (their extra time included).
    pub window: (Option<String>, Option<String>),
    /// When download URLs were issued for the current submission.
    pub downloads: Vec<String>,
    /// Attempts left.
    pub uploads_available: i64,
    /// The latest accepted submission.
    pub last_submission: Option<SubmissionRow>,
}

/// A download URL and how long it works.
#[derive(Debug, Clone)]
pub struct DownloadLink {
    /// The URL.
    pub url: String,
    /// Seconds it stays valid.
    pub expires_seconds: u64,
}

/// A file the app serves itself (local store).
#[derive(Debug, Clone)]
pub struct LocalDownload {
    /// Its submission.
    pub submission: SubmissionRow,
}

const UPLOAD_NOT_FOUND: &str = "Upload code not found";
const VERIFICATION_NOT_FOUND: &str = "Verification code not found";

impl Depository {
    /// The student behind an upload code, if they have an attempt left. Checked before the
    /// body is read.
    pub async fn upload_slot(
        &self,
        upload_code: &str,
        arrived_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<UploadSlot, DepositoryError> {
        let student = self.student_for_code(upload_code).await?.0;
        if let Err(outside) = self.rules.window.check(student.extra_seconds, arrived_at) {
            let (reason, message) = match outside {
                OutsideWindow::NotYetOpen(at) => (
                    "window_not_open",
                    format!("Submissions open at {}", time::format(at)),
                ),
                OutsideWindow::Closed(at) => (
                    "window_closed",
                    format!("Submissions closed at {}", time::format(at)),
                ),
            };
            self.audit_refusal(&student, reason).await;
            return Err(DepositoryError::Forbidden(message));
        }
        if student.uploads_used >= self.rules.submissions_per_student {
            self.audit_refusal(&student, "limit_reached").await;
            return Err(DepositoryError::LimitReached);
        }
        Ok(UploadSlot { student })
    }

    /// Records a refused upload of a known student (unknown codes are not recorded, so
    /// guessing cannot flood the log).
    pub async fn audit_refusal(&self, student: &StudentRow, reason: &str) {
        let entry = AuditEntry::new(
            format!("student:{}", student.nickname),
            "upload.refused",
            format!("student:{}", student.nickname),
            serde_json::json!({"reason": reason}),
        );
        if let Err(error) = self.group.submit(BatchOp::Audit(entry)).await {
            tracing::warn!(%error, "could not record a refused upload in the audit log");
        }
    }

    /// The student's window, formatted, their extra time included.
    fn window_of(&self, student: &StudentRow) -> (Option<String>, Option<String>) {
        let window = &self.rules.window;
        (
            window.opens_at.map(time::format),
            window.closes_for(student.extra_seconds).map(time::format),
        )
    }

    /// The student's upload status.
    pub async fn upload_status(
        &self,
        upload_code: &str,
    ) -> Result<UploadCompletion, DepositoryError> {
        let (student, last_submission) = self.student_for_code(upload_code).await?;
        let downloads = match &last_submission {
            Some(s) if s.state == SubmissionState::Current => self.db.download_times(s.id).await?,
            _ => Vec::new(),
        };
        Ok(UploadCompletion {
            uploads_available: self.uploads_left(student.uploads_used),
            window: self.window_of(&student),
            downloads,
            last_submission,
            student,
        })
    }

    async fn student_for_code(
        &self,
        upload_code: &str,
    ) -> Result<(StudentRow, Option<SubmissionRow>), DepositoryError> {
        if !codes::looks_like_upload_code(upload_code) {
            return Err(DepositoryError::NotFound(UPLOAD_NOT_FOUND));
        }
        self.db
            .student_by_upload_code(upload_code)
            .await?
            .ok_or(DepositoryError::NotFound(UPLOAD_NOT_FOUND))
    }

    fn uploads_left(&self, used: i64) -> i64 {
        (self.rules.submissions_per_student - used).max(0)
    }

    /// Stores a received file and records it as the student's current submission.
    pub async fn accept_upload(
        &self,
        slot: &UploadSlot,
        file: SpooledFile,
        raw_filename: Option<&str>,
        raw_content_type: Option<&str>,
    ) -> Result<UploadCompletion, DepositoryError> {
        let original_filename = filename::sanitize_filename(raw_filename.unwrap_or_default());
        let headers = ObjectHeaders {
            content_type: filename::sanitize_content_type(raw_content_type),
            content_disposition: filename::attachment_disposition(&original_filename),
        };
        let key = codes::new_storage_key();
        self.group
            .submit(BatchOp::Reserve {
                key: key.clone(),
                lease_until: time::from_now(self.reservation_lease()),
            })
            .await?;
        if let Err(error) = self
            .store
            .put_file(&key, file.path(), file.size, &headers)
            .await
        {
            // A timed-out PUT may still land: leave the key to the sweeper, after the
            // storage timeout, rather than deleting it now and racing the PUT.
            let retry_at = time::from_now(self.rules.storage_timeout);
            if let Err(db_error) = self
                .db
                .deletion_failed(&key, "upload failed", &retry_at)
                .await
            {
                tracing::warn!(%db_error, "could not reschedule a failed upload's object");
            }
            return Err(error.into());
        }
        let upload = UploadCommit {
            student_id: slot.student.id,
            nickname: slot.student.nickname.clone(),
            limit: self.rules.submissions_per_student,
            new: NewSubmission {
                verification_code: codes::new_verification_code(),
                storage_key: key.clone(),
                original_filename,
                content_type: headers.content_type,
                size_bytes: i64::try_from(file.size).unwrap_or(i64::MAX),
                md5: file.md5.clone(),
                sha256: file.sha256.clone(),
                expires_at: time::from_now(self.rules.retention),
            },
        };
        // On an error the outcome is unknown (the commit may have landed): the reservation
        // stays, so the object survives if it did and the sweeper removes it if it did not.
        let outcome = self.group.commit_upload(upload).await?;
        match outcome {
            CommitOutcome::Accepted {
                submission,
                uploads_used,
                replaced_key,
            } => {
                if let Some(old) = replaced_key {
                    let this = self.clone();
                    tokio::spawn(async move { this.delete_queued_object(&old).await });
                }
                Ok(UploadCompletion {
                    window: self.window_of(&slot.student),
                    downloads: Vec::new(),
                    student: slot.student.clone(),
                    uploads_available: self.uploads_left(uploads_used),
                    last_submission: Some(*submission),
                })
            }
            CommitOutcome::LimitReached => {
                self.discard_object(&key).await;
                Err(DepositoryError::LimitReached)
            }
            CommitOutcome::StudentGone => {
                self.discard_object(&key).await;
                Err(DepositoryError::NotFound(UPLOAD_NOT_FOUND))
            }
            CommitOutcome::ReservationLost => Err(DepositoryError::Storage(
                crate::storage::StorageError::Other("upload overran its reservation".into()),
            )),
        }
    }

    /// Removes an object of a failed upload now; if that fails, the sweeper will.
    async fn discard_object(&self, key: &str) {
        if self.store.delete(key).await.is_ok() && self.db.deletion_done(key).await.is_ok() {
            return;
        }
        if let Err(error) = self.db.abandon_key(key).await {
            tracing::warn!(%error, "could not mark a failed upload's object for the sweeper");
        }
    }

    /// Deletes an object already queued in `pending_delete`; on failure it stays queued.
    pub(crate) async fn delete_queued_object(&self, key: &str) {
        match self.store.delete(key).await {
            Ok(()) => {
                if let Err(error) = self.db.deletion_done(key).await {
                    tracing::warn!(%error, "deleted an object but could not dequeue it");
                }
            }
            Err(error) => tracing::warn!(%error, "object deletion failed; the sweeper retries"),
        }
    }

    /// A short-lived download URL for the submission behind a verification code.
    pub async fn download_link(&self, code: &str) -> Result<DownloadLink, DepositoryError> {
        if !codes::looks_like_verification_code(code) {
            return Err(DepositoryError::NotFound(VERIFICATION_NOT_FOUND));
        }
        let ttl = self.rules.download_url_expires;
        // A disclosure: looked up and recorded in one transaction (shared with other
        // requests' writes) before the link is made, or no link.
        let event = AuditEntry::new(
            "verification-code holder",
            "download_url.issued",
            String::new(),
            serde_json::json!({"expires_seconds": ttl.as_secs()}),
        );
        let submission = self
            .group
            .disclose(code, event)
            .await?
            .ok_or(DepositoryError::NotFound(VERIFICATION_NOT_FOUND))?;
        ensure_downloadable(&submission)?;
        let url = self
            .store
            .download_url(&submission.storage_key, ttl)
            .await?;
        Ok(DownloadLink {
            url,
            expires_seconds: ttl.as_secs(),
        })
    }

    /// The signed receipt of the submission behind a verification code (also once replaced
    /// or expired: it proves what was accepted).
    pub async fn receipt(&self, code: &str) -> Result<Receipt, DepositoryError> {
        if !codes::looks_like_verification_code(code) {
            return Err(DepositoryError::NotFound(VERIFICATION_NOT_FOUND));
        }
        let submission = self
            .db
            .submission_by_verification_code(code)
            .await?
            .ok_or(DepositoryError::NotFound(VERIFICATION_NOT_FOUND))?;
        let nickname = self
            .db
            .student_nickname(submission.student_id)
            .await?
            .ok_or(DepositoryError::NotFound(VERIFICATION_NOT_FOUND))?;
        let signer = self
            .receipts
            .as_ref()
            .ok_or(DepositoryError::NotFound("Receipts are not configured"))?;
        Ok(signer.sign(Receipt {
            nickname,
            verification_code: submission.verification_code,
            original_filename: submission.original_filename,
            size_bytes: submission.size_bytes,
            sha256: submission.sha256,
            accepted_at: submission.created_at,
            attempt: submission.attempt,
            service_url: self.rules.service_url.clone(),
            public_key: String::new(),
            field_signatures: Default::default(),
            signature: String::new(),
        }))
    }

    /// The submission behind a signed local download link, if still downloadable.
    pub async fn local_download(&self, key: &str) -> Result<LocalDownload, DepositoryError> {
        const NOT_FOUND: &str = "File not found";
        if !codes::looks_like_storage_key(key) {
            return Err(DepositoryError::NotFound(NOT_FOUND));
        }
        let submission = self
            .db
            .submission_by_storage_key(key)
            .await?
            .ok_or(DepositoryError::NotFound(NOT_FOUND))?;
        ensure_downloadable(&submission)?;
        Ok(LocalDownload { submission })
    }
}

fn ensure_downloadable(submission: &SubmissionRow) -> Result<(), DepositoryError> {
    if submission.is_downloadable_at(&time::now()) {
        return Ok(());
    }
    Err(DepositoryError::Gone(match submission.state {
        SubmissionState::Replaced => "This submission was replaced by a newer one",
        SubmissionState::Current | SubmissionState::Expired => "This submission has expired",
    }))
}
