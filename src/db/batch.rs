//! Group commit for small independent writes (audit events of refusals and disclosures,
//! upload reservations). Concurrent callers' writes share one transaction, so one fsync
//! serves many requests; each caller still waits until its write is committed, so nothing
//! is acknowledged before it is durable.

use super::{Db, DbError, audit};
use crate::domain::audit::AuditEntry;
use crate::domain::time;
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
}

type Reply = oneshot::Sender<Result<(), String>>;

/// Most writes in one transaction.
const MAX_BATCH: usize = 256;

/// A handle to the group-commit task; cloning it is cheap.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    sender: mpsc::Sender<(BatchOp, Reply)>,
}

impl GroupCommit {
    /// Starts the task; it ends when every handle is dropped.
    pub fn start(db: Db) -> Self {
        let (sender, mut receiver) = mpsc::channel::<(BatchOp, Reply)>(1024);
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (ops, replies): (Vec<BatchOp>, Vec<Reply>) = batch.into_iter().unzip();
                let result = db.apply_batch(&ops).await.map_err(|e| e.to_string());
                for reply in replies {
                    let _ = reply.send(result.clone());
                }
            }
        });
        Self { sender }
    }

    /// Writes `op` together with whatever else is waiting, and returns once committed.
    pub async fn submit(&self, op: BatchOp) -> Result<(), DbError> {
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
}

impl Db {
    /// Applies writes in one transaction: reservations first, audit events last (the audit
    /// head's row lock is always the last lock a transaction takes).
    pub async fn apply_batch(&self, ops: &[BatchOp]) -> Result<(), DbError> {
        self.timed(async {
            let mut tx = self.begin().await?;
            let now = time::now();
            for op in ops {
                if let BatchOp::Reserve { key, lease_until } = op {
                    sqlx::query(
                        "INSERT INTO pending_delete (storage_key, reason, not_before, created_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(key)
                    .bind(super::queries::REASON_UPLOAD)
                    .bind(lease_until)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            let events: Vec<AuditEntry> = ops
                .iter()
                .filter_map(|op| match op {
                    BatchOp::Audit(entry) => Some(entry.clone()),
                    BatchOp::Reserve { .. } => None,
                })
                .collect();
            audit::append_many(&mut tx, &events).await?;
            tx.commit().await
        })
        .await
    }
}
