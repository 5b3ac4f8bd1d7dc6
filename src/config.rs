//! The configuration contract (SPEC section 4): every setting is a command-line flag and an
//! environment variable of the same name; a `.env` file is read when present.

use clap::Args;
use clap::builder::BoolishValueParser;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A secret value: usable, but never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of the service.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Listen address.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Listen port (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,

    /// Examiner API key(s), comma-separated. Generated into DATA_DIR when unset.
    #[arg(long, env = "AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<Secret>,

    /// `postgres://…` or `sqlite://…`; default: a SQLite file in DATA_DIR.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,

    /// Where the embedded default keeps its database, files and generated secrets.
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// When set, files go to this S3 bucket instead of DATA_DIR.
    #[arg(long, env = "AWS_S3_BUCKET_NAME")]
    pub aws_s3_bucket_name: Option<String>,

    /// S3 endpoint (R2: https://<account>.r2.cloudflarestorage.com).
    #[arg(long, env = "AWS_S3_ENDPOINT_URL")]
    pub aws_s3_endpoint_url: Option<String>,

    /// S3 access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub aws_access_key_id: Option<Secret>,

    /// S3 secret access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub aws_secret_access_key: Option<Secret>,

    /// S3 region (R2: `auto`).
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,

    /// Expose `GET /auth/token` (never in production).
    #[arg(long, env = "DEMO_MODE", default_value = "false", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub demo_mode: bool,

    /// Largest accepted file in bytes.
    #[arg(long, env = "MAX_SUBMISSION_BYTES", default_value_t = 3 * 1024 * 1024)]
    pub max_submission_bytes: u64,

    /// Accepted uploads per student.
    #[arg(long, env = "SUBMISSIONS_PER_STUDENT", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub submissions_per_student: u32,

    /// Lifetime of a download URL in seconds.
    #[arg(long, env = "DOWNLOAD_URL_EXPIRES_SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub download_url_expires_seconds: u64,

    /// A stored file is deleted this many seconds after its upload.
    #[arg(long, env = "RETENTION_SECONDS", default_value_t = 259_200)]
    pub retention_seconds: u64,

    /// How often the retention and cleanup sweeper runs.
    #[arg(long, env = "SWEEP_INTERVAL_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub sweep_interval_seconds: u64,

    /// Base URL in self-served download links; default `http://HOST:PORT`.
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Secret for signing self-served download links; generated into DATA_DIR when unset.
    #[arg(long, env = "DOWNLOAD_SIGNING_KEY", hide_env_values = true)]
    pub download_signing_key: Option<Secret>,

    /// Uploads before this instant (RFC 3339) are refused with 403.
    #[arg(long, env = "SUBMISSIONS_OPEN_AT")]
    pub submissions_open_at: Option<String>,

    /// Uploads arriving from this instant (RFC 3339) are refused with 403, unless a student
    /// has extra time.
    #[arg(long, env = "SUBMISSIONS_CLOSE_AT")]
    pub submissions_close_at: Option<String>,

    /// Ed25519 seed (base64, 32 bytes) that signs receipts; generated into DATA_DIR when
    /// unset. Replicas must share it.
    #[arg(long, env = "RECEIPT_SIGNING_KEY", hide_env_values = true)]
    pub receipt_signing_key: Option<Secret>,

    /// Largest number of database connections.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,

    /// Upper bound on one database call, in seconds.
    #[arg(long, env = "DB_TIMEOUT_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub db_timeout_seconds: u64,

    /// Upper bound on one storage call, in seconds.
    #[arg(long, env = "STORAGE_TIMEOUT_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub storage_timeout_seconds: u64,

    /// On SIGTERM, how long requests in flight may take to finish.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,

    /// Time a client has to send a request's headers.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_seconds: u64,

    /// A request (body included) must finish within this many seconds (408 otherwise).
    #[arg(long, env = "REQUEST_DEADLINE_SECONDS", default_value_t = 180, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_deadline_seconds: u64,

    /// A request body that sends nothing for this many seconds is dropped.
    #[arg(long, env = "BODY_IDLE_TIMEOUT_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_idle_timeout_seconds: u64,

    /// Most open connections.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,

    /// Most uploads received at once; more get 503 with `Retry-After`.
    #[arg(long, env = "MAX_UPLOADS_IN_FLIGHT", default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_uploads_in_flight: usize,

    /// Unknown-code answers (404) one client may get per minute before 429.
    #[arg(long, env = "MISS_LIMIT_PER_MINUTE", default_value_t = 30)]
    pub miss_limit_per_minute: u32,

    /// Unknown-code answers per hour, all clients together, above which a security warning
    /// is logged.
    #[arg(long, env = "GLOBAL_MISS_BUDGET_PER_HOUR", default_value_t = 1000)]
    pub global_miss_budget_per_hour: u64,

    /// Wrong examiner keys one client may send per minute before 429.
    #[arg(long, env = "AUTH_FAILURE_LIMIT_PER_MINUTE", default_value_t = 10)]
    pub auth_failure_limit_per_minute: u32,

    /// Header that carries the client IP set by a trusted proxy (e.g. `Fly-Client-IP`);
    /// unset: the socket's peer address.
    #[arg(long, env = "TRUSTED_PROXY_HEADER")]
    pub trusted_proxy_header: Option<String>,

    /// Origins allowed by CORS, comma-separated; unset: CORS is off.
    #[arg(long, env = "CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Config {
    /// The configuration from the environment alone (for tests and tools).
    pub fn from_env_only() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        <Only as clap::Parser>::parse_from(["exam-depository"]).config
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => format!(
                "sqlite://{}",
                self.data_dir.join("exam-depository.db").display()
            ),
        }
    }

    /// The base URL of self-served links.
    pub fn public_url(&self, bound_port: u16) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            let host = if self.host.contains(':') {
                format!("[{}]", self.host)
            } else {
                self.host.clone()
            };
            format!("http://{host}:{bound_port}")
        })
    }

    /// Database call timeout.
    pub fn db_timeout(&self) -> Duration {
        Duration::from_secs(self.db_timeout_seconds)
    }

    /// Storage call timeout.
    pub fn storage_timeout(&self) -> Duration {
        Duration::from_secs(self.storage_timeout_seconds)
    }
}
