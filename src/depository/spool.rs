//! Receiving an upload: bytes go to a temporary file while MD5 and SHA-256 are computed and
//! the size limit is enforced, so memory stays flat whatever the file size.
//!
//! Chunks are collected (without copying) until [`BATCH_BYTES`] are pending, then hashed and
//! written by one blocking task: a few thread hops per file instead of one per chunk, and the
//! hashing stays off the async workers. The file is not synced here: the store decides
//! whether it needs to be (the local store keeps this very file; S3 only reads it).

use bytes::Bytes;
use md5::{Digest as _, Md5};
use sha2::Sha256;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use tempfile::TempPath;

/// Bytes held in memory per upload before they are written out.
const BATCH_BYTES: usize = 128 * 1024;

/// The file and the running digests, moved into each blocking write and back.
struct Sink {
    file: std::fs::File,
    md5: Md5,
    sha256: Sha256,
}

impl Sink {
    fn absorb(&mut self, chunks: &[Bytes]) -> std::io::Result<()> {
        for chunk in chunks {
            self.md5.update(chunk);
            self.sha256.update(chunk);
            self.file.write_all(chunk)?;
        }
        Ok(())
    }
}

/// A file being received.
pub struct Spool {
    sink: Option<Sink>,
    pending: Vec<Bytes>,
    pending_bytes: usize,
    path: TempPath,
    size: u64,
    limit: u64,
}

/// A completely received file. The temporary file is removed on drop unless a
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
            sink: Some(Sink {
                file,
                md5: Md5::new(),
                sha256: Sha256::new(),
            }),
            pending: Vec::new(),
            pending_bytes: 0,
            path,
            size: 0,
            limit,
        })
    }

    /// Appends a chunk; refuses it if the total would pass the limit.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), SpoolError> {
        let size = self.size + chunk.len() as u64;
        if size > self.limit {
            return Err(SpoolError::TooLarge);
        }
        self.size = size;
        self.pending_bytes += chunk.len();
        self.pending.push(chunk);
        if self.pending_bytes >= BATCH_BYTES {
            self.write_pending().await?;
        }
        Ok(())
    }

    async fn write_pending(&mut self) -> Result<(), SpoolError> {
        let chunks = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let mut sink = self
            .sink
            .take()
            .ok_or_else(|| std::io::Error::other("an earlier write failed"))?;
        let sink = tokio::task::spawn_blocking(move || sink.absorb(&chunks).map(|()| sink))
            .await
            .map_err(std::io::Error::other)??;
        self.sink = Some(sink);
        Ok(())
    }

    /// Bytes so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes what is pending and returns the file with its digests (not yet synced).
    pub async fn finish(mut self) -> Result<SpooledFile, SpoolError> {
        self.write_pending().await?;
        let sink = self
            .sink
            .take()
            .ok_or_else(|| std::io::Error::other("no file"))?;
        Ok(SpooledFile {
            path: self.path,
            size: self.size,
            md5: hex::encode(sink.md5.finalize()),
            sha256: hex::encode(sink.sha256.finalize()),
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
        spool.write(Bytes::from_static(b"abc")).await.unwrap();
        spool.write(Bytes::from_static(b"de")).await.unwrap();
        assert!(matches!(
            spool.write(Bytes::from_static(b"f")).await,
            Err(SpoolError::TooLarge)
        ));
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

    #[tokio::test]
    async fn many_chunks_across_batches_keep_order_and_digests() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut spool = Spool::create(dir.path(), data.len() as u64).await.unwrap();
        for chunk in data.chunks(7_001) {
            spool.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        let file = spool.finish().await.unwrap();
        assert_eq!(file.size, data.len() as u64);
        assert_eq!(std::fs::read(file.path()).unwrap(), data);
        assert_eq!(file.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(file.md5, hex::encode(Md5::digest(&data)));
    }
}
