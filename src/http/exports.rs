//! The examiner's ZIP export.

use super::AppState;
use super::auth::Examiner;
use super::error::ApiError;
use super::schemas::ErrorBody;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// Every student's current file as `<nickname>/<original file name>` plus `manifest.csv`
/// (nickname, first and last name, verification code, size, SHA-256, uploaded at), streamed.
#[utoipa::path(get, path = "/exports/submissions.zip", tag = "examiner",
    security(("bearer" = [])), responses(
    (status = 200, description = "the archive", content_type = "application/zip", body = Vec<u8>),
    (status = 401, body = ErrorBody),
    (status = 429, description = "too many wrong keys from this client", body = ErrorBody),
    (status = 503, description = "database unavailable", body = ErrorBody)))]
pub async fn export_submissions(
    _: Examiner,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let chunks = state
        .depository
        .export_archive()
        .await
        .map_err(|e| state.api_error(e))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"submissions.zip\""),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}
