//! Assembly: configuration → database, store, state → router, sweeper and listener.

use crate::config::Config;
use crate::db::{Db, DbOptions};
use crate::depository::{Depository, Rules};
use crate::domain::window::SubmissionWindow;
use crate::http::auth::ApiKeys;
use crate::http::limits::{ClientIdentity, FailureLimiter, GlobalBudget, Limits, TRACKED_CLIENTS};
use crate::http::{AppState, HttpSettings, Services, router};
use crate::listener::ConnectionLimits;
use crate::metrics::Metrics;
use crate::receipts::ReceiptSigner;
use crate::secrets;
use crate::storage::{BlobStore, InstrumentedStore, LocalStore, S3Settings, S3Store, UrlSigner};
use anyhow::Context;
use axum::http::{HeaderName, HeaderValue};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    sweep_interval: Duration,
    shutdown_grace: Duration,
    connection_limits: ConnectionLimits,
}

/// The rules of SPEC sections 1 and 6 as configured.
pub fn rules(config: &Config, bound_port: u16) -> anyhow::Result<Rules> {
    let instant = |name: &str, value: &Option<String>| -> anyhow::Result<_> {
        value
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(v.trim())
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .with_context(|| format!("{name} is not an RFC 3339 time: {v:?}"))
            })
            .transpose()
    };
    let window = SubmissionWindow {
        opens_at: instant("SUBMISSIONS_OPEN_AT", &config.submissions_open_at)?,
        closes_at: instant("SUBMISSIONS_CLOSE_AT", &config.submissions_close_at)?,
    };
    if let (Some(open), Some(close)) = (window.opens_at, window.closes_at) {
        anyhow::ensure!(
            open < close,
            "SUBMISSIONS_OPEN_AT must be before SUBMISSIONS_CLOSE_AT"
        );
    }
    Ok(Rules {
        max_submission_bytes: config.max_submission_bytes,
        submissions_per_student: i64::from(config.submissions_per_student),
        download_url_expires: Duration::from_secs(config.download_url_expires_seconds),
        retention: Duration::from_secs(config.retention_seconds),
        storage_timeout: config.storage_timeout(),
        db_timeout: config.db_timeout(),
        window,
        service_url: config.public_url(bound_port),
    })
}

/// The receipt signer: `RECEIPT_SIGNING_KEY`, or a key generated once into DATA_DIR.
pub fn receipt_signer(config: &Config) -> anyhow::Result<ReceiptSigner> {
    if let Some(seed) = &config.receipt_signing_key {
        return ReceiptSigner::from_base64_seed(seed.expose()).map_err(anyhow::Error::msg);
    }
    let path = config.data_dir.join("receipt-signing.key");
    let existing = std::fs::read_to_string(&path)
        .ok()
        .filter(|s| !s.trim().is_empty());
    let seed = match existing {
        Some(seed) => seed,
        None => {
            let seed = ReceiptSigner::new_seed();
            secrets::write_secret(&path, &seed).context("writing the receipt signing key")?;
            tracing::warn!(
                path = %path.display(),
                "generated a receipt signing key; replicas must share it (set RECEIPT_SIGNING_KEY)"
            );
            seed
        }
    };
    ReceiptSigner::from_base64_seed(&seed).map_err(anyhow::Error::msg)
}

/// Connects to the configured database and migrates it.
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating DATA_DIR {}", config.data_dir.display()))?;
    let options = DbOptions {
        pool_size: config.db_pool_size.max(1),
        timeout: config.db_timeout(),
    };
    Db::connect_and_migrate(&config.database_url(), &options)
        .await
        .context("opening the database")
}

/// The configured store; the local one is also returned for self-served downloads.
pub async fn open_store(
    config: &Config,
    public_url: &str,
) -> anyhow::Result<(Arc<dyn BlobStore>, Option<Arc<LocalStore>>)> {
    if let Some(bucket) = &config.aws_s3_bucket_name {
        let settings = S3Settings {
            bucket: bucket.clone(),
            endpoint: config.aws_s3_endpoint_url.clone(),
            region: config.aws_region.clone(),
            access_key_id: config
                .aws_access_key_id
                .as_ref()
                .map(|s| s.expose().to_owned()),
            secret_access_key: config
                .aws_secret_access_key
                .as_ref()
                .map(|s| s.expose().to_owned()),
            timeout: config.storage_timeout(),
        };
        let store = S3Store::open(&settings, &config.data_dir)
            .await
            .context("configuring S3 storage")?;
        return Ok((Arc::new(store), None));
    }
    let signing_key = match &config.download_signing_key {
        Some(key) => key.expose().to_owned(),
        None => {
            secrets::load_or_generate(&config.data_dir.join("download-signing.key"))
                .context("reading or creating the download signing key")?
                .0
        }
    };
    let local = Arc::new(
        LocalStore::open(&config.data_dir, UrlSigner::new(signing_key), public_url)
            .await
            .context("opening the local file store")?,
    );
    Ok((local.clone(), Some(local)))
}

