//! The use cases of the service and the rules they enforce, over the database and the store.

mod export;
mod spool;
mod students;
mod sweep;
mod uploads;

pub use export::ArchiveChunk;
pub use spool::{Spool, SpoolError, SpooledFile};
pub use students::StudentPage;
pub use sweep::SweepReport;
pub use uploads::{DownloadLink, LocalDownload, UploadCompletion, UploadSlot};

use crate::db::{Db, DbError};
use crate::domain::student::FieldError;
use crate::storage::{BlobStore, StorageError};
use std::sync::Arc;
use std::time::Duration;

/// The configurable rules of SPEC section 1.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Largest accepted file, in bytes (a file of exactly this size is accepted).
    pub max_submission_bytes: u64,
    /// Accepted uploads per student.
    pub submissions_per_student: i64,
    /// Lifetime of a download URL.
    pub download_url_expires: Duration,
    /// How long a stored file is kept after its upload.
    pub retention: Duration,
    /// Upper bound on one storage call.
    pub storage_timeout: Duration,
    /// Upper bound on one database call.
    pub db_timeout: Duration,
    /// When uploads are accepted.
    pub window: crate::domain::window::SubmissionWindow,
    /// The service's public URL, named in receipts.
    pub service_url: String,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            max_submission_bytes: 3 * 1024 * 1024,
            submissions_per_student: 5,
            download_url_expires: Duration::from_secs(600),
            retention: Duration::from_secs(259_200),
            storage_timeout: Duration::from_secs(20),
            db_timeout: Duration::from_secs(5),
            window: crate::domain::window::SubmissionWindow::default(),
            service_url: "http://127.0.0.1:8000".into(),
        }
    }
}

/// Failures a use case reports; the HTTP layer maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum DepositoryError {
    /// Unknown code or nickname.
    #[error("{0}")]
    NotFound(&'static str),
    /// The submission was replaced or expired.
    #[error("{0}")]
    Gone(&'static str),
    /// Invalid fields of a new student.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// A refused request that uses no attempt (duplicate, limit reached, no file, …).
    #[error("{0}")]
    Unprocessable(String),
    /// A roster with bad lines; nothing was imported.
    #[error("invalid roster")]
    Roster(Vec<crate::domain::roster::LineError>),
    /// The student has used every attempt.
    #[error("upload limit reached")]
    LimitReached,
    /// Outside the submission window; uses no attempt.
    #[error("{0}")]
    Forbidden(String),
    /// The file is over the size limit.
    #[error("file too large")]
    TooLarge,
    /// The store failed; nothing was recorded.
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
    /// The database failed.
    #[error("database failure: {0}")]
    Database(#[from] DbError),
}

/// The service's core: rules over a database and a store.
#[derive(Clone)]
pub struct Depository {
    /// The database.
    pub db: Db,
    /// The object store.
    pub store: Arc<dyn BlobStore>,
    /// The rules in force.
    pub rules: Rules,
    /// Where counters and latencies go.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Shares transactions between concurrent small writes.
    pub group: crate::db::GroupCommit,
    /// Signs receipts; `None` in tools that never issue any.
    pub receipts: Option<Arc<crate::receipts::ReceiptSigner>>,
}

impl Depository {
    /// Assembles the core.
    pub fn new(db: Db, store: Arc<dyn BlobStore>, rules: Rules) -> Self {
        Self {
            group: crate::db::GroupCommit::start(db.clone()),
            db,
            store,
            rules,
            metrics: Arc::new(crate::metrics::Metrics::new()),
            receipts: None,
        }
    }

    /// The same core signing receipts with `signer`.
    pub fn with_receipts(mut self, signer: crate::receipts::ReceiptSigner) -> Self {
        self.receipts = Some(Arc::new(signer));
        self
    }

    /// The same core reporting into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// How long an upload's key stays reserved, and how long a sweeper's claim lasts:
    /// longer than one store call plus one commit, each bounded by its timeout.
    pub fn reservation_lease(&self) -> Duration {
        self.rules.storage_timeout * 2 + self.rules.db_timeout * 2 + Duration::from_secs(10)
    }
}
