//! Self-served downloads for the local store: `GET /files/{key}?expires=…&signature=…`.

use super::AppState;
use super::error::ApiError;
use crate::domain::filename::attachment_disposition;
use crate::storage::VerifyError;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// The signature part of a download link (documentation; parsed leniently below, so that a
/// malformed link is a 403 like any other bad link).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "documents the query string; `first` reads it")]
pub struct SignedLink {
    /// Unix time after which the link is refused.
    expires: Option<i64>,
    /// Lowercase hex HMAC-SHA256 of the key and `expires`.
    signature: Option<String>,
}

fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Streams a stored file if its signed link is valid and unexpired (local storage only;
/// links come from `/verifications/{verification_code}/download_url`).
#[utoipa::path(get, path = "/files/{key}", tag = "student",
    params(("key" = String, Path, description = "storage key"), SignedLink),
    responses(
    (status = 200, description = "the file, as an attachment", content_type = "application/octet-stream", body = Vec<u8>),
    (status = 403, description = "bad or expired link", body = super::schemas::ErrorBody),
    (status = 404, description = "no such file", body = super::schemas::ErrorBody),
    (status = 410, description = "replaced or expired", body = super::schemas::ErrorBody),
    (status = 500, description = "storage failure", body = super::schemas::ErrorBody),
    (status = 503, description = "database unavailable", body = super::schemas::ErrorBody)))]
pub async fn download_file(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(link): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let Some(local) = &state.local_files else {
        return Err(ApiError::NotFound("Not Found"));
    };
    let expires = first(&link, "expires").and_then(|e| e.parse::<i64>().ok());
    let (Some(expires), Some(signature)) = (expires, first(&link, "signature")) else {
        return Err(ApiError::Forbidden("Invalid download link".into()));
    };
    let now = chrono::Utc::now().timestamp();
    local
        .signer()
        .verify(&key, expires, signature, now)
        .map_err(|e| match e {
            VerifyError::BadSignature => ApiError::Forbidden("Invalid download link".into()),
            VerifyError::Expired => ApiError::Forbidden("Download link expired".into()),
        })?;
    let download = state
        .depository
        .local_download(&key)
        .await
        .map_err(|e| state.api_error(e))?;
    let (file, len) = local
        .open_file(&key)
        .await
        .map_err(|e| ApiError::Storage(e.to_string()))?;
    let submission = download.submission;
    let header_value = |v: &str| {
        HeaderValue::from_str(v)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
    };
    Ok((
        [
            (header::CONTENT_TYPE, header_value(&submission.content_type)),
            (
                header::CONTENT_DISPOSITION,
                header_value(&attachment_disposition(&submission.original_filename)),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(len)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox; default-src 'none'"),
            ),
        ],
        Body::from_stream(crate::storage::file_stream(file)),
    )
        .into_response())
}
