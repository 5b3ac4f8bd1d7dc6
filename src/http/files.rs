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
use tokio_util::io::ReaderStream;

/// The signature part of a download link.
#[derive(Debug, Deserialize)]
pub struct SignedLink {
    expires: Option<i64>,
    signature: Option<String>,
}

/// Streams a stored file if its signed link is valid and unexpired.
pub async fn download_file(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(link): Query<SignedLink>,
) -> Result<Response, ApiError> {
    let Some(local) = &state.local_files else {
        return Err(ApiError::NotFound("Not Found"));
    };
    let (Some(expires), Some(signature)) = (link.expires, link.signature) else {
        return Err(ApiError::Forbidden("Invalid download link"));
    };
    let now = chrono::Utc::now().timestamp();
    local
        .signer()
        .verify(&key, expires, &signature, now)
        .map_err(|e| match e {
            VerifyError::BadSignature => ApiError::Forbidden("Invalid download link"),
            VerifyError::Expired => ApiError::Forbidden("Download link expired"),
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
        Body::from_stream(ReaderStream::new(file)),
    )
        .into_response())
}
