//! Service routes: ping, demo token, health, fallbacks.

use super::schemas::{ErrorBody, Health, Token};
use super::{AppState, status_only};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Liveness ping of the original API.
#[utoipa::path(get, path = "/", tag = "service",
    responses((status = 200, description = "pong", content_type = "text/plain", body = String)))]
pub async fn pong() -> &'static str {
    "pong"
}

/// The examiner token, only in demo mode.
#[utoipa::path(get, path = "/auth/token", tag = "service", responses(
    (status = 200, description = "demo mode is on", body = Token),
    (status = 404, description = "demo mode is off", body = ErrorBody)))]
pub async fn auth_token(State(state): State<AppState>) -> Response {
    match &state.demo_token {
        Some(token) => Json(Token {
            token: token.clone(),
        })
        .into_response(),
        None => not_found().await,
    }
}

/// 200 while the process is alive.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// 200 when the database and the store answer, 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "service", responses(
    (status = 200, description = "ready", body = Health),
    (status = 503, description = "a dependency is down", body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let depository = &state.depository;
    let (db, store) = tokio::join!(depository.db.ping(), depository.store.check());
    match (db, store) {
        (Ok(()), Ok(())) => Json(Health { status: "ready" }).into_response(),
        (Err(error), _) => {
            tracing::warn!(%error, "not ready: database");
            status_only(StatusCode::SERVICE_UNAVAILABLE, "Database unavailable")
        }
        (_, Err(error)) => {
            tracing::warn!(%error, "not ready: storage");
            status_only(StatusCode::SERVICE_UNAVAILABLE, "Storage unavailable")
        }
    }
}

/// Prometheus metrics (examiner key required).
#[utoipa::path(get, path = "/metrics", tag = "service", security(("bearer" = [])), responses(
    (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
    (status = 401, body = ErrorBody),
    (status = 429, description = "too many wrong keys from this client", body = ErrorBody)))]
pub async fn metrics(_: super::auth::Examiner, State(state): State<AppState>) -> Response {
    let metrics = &state.depository.metrics;
    let (open, idle) = state.depository.db.pool_stats();
    metrics.db_connections.set(i64::from(open));
    metrics
        .db_idle_connections
        .set(i64::try_from(idle).unwrap_or(i64::MAX));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

/// 404 for unknown paths.
pub async fn not_found() -> Response {
    status_only(StatusCode::NOT_FOUND, "Not Found")
}

/// 405 for known paths with another method.
pub async fn method_not_allowed() -> Response {
    status_only(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}
