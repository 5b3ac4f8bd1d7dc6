//! One error type for every route, rendered as the original API's `{"detail": …}` body.
//! Server-side failures answer a fixed message and are logged here, never shown.

use crate::depository::DepositoryError;
use crate::domain::student::FieldError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The message a storage failure answers with (SPEC section 2).
pub const STORAGE_ERROR: &str = "Submission Storage Error";

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401 with `WWW-Authenticate: Bearer`, whatever was wrong with the key.
    #[error("not authenticated")]
    Unauthorized,
    /// 403 with a message.
    #[error("{0}")]
    Forbidden(String),
    /// 404 with a message.
    #[error("{0}")]
    NotFound(&'static str),
    /// 410 with a message.
    #[error("{0}")]
    Gone(&'static str),
    /// 413.
    #[error("file too large")]
    PayloadTooLarge {
        /// The limit, for the message.
        limit: u64,
    },
    /// 422 with a message.
    #[error("{0}")]
    Unprocessable(String),
    /// 422 with a FastAPI-style list of field errors.
    #[error("invalid fields")]
    Validation(Vec<serde_json::Value>),
    /// 429 with `Retry-After`.
    #[error("too many requests")]
    TooManyRequests {
        /// When the client may try again.
        retry_after: std::time::Duration,
    },
    /// 503 with `Retry-After`: too many uploads in flight.
    #[error("overloaded")]
    Overloaded,
    /// 500 `Submission Storage Error`.
    #[error("storage failure: {0}")]
    Storage(String),
    /// 503: the database did not answer.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// 500 for anything else.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Field errors in FastAPI's shape: `{"loc": ["body", field], "msg": …, "type": …}`.
    pub fn from_fields(errors: &[FieldError]) -> Self {
        Self::Validation(
            errors
                .iter()
                .map(|e| json!({"loc": ["body", e.field], "msg": e.message, "type": "value_error"}))
                .collect(),
        )
    }

    /// A 422 naming the query parameter when `value` is outside `range`.
    pub fn check_query_range(
        name: &str,
        value: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<(), Self> {
        if range.contains(&value) {
            return Ok(());
        }
        Err(Self::Validation(vec![json!({
            "loc": ["query", name],
            "msg": format!("must be between {} and {}", range.start(), range.end()),
            "type": "value_error",
        })]))
    }

    /// The limit-aware mapping of a depository error.
    pub fn from_depository(error: DepositoryError, max_bytes: u64) -> Self {
        match error {
            DepositoryError::NotFound(m) => Self::NotFound(m),
            DepositoryError::Gone(m) => Self::Gone(m),
            DepositoryError::Invalid(fields) => Self::from_fields(&fields),
            DepositoryError::Roster(lines) => Self::Validation(
                lines
                    .iter()
                    .map(|l| json!({"line": l.line, "message": l.message}))
                    .collect(),
            ),
            DepositoryError::Database(crate::db::DbError::Conflict) => {
                Self::Unprocessable("A student with this nickname or email already exists".into())
            }
            DepositoryError::Unprocessable(m) => Self::Unprocessable(m),
            DepositoryError::TooLarge => Self::PayloadTooLarge { limit: max_bytes },
            DepositoryError::Forbidden(m) => Self::Forbidden(m),
            DepositoryError::LimitReached => Self::Unprocessable("Upload limit reached".into()),
            DepositoryError::Storage(e) => Self::Storage(e.to_string()),
            DepositoryError::Database(e) => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::PayloadTooLarge { limit: 0 };
        }
        Self::Validation(vec![json!({
            "loc": ["body"],
            "msg": rejection.body_text(),
            "type": "json_invalid",
        })])
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::Validation(vec![json!({
            "loc": ["query"],
            "msg": rejection.body_text(),
            "type": "value_error",
        })])
    }
}

fn detail(status: StatusCode, detail: impl Into<serde_json::Value>) -> Response {
    (status, axum::Json(json!({ "detail": detail.into() }))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized => {
                let mut response = detail(StatusCode::UNAUTHORIZED, "Not authenticated");
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            Self::Forbidden(m) => detail(StatusCode::FORBIDDEN, m),
            Self::NotFound(m) => detail(StatusCode::NOT_FOUND, m),
            Self::Gone(m) => detail(StatusCode::GONE, m),
            Self::PayloadTooLarge { limit } => {
                let message = if limit > 0 {
                    format!("File too large: the limit is {limit} bytes")
                } else {
                    "Request body too large".to_owned()
                };
                let mut response = detail(StatusCode::PAYLOAD_TOO_LARGE, message);
                // The body was not read: tell the client not to reuse the connection.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            }
            Self::Unprocessable(m) => detail(StatusCode::UNPROCESSABLE_ENTITY, m),
            Self::Validation(list) => detail(StatusCode::UNPROCESSABLE_ENTITY, list),
            Self::TooManyRequests { retry_after } => {
                let mut response = detail(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many failed attempts, please wait before trying again",
                );
                let seconds = retry_after.as_secs().max(1).to_string();
                if let Ok(value) = HeaderValue::from_str(&seconds) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            Self::Overloaded => {
                let mut response = detail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server is busy receiving other uploads, please retry in a few seconds",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                response
            }
            Self::Storage(cause) => {
                tracing::error!(%cause, "storage failure");
                detail(StatusCode::INTERNAL_SERVER_ERROR, STORAGE_ERROR)
            }
            Self::Unavailable(cause) => {
                tracing::error!(%cause, "database failure");
                let mut response = detail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service temporarily unavailable, please retry",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                response
            }
            Self::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                detail(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }
}
