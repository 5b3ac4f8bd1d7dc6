//! Student routes: upload, upload status, download URL.

use super::error::{ApiError, STORAGE_ERROR};
use super::schemas::{DownloadUrl, ErrorBody, UploadCompletionBody};
use super::{AppState, MULTIPART_OVERHEAD, RequestId};
use crate::depository::{DepositoryError, Spool, SpoolError, SpooledFile};
use axum::Json;
use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const ROUTE: &str = "/submissions/{upload_code}";
const EMPTY_FILE: &str = "Empty file";

/// The multipart body of an upload: one part named `file`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The answer file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Uploads the student's file, replacing the previous one.
#[utoipa::path(post, path = "/submissions/{upload_code}", tag = "student", params(("upload_code" = String, Path, description = "8 characters of A-Z0-9", pattern = "^[A-Z0-9]{8}$")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
    (status = 201, body = UploadCompletionBody),
    (status = 403, description = "outside the submission window", body = ErrorBody),
    (status = 404, description = "unknown upload code", body = ErrorBody),
    (status = 413, description = "file over the size limit", body = ErrorBody),
    (status = 422, description = "limit reached, no file or empty file", body = ErrorBody),
    (status = 429, description = "too many unknown codes from this client", body = ErrorBody),
    (status = 500, description = "storage failure", body = ErrorBody),
    (status = 503, description = "overloaded or database unavailable", body = ErrorBody)))]
pub async fn create_submission(
    State(state): State<AppState>,
    Path(upload_code): Path<String>,
    RequestId(request_id): RequestId,
    request: Request,
) -> Response {
    let mut unread = Some(request);
    let error = match upload(&state, &upload_code, request_id, &mut unread).await {
        Ok(created) => return created.into_response(),
        Err(error) => error,
    };
    // Refused before its body was read: read and discard the body (bounded) so the client
    // gets the answer instead of a connection reset; otherwise close the connection.
    let limit = state.depository.rules.max_submission_bytes + MULTIPART_OVERHEAD;
    let drained = match unread {
        Some(request) => drain(request.into_body(), limit).await,
        None => false,
    };
    let mut response = error.into_response();
    if !drained {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads and discards a body of at most `limit` bytes within a few seconds; false when it
/// is longer, slower or broken.
async fn drain(body: axum::body::Body, limit: u64) -> bool {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut seen = 0u64;
    let read_all = async {
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { return false };
            seen += chunk.len() as u64;
            if seen > limit {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read_all)
        .await
        .unwrap_or(false)
}

/// Receives and stores one upload. `request` is taken only when its body is read; left in
/// place, the caller may discard the body.
async fn upload(
    state: &AppState,
    upload_code: &str,
    request_id: Option<String>,
    unread: &mut Option<Request>,
) -> Result<(StatusCode, Json<UploadCompletionBody>), ApiError> {
    // The window is checked against the request's arrival, not the end of its body.
    let arrived_at = chrono::Utc::now();
    let metrics = &state.depository.metrics;
    let Ok(_receiving) = state.limits.uploads.try_acquire() else {
        metrics.upload("overloaded");
        return Err(ApiError::Overloaded);
    };
    metrics.uploads_in_flight.inc();
    let _in_flight = scopeguard(|| {
        metrics.uploads_in_flight.dec();
    });
    let depository = &state.depository;
    let result = async {
        let slot = depository.upload_slot(upload_code, arrived_at).await?;
        let max = depository.rules.max_submission_bytes;
        let Some(request) = unread.take_if(|r| {
            let declared = r
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            declared.is_none_or(|len| len <= max + MULTIPART_OVERHEAD)
        }) else {
            // Refused from its Content-Length alone: never read, and the connection closes.
            *unread = None;
            return Err(DepositoryError::TooLarge);
        };
        let received = receive_file(state, request).await;
        let result = match received {
            Ok((file, filename, content_type)) => {
                depository
                    .accept_upload(&slot, file, filename.as_deref(), content_type.as_deref())
                    .await
            }
            Err(error) => Err(error),
        };
        if result.is_err() {
            depository
                .audit_refusal(&slot.student, outcome(&result))
                .await;
        }
        result
    }
    .await;
    metrics.upload(outcome(&result));
    match result {
        Ok(completion) => {
            if let Some(submission) = &completion.last_submission {
                metrics
                    .bytes_stored
                    .inc_by(u64::try_from(submission.size_bytes).unwrap_or(0));
            }
            Ok((StatusCode::CREATED, Json((&completion).into())))
        }
        Err(DepositoryError::Storage(error)) => {
            let cause = error.to_string();
            if let Err(db_error) = depository
                .db
                .record_error(STORAGE_ERROR, &cause, Some(ROUTE), request_id.as_deref())
                .await
            {
                tracing::error!(%db_error, "could not record a storage error");
            }
            Err(ApiError::Storage(cause))
        }
        Err(other) => Err(state.api_error(other)),
    }
}

/// The metrics label of an upload's result.
fn outcome<T>(result: &Result<T, DepositoryError>) -> &'static str {
    match result {
        Ok(_) => "accepted",
        Err(DepositoryError::NotFound(_)) => "unknown_code",
        Err(DepositoryError::TooLarge) => "too_large",
        Err(DepositoryError::LimitReached) => "limit_reached",
        Err(DepositoryError::Unprocessable(m)) if m == EMPTY_FILE => "empty_file",
        Err(DepositoryError::Unprocessable(_)) => "no_file",
        Err(DepositoryError::Storage(_)) => "storage_error",
        Err(DepositoryError::Database(_)) => "database_error",
        Err(_) => "refused",
    }
}

/// Runs `f` when dropped (also when the client hangs up and the handler is cancelled).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

type Received = (SpooledFile, Option<String>, Option<String>);

/// Streams the `file` part into a spool file, enforcing the size limit as bytes arrive.
async fn receive_file(state: &AppState, request: Request) -> Result<Received, DepositoryError> {
    let no_file = || {
        DepositoryError::Unprocessable(
            "No file: send a multipart/form-data body with a part named 'file'".into(),
        )
    };
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|_| no_file())?;
    let depository = &state.depository;
    let mut received = None;
    while let Some(mut field) = multipart.next_field().await.map_err(body_error)? {
        if field.name() != Some("file") || received.is_some() {
            continue;
        }
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let mut spool = Spool::create(
            depository.store.spool_dir(),
            depository.rules.max_submission_bytes,
        )
        .await
        .map_err(spool_error)?;
        while let Some(chunk) = field.chunk().await.map_err(body_error)? {
            spool.write(chunk).await.map_err(spool_error)?;
        }
        if spool.size() == 0 {
            return Err(DepositoryError::Unprocessable(EMPTY_FILE.into()));
        }
        received = Some((
            spool.finish().await.map_err(spool_error)?,
            filename,
            content_type,
        ));
    }
    received.ok_or_else(no_file)
}

fn body_error(error: MultipartError) -> DepositoryError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        DepositoryError::TooLarge
    } else {
        DepositoryError::Unprocessable(format!("Malformed upload: {}", error.body_text()))
    }
}

