//! The database: one set of portable SQL run through sqlx's `Any` driver on SQLite or
//! PostgreSQL, chosen once from the URL scheme. Each backend has its own migration folder.

pub(crate) mod audit;
mod batch;
mod keys;
mod models;
mod queries;

pub use batch::{BatchOp, BatchOutcome, GroupCommit};
pub use keys::ApiKeyRow;
pub use models::{
    ErrorRow, LatestSubmission, NewSubmission, RosterLine, StudentRow, SubmissionRow,
    SubmissionState,
};
pub use queries::{CommitOutcome, StudentWithSubmission, Totals, UploadCommit};

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{Connection as _, Executor, Transaction};
use std::future::Future;
use std::time::Duration;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// `sqlite://path` or `sqlite:path`.
    Sqlite,
    /// `postgres://…` or `postgresql://…`.
    Postgres,
}

impl DbKind {
    /// Picks the backend from the URL scheme; anything else is refused.
    pub fn from_url(url: &str) -> Result<Self, DbError> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(DbError::UnsupportedUrl(scheme.to_owned())),
        }
    }
}

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL scheme is neither SQLite nor PostgreSQL.
    #[error(
        "unsupported DATABASE_URL scheme {0:?}: use postgres://… (or postgresql://…) or sqlite://…"
    )]
    UnsupportedUrl(String),
    /// A unique constraint refused the write.
    #[error("duplicate value")]
    Conflict,
    /// The call did not finish within the configured timeout.
    #[error("database call timed out")]
    Timeout,
    /// Anything else from the driver.
    #[error(transparent)]
    Sqlx(sqlx::Error),
    /// A group-committed write failed.
    #[error("batched write failed: {0}")]
    Batch(String),
    /// A migration failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl DbError {
    /// A constraint refused the write (nothing else about the database is wrong).
    pub fn is_constraint_violation(&self) -> bool {
        match self {
            Self::Conflict => true,
            Self::Sqlx(sqlx::Error::Database(e)) => e.kind() != sqlx::error::ErrorKind::Other,
            _ => false,
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(e) if e.is_unique_violation() => Self::Conflict,
            sqlx::Error::PoolTimedOut => Self::Timeout,
            _ => Self::Sqlx(error),
        }
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Largest number of pooled connections.
    pub pool_size: u32,
    /// Upper bound on any one database call, pool wait included.
    pub timeout: Duration,
}

/// The database handle shared by the service.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    /// Where writes go: on SQLite a pool of one connection, so writers queue in order in
    /// the process instead of polling SQLite's lock; on PostgreSQL the same pool.
    writer: AnyPool,
    kind: DbKind,
    timeout: Duration,
    latency: Option<prometheus_client::metrics::histogram::Histogram>,
}

impl Db {
    /// Connects (creating a SQLite file if needed) without migrating.
    pub async fn connect(url: &str, options: &DbOptions) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let kind = DbKind::from_url(url)?;
        let url = match kind {
            Kind::Sqlite if !url.contains("mode=") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let timeout = options.timeout;
        let pool = pool_options(kind, timeout)
            .max_connections(options.pool_size)
            .connect_lazy(&url)?;
        let writer = match kind {
            Kind::Sqlite => pool_options(kind, timeout)
                .max_connections(1)
                .connect_lazy(&url)?,
            Kind::Postgres => pool.clone(),
        };
        Ok(Self {
            pool,
            writer,
            kind,
            timeout,
            latency: None,
        })
    }

