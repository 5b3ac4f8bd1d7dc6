//! Group commit for the service's frequent writes: upload reservations, upload records and
//! the audit events of refusals and disclosures. Concurrent callers' writes share one
//! transaction, so one fsync serves many requests and SQLite's single writer is never
//! fought over; each caller still waits until its write is committed, so nothing is
//! acknowledged before it is durable.
//!
//! If a statement of a shared batch fails, nothing of it was committed, and each write is
//! retried in a transaction of its own so that one bad write fails alone. If the commit
//! itself fails (or times out), the outcome is unknown and every caller gets the error.

use super::queries::{CommitOutcome, REASON_UPLOAD, UploadCommit, commit_upload_in};
use super::{Db, DbError, audit};
use crate::domain::audit::AuditEntry;
use crate::domain::time;
use sqlx::pool::PoolConnection;
use tokio::sync::{mpsc, oneshot};

/// One write.
#[derive(Debug, Clone)]
pub enum BatchOp {
    /// Append an event to the audit log.
    Audit(AuditEntry),
    /// Reserve a storage key before its object is written (see `pending_delete`).
    Reserve {
        /// The key.
        key: String,
        /// Until when the sweeper leaves it alone.
        lease_until: String,
    },
    /// Record an accepted upload (see [`UploadCommit`]).
    Upload(Box<UploadCommit>),
}

/// What a committed write produced.
#[derive(Debug)]
pub enum BatchOutcome {
    /// Written.
    Done,
    /// The upload's outcome.
    Upload(CommitOutcome),
}

type Reply = oneshot::Sender<Result<BatchOutcome, String>>;

/// Most writes in one transaction.
const MAX_BATCH: usize = 256;

/// A handle to the group-commit task; cloning it is cheap.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    sender: mpsc::Sender<(BatchOp, Reply)>,
}

/// Where a batch failed.
enum BatchFailure {
    /// A statement failed; the transaction was rolled back and nothing was written.
    Statement(DbError),
    /// Beginning or committing failed or timed out: the outcome may be unknown.
    Commit(DbError),
}

impl GroupCommit {
    /// Starts the task; it ends when every handle is dropped.
    pub fn start(db: Db) -> Self {
        let (sender, mut receiver) = mpsc::channel::<(BatchOp, Reply)>(1024);
        tokio::spawn(async move {
            let mut held = HeldWriter::default();
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (ops, replies): (Vec<BatchOp>, Vec<Reply>) = batch.into_iter().unzip();
                let mut conn = match held.take() {
                    Some(conn) => conn,
                    None => match db.acquire_writer().await {
                        Ok(conn) => conn,
                        Err(error) => {
                            let error = error.to_string();
                            for reply in replies {
                                let _ = reply.send(Err(error.clone()));
                            }
                            continue;
                        }
                    },
                };
                let results = db.write_batch_on(&mut conn, &ops).await;
                let healthy = results.iter().all(Result::is_ok);
                held.keep_if(conn, healthy && !receiver.is_empty());
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
        });
        Self { sender }
    }

    /// Writes `op` together with whatever else is waiting, and returns once committed.
    pub async fn submit(&self, op: BatchOp) -> Result<BatchOutcome, DbError> {
        let (reply, committed) = oneshot::channel();
        self.sender
            .send((op, reply))
            .await
            .map_err(|_| DbError::Batch("the group-commit task has stopped".into()))?;
        committed
            .await
            .map_err(|_| DbError::Batch("the group-commit task has stopped".into()))?
            .map_err(DbError::Batch)
    }

    /// Records an accepted upload (see [`UploadCommit`]).
    pub async fn commit_upload(&self, upload: UploadCommit) -> Result<CommitOutcome, DbError> {
        match self.submit(BatchOp::Upload(Box::new(upload))).await? {
            BatchOutcome::Upload(outcome) => Ok(outcome),
            BatchOutcome::Done => Err(DbError::Batch("no outcome for an upload".into())),
        }
    }
}

/// The writer connection, held by the group-commit task across back-to-back batches: taking
/// a connection from the pool and giving it back cost sqlx a round trip each (it pings a
/// connection on release), which on SQLite's one writer connection is a gap between batches.
/// It goes back to the pool as soon as no batch is waiting, or after
/// [`MAX_HELD_BATCHES`], so other writers wait at most that long.
#[derive(Default)]
struct HeldWriter {
    conn: Option<PoolConnection<sqlx::Any>>,
    batches: usize,
}

