//! A store decorator that records each call's latency.

use super::{BlobStore, ByteStream, ObjectHeaders, StorageError};
use crate::metrics::Metrics;
use async_trait::async_trait;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Wraps a store and times its calls into [`Metrics`].
pub struct InstrumentedStore {
    inner: Arc<dyn BlobStore>,
    metrics: Arc<Metrics>,
}

impl InstrumentedStore {
    /// Times `inner`'s calls.
    pub fn new(inner: Arc<dyn BlobStore>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(&self, operation: &str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        self.metrics.storage_call(operation, started.elapsed());
        result
    }
}

#[async_trait]
impl BlobStore for InstrumentedStore {
    async fn put_file(
        &self,
        key: &str,
        file: &Path,
        size: u64,
        headers: &ObjectHeaders,
    ) -> Result<(), StorageError> {
        self.timed("put", self.inner.put_file(key, file, size, headers))
            .await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.timed("delete", self.inner.delete(key)).await
    }
    async fn download_url(&self, key: &str, ttl: Duration) -> Result<String, StorageError> {
        self.timed("sign", self.inner.download_url(key, ttl)).await
    }
    async fn list_keys(&self) -> Result<Vec<String>, StorageError> {
        self.timed("list", self.inner.list_keys()).await
    }
    async fn get(&self, key: &str) -> Result<ByteStream, StorageError> {
        self.timed("get", self.inner.get(key)).await
    }
    async fn check(&self) -> Result<(), StorageError> {
        self.timed("check", self.inner.check()).await
    }
    fn spool_dir(&self) -> &Path {
        self.inner.spool_dir()
    }
}
