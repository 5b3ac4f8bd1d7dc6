//! Receiving an upload: bytes go to a temporary file while MD5 and SHA-256 are computed and
//! the size limit is enforced, so memory stays flat whatever the file size.

use md5::{Digest as _, Md5};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

/// A file being received.
pub struct Spool {
    // Buffered: every write to a tokio file is a hop to the blocking pool, and multipart
    // chunks are small.
    file: tokio::io::BufWriter<tokio::fs::File>,
    path: TempPath,
    size: u64,
    limit: u64,
    md5: Md5,
    sha256: Sha256,
}

/// A completely received and synced file. The temporary file is removed on drop unless a
/// store moved it.
pub struct SpooledFile {
    path: TempPath,
    /// Exact size in bytes.
    pub size: u64,
    /// Lowercase hex MD5.
    pub md5: String,
    /// Lowercase hex SHA-256.
    pub sha256: String,
}

/// Why receiving stopped.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// More bytes than the limit.
    #[error("file too large")]
    TooLarge,
    /// The local disk failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Spool {
    /// A new empty spool file in `dir` accepting at most `limit` bytes.
    pub async fn create(dir: &Path, limit: u64) -> Result<Self, SpoolError> {
        let dir = dir.to_owned();
        let named = tokio::task::spawn_blocking(move || tempfile::NamedTempFile::new_in(dir))
            .await
            .map_err(std::io::Error::other)??;
        let (file, path) = named.into_parts();
        Ok(Self {
            file: tokio::io::BufWriter::with_capacity(64 * 1024, tokio::fs::File::from_std(file)),
            path,
            size: 0,
            limit,
            md5: Md5::new(),
            sha256: Sha256::new(),
        })
    }

    /// Appends a chunk; refuses it if the total would pass the limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), SpoolError> {
        let size = self.size + chunk.len() as u64;
        if size > self.limit {
            return Err(SpoolError::TooLarge);
        }
        self.file.write_all(chunk).await?;
        self.md5.update(chunk);
        self.sha256.update(chunk);
        self.size = size;
        Ok(())
    }

    /// Bytes so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flushes and syncs the file to disk and returns it with its digests.
    pub async fn finish(mut self) -> Result<SpooledFile, SpoolError> {
        self.file.flush().await?;
        self.file.get_ref().sync_all().await?;
        Ok(SpooledFile {
            path: self.path,
            size: self.size,
            md5: hex::encode(self.md5.finalize()),
            sha256: hex::encode(self.sha256.finalize()),
        })
    }
}

impl SpooledFile {
    /// Where the bytes are.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the file on disk past this value's drop (for tests and tools).
    pub fn keep(self) -> std::io::Result<PathBuf> {
        self.path.keep().map_err(|e| e.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::create(dir.path(), 5).await.unwrap();
        spool.write(b"abc").await.unwrap();
        spool.write(b"de").await.unwrap();
        assert!(matches!(spool.write(b"f").await, Err(SpoolError::TooLarge)));
        let file = spool.finish().await.unwrap();
        assert_eq!(file.size, 5);
        assert_eq!(file.md5, "ab56b4d92b40713acc5af89985d4b786");
        assert_eq!(
            file.sha256,
            "36bbe50ed96841d10443bcb670d6554f0a34b761be67ec9c4a8ad2c0c44ca42c"
        );
        assert_eq!(std::fs::read(file.path()).unwrap(), b"abcde");
        let path = file.path().to_owned();
        drop(file);
        assert!(!path.exists(), "spool file is removed on drop");
    }
}
