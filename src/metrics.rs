//! Prometheus metrics, kept in a registry owned by the application (no global state, so
//! several instances in one process, as in the tests, count separately).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// Route template, never the URI.
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// Labels of a request duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: String,
    /// Route template.
    pub route: String,
}

/// Labels of an upload's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `accepted` or the reason it was refused.
    pub outcome: String,
}

/// Labels of a call to a dependency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The operation (`put`, `delete`, `query`, …).
    pub operation: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~33 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    /// Requests by route template and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route template.
    pub request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Uploads by outcome.
    pub uploads: Family<OutcomeLabels, Counter>,
    /// Bytes of accepted uploads.
    pub bytes_stored: Counter,
    /// Sweeper passes.
    pub sweeps: Counter,
    /// Submissions retired by retention.
    pub expired: Counter,
    /// Objects deleted by the sweeper.
    pub deleted: Counter,
    /// Deletions that failed and wait for a retry.
    pub delete_failures: Counter,
    /// Storage call latency by operation.
    pub storage_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    /// Database call latency.
    pub db_duration: Histogram,
    /// Open database connections.
    pub db_connections: Gauge,
    /// Idle database connections.
    pub db_idle_connections: Gauge,
    /// Uploads being received.
    pub uploads_in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("exam_depository");
        let requests = Family::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let request_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            request_duration.clone(),
        );
        let uploads = Family::default();
        registry.register("uploads", "Uploads by outcome", uploads.clone());
        let bytes_stored = Counter::default();
        registry.register(
            "stored_bytes",
            "Bytes of accepted uploads",
            bytes_stored.clone(),
        );
        let sweeps = Counter::default();
        registry.register("sweeper_runs", "Sweeper passes", sweeps.clone());
        let expired = Counter::default();
        registry.register(
            "sweeper_expired",
            "Submissions retired by retention",
            expired.clone(),
        );
        let deleted = Counter::default();
        registry.register(
            "sweeper_deleted",
            "Objects deleted by the sweeper",
            deleted.clone(),
        );
        let delete_failures = Counter::default();
        registry.register(
            "sweeper_delete_failures",
            "Object deletions that failed and will be retried",
            delete_failures.clone(),
        );
        let storage_duration =
            Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "storage_call_duration_seconds",
            "Storage call latency by operation",
            storage_duration.clone(),
        );
        let db_duration = latency_histogram();
        registry.register(
            "db_call_duration_seconds",
            "Database call latency",
            db_duration.clone(),
        );
        let db_connections = Gauge::default();
        registry.register(
            "db_pool_connections",
            "Open database connections",
            db_connections.clone(),
        );
        let db_idle_connections = Gauge::default();
        registry.register(
            "db_pool_idle_connections",
            "Idle database connections",
            db_idle_connections.clone(),
        );
        let uploads_in_flight = Gauge::default();
        registry.register(
            "uploads_in_flight",
            "Uploads being received",
            uploads_in_flight.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            uploads,
            bytes_stored,
            sweeps,
            expired,
            deleted,
            delete_failures,
            storage_duration,
            db_duration,
            db_connections,
            db_idle_connections,
            uploads_in_flight,
        }
    }

    /// Counts an upload outcome.
    pub fn upload(&self, outcome: &str) {
        self.uploads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Records a storage call's latency.
    pub fn storage_call(&self, operation: &str, took: Duration) {
        self.storage_duration
            .get_or_create(&OperationLabels {
                operation: operation.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}