    /// Connects and brings the schema up to date.
    pub async fn connect_and_migrate(url: &str, options: &DbOptions) -> Result<Self, DbError> {
        let db = Self::connect(url, options).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Applies pending migrations. PostgreSQL migrations hold an advisory lock, so replicas
    /// starting together take turns.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = match self.kind {
            Kind::Sqlite => &SQLITE_MIGRATIONS,
            Kind::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.writer).await?;
        Ok(())
    }

    /// Records every call's latency into `histogram`.
    pub fn with_latency_histogram(
        mut self,
        histogram: prometheus_client::metrics::histogram::Histogram,
    ) -> Self {
        self.latency = Some(histogram);
        self
    }

    /// Open and idle connections of the pool.
    pub fn pool_stats(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Which backend this is.
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.timed(async { sqlx::query("SELECT 1").execute(&self.pool).await })
            .await
            .map(drop)
    }

    /// The durability setting in force on a pooled connection: SQLite's `synchronous`
    /// (2 = FULL) or PostgreSQL's `synchronous_commit`.
    pub async fn durability(&self) -> Result<String, DbError> {
        let sql = match self.kind {
            Kind::Sqlite => "SELECT 'synchronous=' || synchronous FROM pragma_synchronous",
            Kind::Postgres => {
                "SELECT 'synchronous_commit=' || current_setting('synchronous_commit')"
            }
        };
        self.timed(sqlx::query_scalar(sql).fetch_one(&self.pool))
            .await
    }

    /// Closes the pools.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    /// Runs one database call under the configured timeout.
    async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, DbError> {
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(self.timeout, call).await;
        if let Some(latency) = &self.latency {
            latency.observe(started.elapsed().as_secs_f64());
        }
        match outcome {
            Ok(result) => result.map_err(DbError::from),
            Err(_) => Err(DbError::Timeout),
        }
    }

    async fn begin(&self) -> Result<Transaction<'static, sqlx::Any>, sqlx::Error> {
        self.writer.begin().await
    }

    /// A connection of the write pool, for several transactions in a row.
    async fn acquire_writer(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, DbError> {
        self.timed(self.writer.acquire()).await
    }
}

/// The `n`th (from 1) parameter of a generated statement. SQLite gets anonymous `?`s, bound
/// in the order they appear: it looks each named parameter up by name in a list while
/// parsing, so a statement of a few thousand `$N`s took a second to prepare (an import of
/// 10,000 students spent most of its time there).
fn placeholder(kind: DbKind, n: usize) -> String {
    match kind {
        Kind::Sqlite => "?".to_owned(),
        Kind::Postgres => format!("${n}"),
    }
}

/// Placeholders for a multi-row `VALUES`, numbered from `$1` row by row (see
/// [`placeholder`]).
fn values_placeholders(kind: DbKind, rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&placeholder(kind, row * columns + column + 1));
        }
        sql.push(')');
    }
    sql
}

/// Which backend a connection talks to.
fn kind_of(conn: &sqlx::AnyConnection) -> DbKind {
    if conn.backend_name() == "SQLite" {
        Kind::Sqlite
    } else {
        Kind::Postgres
    }
}

/// A pooled connection idle for longer than this is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(5);

/// Pool settings shared by the read and write pools: timeouts and per-connection setup.
fn pool_options(kind: DbKind, timeout: Duration) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .min_connections(0)
        .acquire_timeout(timeout)
        // sqlx pings on every acquire by default: a round trip (and on SQLite two thread
        // hops) before every query. A connection in steady use is known to work, and one
        // that breaks is dropped by sqlx on its first error; only a connection that sat idle
        // (the server or a proxy may have closed it) is checked first.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                let setup = match kind {
                    // WAL lets readers run beside the one writer; FULL makes a commit durable
                    // before the 201 is sent; the busy timeout covers other processes (CLI).
                    Kind::Sqlite => format!(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {};",
                        timeout.as_millis()
                    ),
                    Kind::Postgres => format!(
                        "SET synchronous_commit = on; SET statement_timeout = {}; \
                         SET lock_timeout = {};",
                        timeout.as_millis(),
                        timeout.as_millis()
                    ),
                };
                conn.execute(sqlx::raw_sql(&setup)).await?;
                Ok(())
            })
        })
}

use DbKind as Kind;

#[cfg(test)]
mod tests {
    #[test]
    fn values_placeholders_number_rows_then_columns() {
        use super::{DbKind, values_placeholders};
        assert_eq!(values_placeholders(DbKind::Postgres, 1, 2), "($1, $2)");
        assert_eq!(
            values_placeholders(DbKind::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(values_placeholders(DbKind::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }
}
