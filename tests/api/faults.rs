//! Fault injection: a store wrapper with switchable failures, and a TCP proxy that can
//! freeze a dependency the way SIGSTOP would, without touching the shared servers.

use crate::helpers::{Fixture, TestApp};
use async_trait::async_trait;
use exam_depository::storage::{BlobStore, ByteStream, ObjectHeaders, StorageError};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Switchable failures around a real store.
#[derive(Default)]
pub struct Faults {
    /// `put_file` stores the object, then panics (a crash before the commit).
    pub crash_after_put: AtomicBool,
    /// `delete` fails.
    pub fail_delete: AtomicBool,
    /// `get` fails.
    pub fail_get: AtomicBool,
    /// How many times `get` was called.
    pub gets: AtomicUsize,
}

pub struct FaultyStore {
    pub inner: Arc<dyn BlobStore>,
    pub faults: Arc<Faults>,
}

/// A server whose store is wrapped in a [`FaultyStore`], and the switches of its faults.
pub async fn spawn_faulty(fixture: &Fixture) -> (TestApp, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let handle = faults.clone();
    let app = TestApp::spawn_with(fixture.config(), move |inner| {
        Arc::new(FaultyStore {
            inner,
            faults: handle,
        })
    })
    .await;
    (app, faults)
}

#[async_trait]
impl BlobStore for FaultyStore {
    async fn put_file(
        &self,
        key: &str,
        file: &Path,
        size: u64,
        headers: &ObjectHeaders,
    ) -> Result<(), StorageError> {
        self.inner.put_file(key, file, size, headers).await?;
        if self.faults.crash_after_put.load(Ordering::SeqCst) {
            panic!("injected crash between storing and committing");
        }
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        if self.faults.fail_delete.load(Ordering::SeqCst) {
            return Err(StorageError::Other("injected delete failure".into()));
        }
        self.inner.delete(key).await
    }
    async fn download_url(&self, key: &str, ttl: Duration) -> Result<String, StorageError> {
        self.inner.download_url(key, ttl).await
    }
    async fn list_keys(&self) -> Result<Vec<String>, StorageError> {
        self.inner.list_keys().await
    }
    async fn get(&self, key: &str) -> Result<ByteStream, StorageError> {
        self.faults.gets.fetch_add(1, Ordering::SeqCst);
        if self.faults.fail_get.load(Ordering::SeqCst) {
            return Err(StorageError::Other("injected read failure".into()));
        }
        self.inner.get(key).await
    }
    async fn check(&self) -> Result<(), StorageError> {
        self.inner.check().await
    }
    fn spool_dir(&self) -> &Path {
        self.inner.spool_dir()
    }
}

/// A TCP proxy to a dependency. `freeze()` stops forwarding bytes and accepting upstream
/// connections (the dependency hangs, as under SIGSTOP); `thaw()` resumes.
pub struct FreezableProxy {
    pub port: u16,
    frozen: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezableProxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let flag = frozen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    wait_thawed(&flag).await;
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, flag.clone()),
                        pump(server_read, client_write, flag)
                    );
                });
            }
        });
        Self { port, frozen, task }
    }

    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_thawed(flag: &AtomicBool) {
    while flag.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        wait_thawed(&frozen).await;
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            let _ = to.shutdown().await;
            return;
        }
        wait_thawed(&frozen).await;
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