/// The examiner keys: `AUTH_TOKEN`, or one generated into DATA_DIR and printed once.
fn api_keys(config: &Config) -> anyhow::Result<(ApiKeys, String)> {
    if let Some(list) = &config.auth_token {
        let keys = ApiKeys::from_list(list.expose());
        anyhow::ensure!(!keys.is_empty(), "AUTH_TOKEN is set but holds no key");
        let first = list
            .expose()
            .split(',')
            .map(str::trim)
            .find(|k| !k.is_empty());
        return Ok((keys, first.unwrap_or_default().to_owned()));
    }
    let path = config.data_dir.join("auth-token");
    let (token, generated) =
        secrets::load_or_generate(&path).context("reading or creating the examiner API key")?;
    if generated {
        println!(
            "Generated an examiner API key (kept in {}, shown only now):\n\n    {token}\n",
            path.display()
        );
    } else {
        tracing::info!(path = %path.display(), "examiner API key read from the data directory");
    }
    Ok((ApiKeys::from_list(&token), token))
}

fn limits(config: &Config) -> anyhow::Result<Limits> {
    let trusted_header = config
        .trusted_proxy_header
        .as_deref()
        .map(|name| HeaderName::from_bytes(name.trim().as_bytes()))
        .transpose()
        .context("TRUSTED_PROXY_HEADER is not a valid header name")?;
    let minute = Duration::from_secs(60);
    Ok(Limits {
        identity: ClientIdentity { trusted_header },
        misses: FailureLimiter::new(config.miss_limit_per_minute, minute, TRACKED_CLIENTS),
        global_misses: GlobalBudget::new(config.global_miss_budget_per_hour),
        auth_failures: FailureLimiter::new(
            config.auth_failure_limit_per_minute,
            minute,
            TRACKED_CLIENTS,
        ),
        uploads: Semaphore::new(config.max_uploads_in_flight),
    })
}

fn cors_origins(config: &Config) -> anyhow::Result<Vec<HeaderValue>> {
    config
        .cors_origins
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| HeaderValue::from_str(o).with_context(|| format!("bad CORS origin {o:?}")))
        .collect()
}

impl Application {
    /// Binds the listener and opens every dependency. Port 0 picks a free port.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with(config, |store| store).await
    }

    /// Like [`Application::build`], with the store wrapped by `wrap_store` (tests inject
    /// faults this way).
    pub async fn build_with(
        config: Config,
        wrap_store: impl FnOnce(Arc<dyn BlobStore>) -> Arc<dyn BlobStore>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .await
            .with_context(|| format!("binding {}:{}", config.host, config.port))?;
        let port = listener.local_addr()?.port();
        let metrics = Arc::new(Metrics::new());
        let db = open_database(&config)
            .await?
            .with_latency_histogram(metrics.db_duration.clone());
        let (store, local_files) = open_store(&config, &config.public_url(port)).await?;
        let store: Arc<dyn BlobStore> =
            Arc::new(InstrumentedStore::new(wrap_store(store), metrics.clone()));
        // Spool files of a crashed process; live uploads are younger than their deadline.
        let stale = Duration::from_secs(config.request_deadline_seconds) * 2;
        match crate::storage::remove_stale_spool_files(store.spool_dir(), stale).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed stale spool files"),
            Err(error) => tracing::warn!(%error, "could not clean the spool directory"),
        }
        let (api_keys, first_key) = api_keys(&config)?;
        let demo_token = config.demo_mode.then(|| {
            tracing::warn!(
                "DEMO_MODE is on: GET /auth/token hands the examiner key to anyone. \
                 Never use it in production."
            );
            first_key
        });
        let state = AppState::new(Services {
            depository: Depository::new(db, store, rules(&config, port)?)
                .with_metrics(metrics)
                .with_receipts(receipt_signer(&config)?),
            api_keys: Arc::new(api_keys),
            demo_token,
            local_files,
            limits: Arc::new(limits(&config)?),
            http: Arc::new(HttpSettings {
                request_deadline: Duration::from_secs(config.request_deadline_seconds),
                body_idle_timeout: Duration::from_secs(config.body_idle_timeout_seconds),
                cors_origins: cors_origins(&config)?,
            }),
        });
        Ok(Self {
            listener,
            state,
            sweep_interval: Duration::from_secs(config.sweep_interval_seconds),
            shutdown_grace: Duration::from_secs(config.shutdown_grace_seconds),
            connection_limits: ConnectionLimits {
                header_read_timeout: Duration::from_secs(config.header_read_timeout_seconds),
                max_headers: 64,
                max_head_bytes: 16 * 1024,
                max_connections: config.max_connections,
            },
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The state the routes share (for tests and tools).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes requests in flight (for at most the
    /// grace period) and stops the sweeper.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let sweeper = tokio::spawn(crate::sweeper::run(
            self.state.depository.clone(),
            self.sweep_interval,
            stop.clone(),
        ));
        let depository = self.state.depository.clone();
        let app = router(self.state);
        tracing::info!(address = %self.listener.local_addr()?, "listening");
        let stopping = CancellationToken::new();
        let signal = stopping.clone();
        tokio::spawn(async move {
            shutdown.await;
            signal.cancel();
        });
        crate::listener::serve(
            self.listener,
            app,
            self.connection_limits,
            stopping,
            self.shutdown_grace,
        )
        .await;
        stop.cancel();
        let _ = sweeper.await;
        depository.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested; finishing requests in flight");
}
