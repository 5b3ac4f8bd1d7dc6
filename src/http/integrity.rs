//! Receipts and the audit log.

use super::auth::Examiner;
use super::error::ApiError;
use super::schemas::ErrorBody;
use super::{AppQuery, AppState};
use crate::domain::audit::AuditEvent;
use crate::receipts::Receipt;
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

/// The signed receipt of a submission.
#[utoipa::path(get, path = "/receipts/{verification_code}", tag = "student",
    params(("verification_code" = String, Path, description = "9 characters of a-z0-9", pattern = "^[a-z0-9]{9}$")),
    responses(
    (status = 200, body = Receipt),
    (status = 404, description = "unknown verification code", body = ErrorBody),
    (status = 429, description = "too many unknown codes from this client", body = ErrorBody),
    (status = 503, description = "database unavailable", body = ErrorBody)))]
pub async fn get_receipt(
    State(state): State<AppState>,
    Path(verification_code): Path<String>,
) -> Result<Json<Receipt>, ApiError> {
    state
        .depository
        .receipt(&verification_code)
        .await
        .map(Json)
        .map_err(|e| state.api_error(e))
}

/// The key receipts are signed with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicKey {
    /// Always `Ed25519`.
    pub algorithm: &'static str,
    /// The public key, base64.
    pub public_key: String,
}

/// The receipts' public key.
#[utoipa::path(get, path = "/receipts/public-key", tag = "service", responses(
    (status = 200, body = PublicKey),
    (status = 404, description = "receipts are not configured", body = ErrorBody)))]
pub async fn get_public_key(State(state): State<AppState>) -> Result<Json<PublicKey>, ApiError> {
    let signer = state
        .depository
        .receipts
        .as_ref()
        .ok_or(ApiError::NotFound("Receipts are not configured"))?;
    Ok(Json(PublicKey {
        algorithm: "Ed25519",
        public_key: signer.public_key_base64(),
    }))
}

/// Paging of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditPaging {
    /// Events after this id (default 0: from the start).
    #[param(minimum = 0)]
    pub after: Option<u64>,
    /// Most events to return (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A page of the audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Events, oldest first.
    pub events: Vec<AuditEvent>,
    /// Pass as `after` for the next page (null at the end).
    pub next_after: Option<i64>,
    /// The id of the newest event.
    pub head_id: i64,
    /// The hash of the newest event.
    pub head_hash: String,
}

/// The hash-chained audit log, oldest first.
#[utoipa::path(get, path = "/audit", tag = "examiner", params(AuditPaging),
    security(("bearer" = [])), responses(
    (status = 200, body = AuditPage),
    (status = 401, body = ErrorBody),
    (status = 422, body = ErrorBody),
    (status = 429, description = "too many wrong keys from this client", body = ErrorBody)))]
pub async fn list_audit(
    _: Examiner,
    State(state): State<AppState>,
    AppQuery(paging): AppQuery<AuditPaging>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = paging.limit.unwrap_or(100);
    let after = paging.after.unwrap_or(0);
    ApiError::check_query_range("limit", u64::from(limit), 1..=1000)?;
    ApiError::check_query_range("after", after, 0..=i64::MAX as u64)?;
    let db = &state.depository.db;
    let unavailable = |e: crate::db::DbError| ApiError::Unavailable(e.to_string());
    let events = db
        .audit_events(after as i64, i64::from(limit))
        .await
        .map_err(unavailable)?;
    let (head_id, head_hash) = db.audit_head().await.map_err(unavailable)?;
    let next_after = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage {
        events,
        next_after,
        head_id,
        head_hash,
    }))
}