fn spool_error(error: SpoolError) -> DepositoryError {
    match error {
        SpoolError::TooLarge => DepositoryError::TooLarge,
        SpoolError::Io(e) => DepositoryError::Storage(e.into()),
    }
}

/// How many attempts are left and the latest submission.
#[utoipa::path(get, path = "/submissions/{upload_code}", tag = "student", params(("upload_code" = String, Path, description = "8 characters of A-Z0-9", pattern = "^[A-Z0-9]{8}$")), responses(
    (status = 200, body = UploadCompletionBody),
    (status = 404, description = "unknown upload code", body = ErrorBody),
    (status = 429, description = "too many unknown codes from this client", body = ErrorBody),
    (status = 503, description = "database unavailable", body = ErrorBody)))]
pub async fn get_upload_status(
    State(state): State<AppState>,
    Path(upload_code): Path<String>,
) -> Result<Json<UploadCompletionBody>, ApiError> {
    let status = state
        .depository
        .upload_status(&upload_code)
        .await
        .map_err(|e| state.api_error(e))?;
    Ok(Json((&status).into()))
}

/// A download URL valid for `DOWNLOAD_URL_EXPIRES_SECONDS`.
#[utoipa::path(get, path = "/verifications/{verification_code}/download_url", tag = "student",
    params(("verification_code" = String, Path, description = "9 characters of a-z0-9", pattern = "^[a-z0-9]{9}$")),
    responses(
    (status = 200, body = DownloadUrl),
    (status = 404, description = "unknown verification code", body = ErrorBody),
    (status = 410, description = "replaced or expired", body = ErrorBody),
    (status = 429, description = "too many unknown codes from this client", body = ErrorBody),
    (status = 500, description = "storage failure", body = ErrorBody),
    (status = 503, description = "database unavailable", body = ErrorBody)))]
pub async fn get_download_url(
    State(state): State<AppState>,
    Path(verification_code): Path<String>,
) -> Result<Response, ApiError> {
    let link = state
        .depository
        .download_link(&verification_code)
        .await
        .map_err(|e| state.api_error(e))?;
    let mut response = Json(DownloadUrl::from(link)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
