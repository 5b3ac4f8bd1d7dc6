//! Object storage for submitted files: local disk (the embedded default) or any
//! S3-compatible store. Keys are random hex chosen by the service, never user input.

mod instrumented;
mod local;
mod s3;
mod signing;

pub use instrumented::InstrumentedStore;
pub use local::LocalStore;
pub use s3::{S3Settings, S3Store};
pub use signing::{UrlSigner, VerifyError};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use std::path::Path;
use std::time::Duration;

/// Headers stored with an object and sent back on download.
#[derive(Debug, Clone)]
pub struct ObjectHeaders {
    /// `Content-Type`.
    pub content_type: String,
    /// `Content-Disposition: attachment; filename=…`.
    pub content_disposition: String,
}

/// What can go wrong talking to storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No object under that key.
    #[error("object not found")]
    NotFound,
    /// The call did not finish within the configured timeout.
    #[error("storage call timed out")]
    Timeout,
    /// Anything else.
    #[error("storage error: {0}")]
    Other(String),
}

impl From<std::io::Error> for StorageError {
    fn from(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::NotFound {
            Self::NotFound
        } else {
            Self::Other(error.to_string())
        }
    }
}

impl From<object_store::Error> for StorageError {
    fn from(error: object_store::Error) -> Self {
        match error {
            object_store::Error::NotFound { .. } => Self::NotFound,
            other => Self::Other(other.to_string()),
        }
    }
}

/// A stream of an object's bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// Bytes per read when a file on disk is streamed (a stored file served or exported, a
/// spooled file sent to S3): each read of a tokio file is a hop to the blocking pool, so
/// tokio-util's default of 4 KiB would cost 256 hops per MiB.
pub const FILE_READ_CHUNK: usize = 128 * 1024;

/// A file on disk as a stream of [`FILE_READ_CHUNK`]-sized chunks.
pub fn file_stream(file: tokio::fs::File) -> tokio_util::io::ReaderStream<tokio::fs::File> {
    tokio_util::io::ReaderStream::with_capacity(file, FILE_READ_CHUNK)
}

/// The operations the service needs from a store.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores the complete, already-synced file at `file` under `key`.
    async fn put_file(
        &self,
        key: &str,
        file: &Path,
        size: u64,
        headers: &ObjectHeaders,
    ) -> Result<(), StorageError>;

    /// Deletes `key`; a missing object counts as deleted.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// A URL that downloads `key` until `ttl` has passed.
    async fn download_url(&self, key: &str, ttl: Duration) -> Result<String, StorageError>;

    /// Every key in the store (for audits and the orphan scan).
    async fn list_keys(&self) -> Result<Vec<String>, StorageError>;

    /// The object's bytes as a stream.
    async fn get(&self, key: &str) -> Result<ByteStream, StorageError>;

    /// Answers when the store does.
    async fn check(&self) -> Result<(), StorageError>;

    /// Where uploads are spooled before `put_file`: on the same file system as a local
    /// store, so that storing is a rename.
    fn spool_dir(&self) -> &Path;
}

/// Runs one storage call under a timeout.
pub(crate) async fn timed<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or(Err(StorageError::Timeout))
}

/// Removes spool files older than `age` (left by a crash; live ones are younger).
pub async fn remove_stale_spool_files(dir: &Path, age: Duration) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let modified = entry.metadata().await?.modified()?;
        if modified.elapsed().unwrap_or_default() > age {
            tokio::fs::remove_file(entry.path()).await?;
            removed += 1;
        }
    }
    Ok(removed)
}
