//! Registering and looking up students.

use super::{Depository, DepositoryError};
use crate::db::{DbError, StudentWithSubmission, Totals};
use crate::domain::codes;
use crate::domain::student::StudentInput;

/// A page of the roster with the totals.
#[derive(Debug, Clone)]
pub struct StudentPage {
    /// Totals over the whole roster.
    pub totals: Totals,
    /// Students on this page, in registration order.
    pub students: Vec<StudentWithSubmission>,
}

const STUDENT_NOT_FOUND: &str = "Student not found";

impl Depository {
    /// Validates and registers a student with a fresh upload code.
    pub async fn register_student(
        &self,
        input: StudentInput,
    ) -> Result<StudentWithSubmission, DepositoryError> {
        let student = input.parse().map_err(DepositoryError::Invalid)?;
        loop {
            self.ensure_unique(&student.nickname, &student.email)
                .await?;
            match self
                .db
                .insert_student(&student, &codes::new_upload_code())
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
    pub async fn delete_student(&self, nickname: &str) -> Result<(), DepositoryError> {
        let keys = self
            .db
            .delete_student(nickname)
            .await?
            .ok_or(DepositoryError::NotFound(STUDENT_NOT_FOUND))?;
        for key in keys {
            self.delete_queued_object(&key).await;
        }
        Ok(())
    }
}
