//! The ZIP export: every student's current file as `<nickname>/<original file name>` plus a
//! `manifest.csv`, streamed so memory stays flat whatever the archive size. A storage
//! failure mid-way ends the stream with an error, never with a well-formed but incomplete
//! archive.
//!
//! The ZIP writer runs inside the response body's `poll_next`, writing into a small buffer
//! that the body hands to hyper when it fills: no task and no channel between the archive
//! and the socket, so a chunk costs no thread wake-up on its way out.

use super::{Depository, DepositoryError};
use async_zip::base::write::ZipFileWriter;
use async_zip::{Compression, ZipDateTime, ZipEntryBuilder};
use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

/// A chunk of the archive, or the error that ended it.
pub type ArchiveChunk = Result<Bytes, std::io::Error>;

/// Archive bytes are handed out in chunks of about this size.
const CHUNK: usize = 256 * 1024;

const MANIFEST_HEADER: &str =
    "nickname,first_name,last_name,verification_code,size_bytes,sha256,uploaded_at,file\r\n";

/// An entry's modification time: the upload time for files (UTC; ZIP times have no zone).
fn zip_time(stored: &str) -> ZipDateTime {
    let at = chrono::DateTime::parse_from_rfc3339(stored)
        .map(|at| at.to_utc())
        .unwrap_or_else(|_| chrono::Utc::now());
    ZipDateTime::from_chrono(&at)
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// The archive being written, as a stream of chunks.
pub struct ArchiveStream {
    writing: Option<BoxFuture<'static, Result<(), String>>>,
    buffer: Arc<Mutex<BytesMut>>,
    /// Why writing stopped, reported once the bytes before it are out.
    failure: Option<std::io::Error>,
    /// Whether the stream said "not ready" once after the failure.
    flushed_before_failure: bool,
}

/// The writer's end of [`ArchiveStream`]'s buffer.
struct BufferWriter(Arc<Mutex<BytesMut>>);

impl tokio::io::AsyncWrite for BufferWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if buffer.len() >= CHUNK {
            // Full: `ArchiveStream::poll_next` hands the chunk out and polls the writer again.
            return Poll::Pending;
        }
        if buffer.capacity() == 0 {
            buffer.reserve(CHUNK);
        }
        let taken = data.len().min(CHUNK - buffer.len());
        buffer.extend_from_slice(&data[..taken]);
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl ArchiveStream {
    fn take_chunk(&self) -> Option<Bytes> {
        let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        (!buffer.is_empty()).then(|| buffer.split().freeze())
    }
}

impl Stream for ArchiveStream {
    type Item = ArchiveChunk;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ArchiveChunk>> {
        let this = self.get_mut();
        if let Some(writing) = &mut this.writing {
            let full = this
                .buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
                >= CHUNK;
            if !full {
                match writing.as_mut().poll(cx) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(())) => this.writing = None,
                    Poll::Ready(Err(error)) => {
                        this.writing = None;
                        tracing::error!(%error, "export failed mid-stream");
                        this.failure = Some(std::io::Error::other(error));
                    }
                }
            }
        }
        match (this.take_chunk(), &this.writing) {
            (Some(chunk), _) => Poll::Ready(Some(Ok(chunk))),
            (None, Some(_)) => Poll::Pending,
            (None, None) if this.failure.is_some() && !this.flushed_before_failure => {
                // Not ready once more, so that hyper flushes what it was given (the headers
                // and the bytes before the failure) before the error aborts the response.
                this.flushed_before_failure = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            (None, None) => Poll::Ready(this.failure.take().map(Err)),
        }
    }
}

impl Depository {
    /// The archive, written as the returned stream is polled.
    pub async fn export_archive(&self) -> Result<ArchiveStream, DepositoryError> {
        let entries = self.db.current_submissions().await?;
        let buffer = Arc::new(Mutex::new(BytesMut::new()));
        let writer = BufferWriter(buffer.clone());
        let this = self.clone();
        Ok(ArchiveStream {
            writing: Some(Box::pin(async move {
                this.write_archive(writer, entries).await
            })),
            buffer,
            failure: None,
            flushed_before_failure: false,
        })
    }

    async fn write_archive<W>(
        &self,
        writer: W,
        entries: Vec<(crate::db::StudentRow, crate::db::SubmissionRow)>,
    ) -> Result<(), String>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        let mut zip = ZipFileWriter::with_tokio(writer);
        let mut manifest = String::from(MANIFEST_HEADER);
        for (student, submission) in &entries {
            let path = format!("{}/{}", student.nickname, submission.original_filename);
            manifest.push_str(&format!(
                "{},{},{},{},{},{},{},{}\r\n",
                student.nickname,
                csv_field(&student.first_name),
                csv_field(&student.last_name),
                submission.verification_code,
                submission.size_bytes,
                submission.sha256,
                submission.created_at,
                csv_field(&path),
            ));
        }
        let entry = ZipEntryBuilder::new("manifest.csv".into(), Compression::Stored)
            .last_modification_date(ZipDateTime::from_chrono(&chrono::Utc::now()));
        zip.write_entry_whole(entry, manifest.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        for (student, submission) in &entries {
            let path = format!("{}/{}", student.nickname, submission.original_filename);
            let mut object = self
                .store
                .get(&submission.storage_key)
                .await
                .map_err(|e| format!("reading {path}: {e}"))?;
            let entry = ZipEntryBuilder::new(path.clone().into(), Compression::Stored)
                .last_modification_date(zip_time(&submission.created_at));
            let mut file = zip
                .write_entry_stream(entry)
                .await
                .map_err(|e| e.to_string())?;
            while let Some(chunk) = object.next().await {
                let chunk = chunk.map_err(|e| format!("reading {path}: {e}"))?;
                futures_util::AsyncWriteExt::write_all(&mut file, &chunk)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            file.close().await.map_err(|e| e.to_string())?;
        }
        let mut inner = zip.close().await.map_err(|e| e.to_string())?.into_inner();
        tokio::io::AsyncWriteExt::shutdown(&mut inner)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
