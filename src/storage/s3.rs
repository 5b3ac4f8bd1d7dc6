//! Any S3-compatible store (Cloudflare R2, AWS S3, MinIO, Garage) through `object_store`.
//! Objects carry their `Content-Type` and `Content-Disposition`, so presigned downloads
//! come back with the same headers the app would send.

use super::{BlobStore, ByteStream, ObjectHeaders, StorageError, timed};
use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where and how to reach the bucket.
#[derive(Clone)]
pub struct S3Settings {
    /// Bucket name.
    pub bucket: String,
    /// Custom endpoint (R2, Garage, MinIO); `None` for AWS.
    pub endpoint: Option<String>,
    /// Region (`auto` for R2).
    pub region: Option<String>,
    /// Access key id; `None` to use the environment's AWS credentials.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Upper bound on one storage call.
    pub timeout: Duration,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

/// The S3 store.
pub struct S3Store {
    s3: Arc<AmazonS3>,
    http: reqwest::Client,
    timeout: Duration,
    spool: PathBuf,
}

impl S3Store {
    /// Builds the client; nothing is sent until the first call.
    pub async fn open(settings: &S3Settings, data_dir: &Path) -> Result<Self, StorageError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(settings.timeout)
                    .with_connect_timeout(settings.timeout.min(Duration::from_secs(5)))
                    .with_allow_http(true),
            )
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: settings.timeout,
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &settings.endpoint {
            // Custom endpoints (Garage, MinIO, R2) are addressed path-style.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let s3 = builder.build().map_err(StorageError::from)?;
        let spool = data_dir.join("tmp");
        tokio::fs::create_dir_all(&spool).await?;
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .timeout(settings.timeout)
            .build()
            .map_err(|e| StorageError::Other(e.to_string()))?;
        Ok(Self {
            s3: Arc::new(s3),
            http,
            timeout: settings.timeout,
            spool,
        })
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn put_file(
        &self,
        key: &str,
        file: &Path,
        size: u64,
        headers: &ObjectHeaders,
    ) -> Result<(), StorageError> {
        // Streamed from the spool file through a presigned PUT with an exact Content-Length,
        // so memory stays flat however many uploads are in flight (object_store's `put`
        // would hold the whole file in memory).
        let path = ObjectPath::from(key);
        timed(self.timeout, async {
            let url = self
                .s3
                .signed_url(axum::http::Method::PUT, &path, self.timeout)
                .await?;
            let body = tokio::fs::File::open(file).await?;
            let response = self
                .http
                .put(url)
                .header(reqwest::header::CONTENT_LENGTH, size)
                .header(reqwest::header::CONTENT_TYPE, &headers.content_type)
                .header(
                    reqwest::header::CONTENT_DISPOSITION,
                    &headers.content_disposition,
                )
                .body(reqwest::Body::wrap_stream(super::file_stream(body)))
                .send()
                .await
                .map_err(|e| StorageError::Other(format!("PUT failed: {}", e.without_url())))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(StorageError::Other(format!(
                    "PUT answered {}",
                    response.status()
                )))
            }
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = ObjectPath::from(key);
        timed(self.timeout, async {
            match self.s3.delete(&path).await {
                Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn download_url(&self, key: &str, ttl: Duration) -> Result<String, StorageError> {
        let path = ObjectPath::from(key);
        timed(self.timeout, async {
            let url = self
                .s3
                .signed_url(axum::http::Method::GET, &path, ttl)
                .await?;
            Ok(url.to_string())
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<String>, StorageError> {
        timed(self.timeout, async {
            let metas: Vec<_> = self.s3.list(None).try_collect().await?;
            Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<ByteStream, StorageError> {
        let path = ObjectPath::from(key);
        let result = timed(self.timeout, async { Ok(self.s3.get(&path).await?) }).await?;
        Ok(result.into_stream().map_err(StorageError::from).boxed())
    }

    async fn check(&self) -> Result<(), StorageError> {
        let probe = ObjectPath::from("readiness-probe");
        match timed(self.timeout, async { Ok(self.s3.head(&probe).await?) }).await {
            Ok(_) | Err(StorageError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn spool_dir(&self) -> &Path {
        &self.spool
    }
}
