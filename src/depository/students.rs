//! Registering and looking up students.

use super::{Depository, DepositoryError};
use crate::db::{DbError, RosterLine, StudentWithSubmission, Totals};
use crate::domain::audit::AuditEntry;
use crate::domain::codes;
use crate::domain::roster::{LineError, parse_roster};
use crate::domain::student::FieldError;
use crate::domain::student::StudentInput;
use std::collections::HashSet;

/// A page of the roster with the totals.
#[derive(Debug, Clone)]
pub struct StudentPage {
    /// Totals over the whole roster.
    pub totals: Totals,
    /// Students on this page, in registration order.
    pub students: Vec<RosterLine>,
}

const STUDENT_NOT_FOUND: &str = "Student not found";

impl Depository {
    /// Validates and registers a student with a fresh upload code.
    pub async fn register_student(
        &self,
        input: StudentInput,
        actor: &str,
    ) -> Result<StudentWithSubmission, DepositoryError> {
        let student = input.parse().map_err(DepositoryError::Invalid)?;
        let audit = AuditEntry::new(
            actor,
            "student.created",
            format!("student:{}", student.nickname),
            serde_json::json!({"first_name": student.first_name, "last_name": student.last_name, "email": student.email}),
        );
        loop {
            self.ensure_unique(&student.nickname, &student.email)
                .await?;
            match self
                .db
                .insert_student(&student, &codes::new_upload_code(), &audit)
                .await
            {
                Ok(row) => return Ok((row, None)),
                // A racing registration or an upload-code collision: check again, retry.
                Err(DbError::Conflict) => continue,
                Err(other) => return Err(other.into()),
            }
        }
    }

    async fn ensure_unique(&self, nickname: &str, email: &str) -> Result<(), DepositoryError> {
        let message = match self.db.taken(nickname, email).await? {
            (false, false) => return Ok(()),
            (true, false) => "A student with this nickname already exists",
            (false, true) => "A student with this email already exists",
            (true, true) => "A student with this nickname and email already exists",
        };
        Err(DepositoryError::Unprocessable(message.into()))
    }

    /// Registers a whole CSV roster, all rows or none; every bad line is reported, including
    /// duplicates inside the file and with students already registered.
    pub async fn import_roster(
        &self,
        csv: &[u8],
        actor: &str,
    ) -> Result<Vec<StudentWithSubmission>, DepositoryError> {
        let entries = parse_roster(csv).map_err(DepositoryError::Roster)?;
        for _ in 0..3 {
            let taken = self.db.taken_identities().await?;
            let nicknames: HashSet<&str> = taken.iter().map(|(n, _)| n.as_str()).collect();
            let emails: HashSet<&str> = taken.iter().map(|(_, e)| e.as_str()).collect();
            let clashes: Vec<LineError> = entries
                .iter()
                .filter_map(|entry| {
                    let mut problems = Vec::new();
                    if nicknames.contains(entry.student.nickname.to_lowercase().as_str()) {
                        problems.push(format!(
                            "a student with nickname {:?} already exists",
                            entry.student.nickname
                        ));
                    }
                    if emails.contains(entry.student.email.to_lowercase().as_str()) {
                        problems.push(format!(
                            "a student with email {:?} already exists",
                            entry.student.email
                        ));
                    }
                    (!problems.is_empty()).then(|| LineError {
                        line: entry.line,
                        message: problems.join("; "),
                    })
                })
                .collect();
            if !clashes.is_empty() {
                return Err(DepositoryError::Roster(clashes));
            }
            let batch: Vec<_> = entries
                .iter()
                .map(|e| (e.student.clone(), codes::new_upload_code()))
                .collect();
            match self.db.insert_students(&batch, actor).await {
                Ok(rows) => return Ok(rows.into_iter().map(|row| (row, None)).collect()),
                // A concurrent registration or an upload-code collision: check again.
                Err(DbError::Conflict) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(DbError::Conflict.into())
    }

    /// Gives a student extra time after the close (0 to 7 days); returns the student.
    pub async fn set_extra_time(
        &self,
        nickname: &str,
        extra_seconds: i64,
        actor: &str,
    ) -> Result<StudentWithSubmission, DepositoryError> {
        const MAX: i64 = 7 * 24 * 3600;
        if !(0..=MAX).contains(&extra_seconds) {
            return Err(DepositoryError::Invalid(vec![FieldError {
                field: "extra_seconds",
                message: format!("must be between 0 and {MAX}"),
            }]));
        }
        let audit = AuditEntry::new(
            actor,
            "window.changed",
            format!("student:{nickname}"),
            serde_json::json!({"extra_seconds": extra_seconds}),
        );
        if !self
            .db
            .set_extra_seconds(nickname, extra_seconds, &audit)
            .await?
        {
            return Err(DepositoryError::NotFound(STUDENT_NOT_FOUND));
        }
        self.student(nickname).await
    }

    /// A page of the roster.
    pub async fn list_students(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<StudentPage, DepositoryError> {
        Ok(StudentPage {
            totals: self.db.totals().await?,
            students: self.db.list_students(limit, offset).await?,
        })
    }

    /// One student by nickname.
    pub async fn student(&self, nickname: &str) -> Result<StudentWithSubmission, DepositoryError> {
        self.db
            .student_by_nickname(nickname)
            .await?
            .ok_or(DepositoryError::NotFound(STUDENT_NOT_FOUND))
    }

    /// Deletes a student; their files are deleted now or by the sweeper.
    pub async fn delete_student(&self, nickname: &str, actor: &str) -> Result<(), DepositoryError> {
        let keys = self
            .db
            .delete_student(nickname, actor)
            .await?
            .ok_or(DepositoryError::NotFound(STUDENT_NOT_FOUND))?;
        for key in keys {
            self.delete_queued_object(&key).await;
        }
        Ok(())
    }
}
