//! Files in a directory of the data dir. Writes are crash-safe: the spooled file is synced,
//! renamed into place, then the directory is synced.

use super::{BlobStore, ByteStream, ObjectHeaders, StorageError, UrlSigner};
use async_trait::async_trait;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::io::ReaderStream;

/// The local-disk store; downloads go through the app's own signed `/files/…` route.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    spool: PathBuf,
    signer: UrlSigner,
    public_url: String,
}

impl LocalStore {
    /// Opens (creating) `data_dir/files` and `data_dir/tmp`.
    pub async fn open(
        data_dir: &Path,
        signer: UrlSigner,
        public_url: &str,
    ) -> Result<Self, StorageError> {
        let root = data_dir.join("files");
        let spool = data_dir.join("tmp");
        tokio::fs::create_dir_all(&root).await?;
        tokio::fs::create_dir_all(&spool).await?;
        Ok(Self {
            root,
            spool,
            signer,
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The signer that the `/files/…` route checks links with.
    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        if crate::domain::codes::looks_like_storage_key(key) {
            Ok(self.root.join(key))
        } else {
            Err(StorageError::Other("malformed storage key".into()))
        }
    }

    /// Opens a stored file for serving, with its length.
    pub async fn open_file(&self, key: &str) -> Result<(tokio::fs::File, u64), StorageError> {
        let file = tokio::fs::File::open(self.path_of(key)?).await?;
        let len = file.metadata().await?.len();
        Ok((file, len))
    }
}

/// Bytes per read when the export streams a file (one hop to the blocking pool each). Larger
/// reads were no faster here and cost RSS: glibc keeps freed 1 MiB buffers.
const EXPORT_READ_CHUNK: usize = 2 * super::FILE_READ_CHUNK;

#[async_trait]
impl BlobStore for LocalStore {
    async fn put_file(
        &self,
        key: &str,
        file: &Path,
        _size: u64,
        _headers: &ObjectHeaders,
    ) -> Result<(), StorageError> {
        let target = self.path_of(key)?;
        let (file, root) = (file.to_owned(), self.root.clone());
        // Sync the bytes, move them into place, sync the directory entry: one blocking task.
        tokio::task::spawn_blocking(move || {
            std::fs::File::open(&file)?.sync_all()?;
            std::fs::rename(&file, &target)?;
            std::fs::File::open(root)?.sync_all()
        })
        .await
        .map_err(|e| StorageError::Other(e.to_string()))??;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path_of(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn download_url(&self, key: &str, ttl: Duration) -> Result<String, StorageError> {
        let expires = chrono::Utc::now().timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(0);
        let signature = self.signer.sign(key, expires);
        Ok(format!(
            "{}/files/{key}?expires={expires}&signature={signature}",
            self.public_url
        ))
    }

    async fn list_keys(&self) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.root).await?;
        while let Some(entry) = entries.next_entry().await? {
            keys.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(keys)
    }

    async fn get(&self, key: &str) -> Result<ByteStream, StorageError> {
        let (file, _) = self.open_file(key).await?;
        Ok(ReaderStream::with_capacity(file, EXPORT_READ_CHUNK)
            .map(|r| r.map_err(StorageError::from))
            .boxed())
    }

    async fn check(&self) -> Result<(), StorageError> {
        if tokio::fs::metadata(&self.root).await?.is_dir() {
            Ok(())
        } else {
            Err(StorageError::Other(
                "the files directory is not a directory".into(),
            ))
        }
    }

    fn spool_dir(&self) -> &Path {
        &self.spool
    }
}
