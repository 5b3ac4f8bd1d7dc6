//! Examiner routes for the roster.

use super::auth::Examiner;
use super::error::ApiError;
use super::schemas::{ErrorBody, Student, StudentList, StudentSummary, Totals};
use super::{AppJson, AppQuery, AppState};
use crate::domain::student::StudentInput;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

/// Paging of the roster.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Most students to return (1–10000, default 10000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
    /// Include each student's upload code (for printing slips).
    pub with_codes: Option<bool>,
    /// Students to skip (at most 1000000).
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u32>,
}

const MAX_PAGE: u32 = 10_000;
const MAX_OFFSET: u32 = 1_000_000;

/// The roster with totals, in registration order.
#[utoipa::path(get, path = "/students", tag = "examiner", params(Paging),
    security(("bearer" = [])), responses(
    (status = 200, body = StudentList),
    (status = 401, body = ErrorBody),
    (status = 422, body = ErrorBody),
    (status = 429, description = "too many wrong keys from this client", body = ErrorBody)))]
pub async fn list_students(
    _: Examiner,
    State(state): State<AppState>,
    AppQuery(paging): AppQuery<Paging>,
) -> Result<Json<StudentList>, ApiError> {
    let limit = paging.limit.unwrap_or(MAX_PAGE);
    let offset = paging.offset.unwrap_or(0);
    ApiError::check_query_range("limit", u64::from(limit), 1..=u64::from(MAX_PAGE))?;
    ApiError::check_query_range("offset", u64::from(offset), 0..=u64::from(MAX_OFFSET))?;
    let page = state
        .depository
        .list_students(i64::from(limit), i64::from(offset))
        .await
        .map_err(|e| state.api_error(e))?;
    Ok(Json(StudentList {
        totals: Totals {
            total_students: page.totals.total_students,
            total_submissions: page.totals.total_submissions,
        },
        students: page
            .students
            .into_iter()
            .map(|line| StudentSummary::new(line, paging.with_codes == Some(true)))
            .collect(),
    }))
}

/// One student with their upload code and latest submission.
#[utoipa::path(get, path = "/students/{nickname}", tag = "examiner", params(("nickname" = String, Path, description = "1 to 12 letters or digits", pattern = "^[A-Za-z0-9]{1,12}$")),
    security(("bearer" = [])), responses(
    (status = 200, body = Student),
    (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody),
    (status = 429, description = "too many wrong keys from this client", body = ErrorBody)))]
pub async fn get_student(
    _: Examiner,
    State(state): State<AppState>,
    Path(nickname): Path<String>,
) -> Result<Json<Student>, ApiError> {
    let (student, last) = state
        .depository
        .student(&nickname)
        .await
        .map_err(|e| state.api_error(e))?;
    Ok(Json(Student::new(&student, last.as_ref())))
}

/// Registers a student and gives them an upload code.
#[utoipa::path(post, path = "/students", tag = "examiner", request_body = StudentInput,
    security(("bearer" = [])), responses(
    (status = 201, body = Student),
    (status = 401, body = ErrorBody),
    (status = 413, body = ErrorBody),
    (status = 422, description = "invalid field or duplicate nickname/email", body = ErrorBody),
    (status = 429, description = "too many wrong keys from this client", body = ErrorBody)))]
pub async fn create_student(
    examiner: Examiner,
    State(state): State<AppState>,
    AppJson(input): AppJson<StudentInput>,
) -> Result<(StatusCode, Json<Student>), ApiError> {
    let (student, last) = state
        .depository
        .register_student(input, &examiner.key_name)
        .await
        .map_err(|e| state.api_error(e))?;
    Ok((
        StatusCode::CREATED,
        Json(Student::new(&student, last.as_ref())),
    ))
}

/// Deletes a student and their files.
#[utoipa::path(delete, path = "/students/{nickname}", tag = "examiner", params(("nickname" = String, Path, description = "1 to 12 letters or digits", pattern = "^[A-Za-z0-9]{1,12}$")),
    security(("bearer" = [])), responses(
    (status = 204, description = "deleted"),
    (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody),
    (status = 429, description = "too many wrong keys from this client", body = ErrorBody)))]
pub async fn delete_student(
    examiner: Examiner,
    State(state): State<AppState>,
    Path(nickname): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .depository
        .delete_student(&nickname, &examiner.key_name)
        .await
        .map_err(|e| state.api_error(e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Students created by an import.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ImportResult {
    /// The new students, in file order, with their upload codes.
    pub created: Vec<Student>,
}

/// Largest roster file.
pub const ROSTER_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Registers every student of a CSV roster, or none: header
/// `nickname,first_name,last_name,email`; a 422 names every bad line.
#[utoipa::path(post, path = "/students/import", tag = "examiner",
    request_body(content = String, content_type = "text/csv",
        description = "CSV with the header nickname,first_name,last_name,email"),
    security(("bearer" = [])), responses(
    (status = 201, body = ImportResult),
    (status = 401, body = ErrorBody),
    (status = 413, body = ErrorBody),
    (status = 422, description = "bad lines: `[{\"line\": n, \"message\": …}]`; nothing imported", body = ErrorBody),
    (status = 429, description = "too many wrong keys from this client", body = ErrorBody)))]
pub async fn import_students(
    examiner: Examiner,
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ImportResult>), ApiError> {
    let created = state
        .depository
        .import_roster(&body, &examiner.key_name)
        .await
        .map_err(|e| state.api_error(e))?;
    Ok((
        StatusCode::CREATED,
        Json(ImportResult {
            created: created
                .iter()
                .map(|(student, last)| Student::new(student, last.as_ref()))
                .collect(),
        }),
    ))
}

/// A change to a student: extra time after the close.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct StudentUpdate {
    /// Seconds after `SUBMISSIONS_CLOSE_AT` this student may still upload (0 to 604800).
    #[schema(minimum = 0, maximum = 604800)]
    pub extra_seconds: i64,
}

/// Gives a student extra time (an extension of the submission window).
#[utoipa::path(patch, path = "/students/{nickname}", tag = "examiner",
    params(("nickname" = String, Path, description = "1 to 12 letters or digits", pattern = "^[A-Za-z0-9]{1,12}$")),
    request_body = StudentUpdate, security(("bearer" = [])), responses(
    (status = 200, body = Student),
    (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody),
    (status = 422, body = ErrorBody),
    (status = 429, description = "too many wrong keys from this client", body = ErrorBody)))]
pub async fn update_student(
    examiner: Examiner,
    State(state): State<AppState>,
    Path(nickname): Path<String>,
    AppJson(update): AppJson<StudentUpdate>,
) -> Result<Json<Student>, ApiError> {
    let (student, last) = state
        .depository
        .set_extra_time(&nickname, update.extra_seconds, &examiner.key_name)
        .await
        .map_err(|e| state.api_error(e))?;
    Ok(Json(Student::new(&student, last.as_ref())))
}
