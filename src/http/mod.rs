//! The HTTP layer: extract → call the depository → map. One `router()` lists every route.

pub mod auth;
pub mod error;
mod exports;
mod files;
mod integrity;
pub mod limits;
mod meta;
mod middleware;
mod openapi;
mod pages;
pub mod schemas;
mod students;
mod submissions;

use crate::depository::Depository;
use crate::storage::LocalStore;
use auth::ApiKeys;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use error::ApiError;
use std::sync::Arc;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Level;

pub use openapi::ApiDoc;

/// Everything a handler may need. Axum clones the state for every request (and every
/// middleware with state), so it is one reference-counted pointer.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// Shares `services` between the routes.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What the routes share.
pub struct Services {
    /// The core.
    pub depository: Depository,
    /// Examiner keys.
    pub api_keys: Arc<ApiKeys>,
    /// The key `GET /auth/token` hands out; `Some` only in demo mode.
    pub demo_token: Option<String>,
    /// The local store, when the app serves files itself.
    pub local_files: Option<Arc<LocalStore>>,
    /// Rate limits and the upload cap.
    pub limits: Arc<limits::Limits>,
    /// Cross-cutting HTTP settings.
    pub http: Arc<HttpSettings>,
}

/// Settings of the HTTP layer itself.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// A request (body included) must finish within this time.
    pub request_deadline: Duration,
    /// A body that sends nothing for this long is dropped.
    pub body_idle_timeout: Duration,
    /// Origins allowed by CORS; empty: CORS off.
    pub cors_origins: Vec<HeaderValue>,
}

/// Largest JSON or CSV body.
pub const SMALL_BODY_LIMIT: usize = 256 * 1024;
/// Room for multipart boundaries and part headers around the file.
pub const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// A JSON body whose rejections use the `{"detail": …}` shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

/// A query string whose rejections use the `{"detail": …}` shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

/// The request id set by the request-id layer, for the `errors` table.
#[derive(Debug, Clone)]
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .headers
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ))
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The application router with every route and the cross-cutting layers.
pub fn router(state: AppState) -> Router {
    let upload_limit =
        usize::try_from(state.depository.rules.max_submission_bytes + MULTIPART_OVERHEAD)
            .unwrap_or(usize::MAX);
    let code_routes = Router::new()
        .route(
            "/submissions/{upload_code}",
            get(submissions::get_upload_status)
                .post(submissions::create_submission.layer(DefaultBodyLimit::max(upload_limit))),
        )
        .route(
            "/verifications/{verification_code}/download_url",
            get(submissions::get_download_url),
        )
        .route("/receipts/{verification_code}", get(integrity::get_receipt))
        .route_layer(from_fn_with_state(state.clone(), middleware::guard_codes));
    let api = Router::new()
        .route("/", get(meta::pong))
        .route("/auth/token", get(meta::auth_token))
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route(
            "/students",
            get(students::list_students).post(students::create_student),
        )
        .route(
            "/students/{nickname}",
            get(students::get_student)
                .delete(students::delete_student)
                .patch(students::update_student),
        )
        .route(
            "/students/import",
            axum::routing::post(
                students::import_students.layer(DefaultBodyLimit::max(students::ROSTER_BODY_LIMIT)),
            ),
        )
        .route("/exports/submissions.zip", get(exports::export_submissions))
        .route("/upload", get(pages::upload_page))
        .route("/verify", get(pages::verify_page))
        .route("/examiner", get(pages::examiner_page))
        .route("/assets/{name}", get(pages::asset))
        .route("/files/{key}", get(files::download_file))
        .route("/metrics", get(meta::metrics))
        .route("/receipts/public-key", get(integrity::get_public_key))
        .route("/audit", get(integrity::list_audit))
        .merge(code_routes)
        .route_layer(from_fn_with_state(
            state.clone(),
            middleware::record_metrics,
        ))
        .with_state(state.clone());
    let http = state.http.clone();
    api.merge(openapi::docs())
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(SMALL_BODY_LIMIT))
        .layer(from_fn_with_state(
            http.request_deadline,
            middleware::deadline,
        ))
        .layer(RequestBodyTimeoutLayer::new(http.body_idle_timeout))
        .layer(middleware::cors(&http.cors_origins))
        .layer(
            // Codes travel in paths, so spans name the route template, never the URI.
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", MatchedPath::as_str);
                    let request_id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("request", method = %request.method(), route, request_id)
                })
                .on_request(())
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .level(Level::INFO)
                        .latency_unit(tower_http::LatencyUnit::Micros),
                )
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::from_fn(middleware::security_headers))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
}

/// How long the server waits for requests in flight on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

impl AppState {
    /// The HTTP answer for a failed use case.
    pub fn api_error(&self, error: crate::depository::DepositoryError) -> ApiError {
        ApiError::from_depository(error, self.depository.rules.max_submission_bytes)
    }
}

fn status_only(status: StatusCode, message: &'static str) -> axum::response::Response {
    (status, Json(serde_json::json!({ "detail": message }))).into_response()
}

use axum::handler::Handler as _;