/// Most batches in a row on one held writer connection.
const MAX_HELD_BATCHES: usize = 16;

impl HeldWriter {
    fn take(&mut self) -> Option<PoolConnection<sqlx::Any>> {
        self.conn.take()
    }

    /// Keeps `conn` for the next batch if `more` and the run is not too long; otherwise
    /// returns it to the pool.
    fn keep_if(&mut self, conn: PoolConnection<sqlx::Any>, more: bool) {
        self.batches += 1;
        if more && self.batches < MAX_HELD_BATCHES {
            self.conn = Some(conn);
        } else {
            self.batches = 0;
        }
    }
}

impl Db {
    /// Applies `ops` in one transaction and returns each one's result (see
    /// [`Db::write_batch_on`]).
    pub async fn write_batch(&self, ops: &[BatchOp]) -> Vec<Result<BatchOutcome, String>> {
        match self.acquire_writer().await {
            Ok(mut conn) => self.write_batch_on(&mut conn, ops).await,
            Err(error) => ops.iter().map(|_| Err(error.to_string())).collect(),
        }
    }

    /// Applies `ops` in one transaction on `conn` and returns each one's result. When a
    /// statement fails, each op is retried in a transaction of its own, so one bad write
    /// fails alone.
    async fn write_batch_on(
        &self,
        conn: &mut PoolConnection<sqlx::Any>,
        ops: &[BatchOp],
    ) -> Vec<Result<BatchOutcome, String>> {
        match self.apply_batch(conn, ops).await {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            Err(BatchFailure::Statement(_)) if ops.len() > 1 => {
                let mut results = Vec::with_capacity(ops.len());
                for op in ops {
                    results.push(
                        match self.apply_batch(conn, std::slice::from_ref(op)).await {
                            Ok(mut outcomes) => Ok(outcomes.remove(0)),
                            Err(BatchFailure::Statement(e) | BatchFailure::Commit(e)) => {
                                Err(e.to_string())
                            }
                        },
                    );
                }
                results
            }
            Err(BatchFailure::Statement(error) | BatchFailure::Commit(error)) => {
                let error = error.to_string();
                ops.iter().map(|_| Err(error.clone())).collect()
            }
        }
    }

    /// Applies writes in one transaction, in order: reservations and uploads as they come,
    /// audit events last (the audit head's row lock is always the last lock a transaction
    /// takes).
    async fn apply_batch(
        &self,
        conn: &mut PoolConnection<sqlx::Any>,
        ops: &[BatchOp],
    ) -> Result<Vec<BatchOutcome>, BatchFailure> {
        let mut tx = self
            .timed(sqlx::Connection::begin(&mut **conn))
            .await
            .map_err(BatchFailure::Commit)?;
        let outcomes = self
            .timed(async {
                let now = time::now();
                let mut outcomes = Vec::with_capacity(ops.len());
                let mut events = Vec::new();
                for op in ops {
                    outcomes.push(match op {
                        BatchOp::Reserve { key, lease_until } => {
                            sqlx::query(
                                "INSERT INTO pending_delete \
                                 (storage_key, reason, not_before, created_at) \
                                 VALUES ($1, $2, $3, $4)",
                            )
                            .bind(key)
                            .bind(REASON_UPLOAD)
                            .bind(lease_until)
                            .bind(&now)
                            .execute(&mut *tx)
                            .await?;
                            BatchOutcome::Done
                        }
                        BatchOp::Upload(upload) => BatchOutcome::Upload(
                            commit_upload_in(&mut tx, upload, &mut events).await?,
                        ),
                        BatchOp::Audit(entry) => {
                            events.push(entry.clone());
                            BatchOutcome::Done
                        }
                    });
                }
                audit::append_many(&mut tx, &events).await?;
                Ok(outcomes)
            })
            .await
            .map_err(|error| match error {
                DbError::Timeout => BatchFailure::Commit(error),
                other => BatchFailure::Statement(other),
            })?;
        self.timed(tx.commit())
            .await
            .map_err(BatchFailure::Commit)?;
        Ok(outcomes)
    }
}
