//! The ZIP export: every student's current file as `<nickname>/<original file name>` plus a
//! `manifest.csv`, streamed through a bounded channel so memory stays flat whatever the
//! archive size. A storage failure mid-way ends the stream with an error, never with a
//! well-formed but incomplete archive.

use super::{Depository, DepositoryError};
use async_zip::base::write::ZipFileWriter;
use async_zip::{Compression, ZipEntryBuilder};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::io::{CopyToBytes, SinkWriter};
use tokio_util::sync::PollSender;

/// A chunk of the archive, or the error that ended it.
pub type ArchiveChunk = Result<Bytes, std::io::Error>;

const MANIFEST_HEADER: &str =
    "nickname,first_name,last_name,verification_code,size_bytes,sha256,uploaded_at,file\r\n";

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

impl Depository {
    /// Starts writing the archive; chunks arrive on the returned channel.
    pub async fn export_archive(&self) -> Result<mpsc::Receiver<ArchiveChunk>, DepositoryError> {
        let entries = self.db.current_submissions().await?;
        let (sender, receiver) = mpsc::channel::<ArchiveChunk>(8);
        let this = self.clone();
        tokio::spawn(async move {
            let failure = sender.clone();
            let sink = PollSender::new(sender)
                .sink_map_err(|_| std::io::Error::other("the client went away"))
                .with(|chunk: Bytes| std::future::ready(Ok::<_, std::io::Error>(Ok(chunk))));
            let writer = SinkWriter::new(CopyToBytes::new(sink));
            if let Err(error) = this.write_archive(writer, entries).await {
                tracing::error!(%error, "export failed mid-stream");
                let _ = failure.send(Err(std::io::Error::other(error))).await;
            }
        });
        Ok(receiver)
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
        let entry = ZipEntryBuilder::new("manifest.csv".into(), Compression::Stored);
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
            let entry = ZipEntryBuilder::new(path.clone().into(), Compression::Stored);
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
