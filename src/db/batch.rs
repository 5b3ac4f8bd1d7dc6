//! Group commit for the service's frequent writes: upload reservations, upload records and
//! the audit events of refusals and disclosures. Concurrent callers' writes share one
//! transaction, so one fsync serves many requests and SQLite's single writer is never
//! fought over; each caller still waits until its write is committed, so nothing is
//! acknowledged before it is durable.
//!
//! If a statement of a shared batch fails, nothing of it was committed, and each write is
//! retried in a transaction of its own so that one bad write fails alone. If the commit
//! itself fails (or times out), the outcome is unknown and every caller gets the error.

use super::models::SUBMISSION_COLUMNS;
use super::queries::{CommitOutcome, REASON_UPLOAD, UploadCommit, commit_upload_in};
use super::{Db, DbError, DbKind, SubmissionRow, audit, kind_of, placeholder, values_placeholders};
use crate::domain::audit::AuditEntry;
use crate::domain::time;
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use std::collections::HashMap;
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
    /// Look a submission up by verification code and, if it can be downloaded now, record
    /// its disclosure: `event` with the subject `submission:<id>`. The lookups of a batch
    /// are one query, read in the transaction that records them.
    Disclose {
        /// The code the client sent.
        verification_code: String,
        /// The event to record (its subject is filled in).
        event: AuditEntry,
    },
}

impl BatchOp {
    /// Whether the op can be written by SQLite's fused batch (see `Db::apply_fused`).
    fn is_fusable(&self) -> bool {
        !matches!(self, Self::Upload(_))
    }
}

/// What a committed write produced.
#[derive(Debug)]
pub enum BatchOutcome {
    /// Written.
    Done,
    /// The upload's outcome.
    Upload(CommitOutcome),
    /// The submission behind the code, whatever its state (its disclosure was recorded if it
    /// is downloadable); `None` for an unknown code.
    Disclosed(Option<SubmissionRow>),
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
            _ => Err(DbError::Batch("no outcome for an upload".into())),
        }
    }

    /// The submission behind `verification_code`, with its disclosure (`event`) recorded
    /// before this returns if it can be downloaded; `None` for an unknown code.
    pub async fn disclose(
        &self,
        verification_code: &str,
        event: AuditEntry,
    ) -> Result<Option<SubmissionRow>, DbError> {
        let op = BatchOp::Disclose {
            verification_code: verification_code.to_owned(),
            event,
        };
        match self.submit(op).await? {
            BatchOutcome::Disclosed(submission) => Ok(submission),
            _ => Err(DbError::Batch("no outcome for a disclosure".into())),
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
        if self.kind == DbKind::Sqlite && ops.iter().all(BatchOp::is_fusable) {
            return self.apply_fused(conn, ops).await;
        }
        let mut tx = self
            .timed(sqlx::Connection::begin(&mut **conn))
            .await
            .map_err(BatchFailure::Commit)?;
        let outcomes = self
            .timed(async {
                let now = time::now();
                let disclosed = read_disclosed(&mut tx, ops).await?;
                let mut events = disclosed.events(&now);
                let mut outcomes = Vec::with_capacity(ops.len());
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
                        BatchOp::Disclose {
                            verification_code, ..
                        } => BatchOutcome::Disclosed(disclosed.row(verification_code)),
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

    /// SQLite only: a batch of reservations and audit events in two calls to the driver's
    /// worker thread instead of four or more (each call is a thread hop, the larger part of
    /// a small batch's time): `BEGIN IMMEDIATE`, the reservations and the head update that
    /// takes the events' ids in the first; the events, the head's new hash and `COMMIT` in
    /// the second. SQLite stops a call at its first failing statement, so a failure never
    /// reaches the `COMMIT`.
    async fn apply_fused(
        &self,
        conn: &mut PoolConnection<sqlx::Any>,
        ops: &[BatchOp],
    ) -> Result<Vec<BatchOutcome>, BatchFailure> {
        let mut reservations = Vec::new();
        let mut audited = Vec::new();
        for op in ops {
            match op {
                BatchOp::Reserve { key, lease_until } => reservations.push((key, lease_until)),
                BatchOp::Audit(entry) => audited.push(entry.clone()),
                BatchOp::Disclose { .. } => {}
                BatchOp::Upload(_) => unreachable!("uploads are not fused"),
            }
        }
        let codes = disclosed_codes(ops);
        let now = time::now();
        let calls = async {
            let mut sql = String::from("BEGIN IMMEDIATE");
            if !reservations.is_empty() {
                sql.push_str(
                    "; INSERT INTO pending_delete (storage_key, reason, not_before, created_at) \
                     VALUES ",
                );
                sql.push_str(&values_placeholders(DbKind::Sqlite, reservations.len(), 4));
            }
            sql.push_str("; ");
            // Without lookups the number of events is known, and the first call takes their
            // ids; lookups decide it, so then the ids take a call of their own.
            if !codes.is_empty() {
                sql.push_str(&disclosures_query(DbKind::Sqlite, codes.len()));
            } else if audited.is_empty() {
                sql.push_str("COMMIT");
            } else {
                sql.push_str(&audit::take_ids_statement());
            }
            // Not cached: the text differs with the number of rows.
            let mut first = sqlx::query(&sql).persistent(false);
            for (key, lease_until) in &reservations {
                first = first
                    .bind(*key)
                    .bind(REASON_UPLOAD)
                    .bind(*lease_until)
                    .bind(&now);
            }
            if codes.is_empty() && audited.is_empty() {
                first.execute(&mut **conn).await?;
                return Ok(Disclosures::default());
            }
            for code in &codes {
                first = first.bind(*code);
            }
            if codes.is_empty() {
                first = first.bind(audited.len() as i64);
            }
            // All rows, not `fetch_one`: that stops reading at the first statement's result,
            // which would cut the call short after `BEGIN`.
            let rows = first.fetch_all(&mut **conn).await?;
            let (disclosures, events, head) = if codes.is_empty() {
                (Disclosures::default(), audited, rows.into_iter().next())
            } else {
                let disclosures = Disclosures::new(ops, &rows)?;
                let mut events = disclosures.events(&now);
                events.extend(audited);
                if events.is_empty() {
                    sqlx::query("COMMIT").execute(&mut **conn).await?;
                    return Ok(disclosures);
                }
                let head = sqlx::query(&audit::take_ids_statement())
                    .bind(events.len() as i64)
                    .fetch_one(&mut **conn)
                    .await?;
                (disclosures, events, Some(head))
            };
            let head = head.ok_or(sqlx::Error::RowNotFound)?;
            let chained = audit::Chained::after(&head, &events)?;
            let sql = chained.insert_and_commit();
            chained
                .bind_all(sqlx::query(&sql).persistent(false))
                .execute(&mut **conn)
                .await?;
            Ok(disclosures)
        };
        match self.timed(calls).await {
            Ok(disclosures) => Ok(disclosures.outcomes(ops)),
            Err(error) => Err(self.roll_back_fused(conn, error).await),
        }
    }

    /// Ends a failed fused batch. A constraint violation rolled back cleanly is a statement
    /// failure (each write is then retried alone); anything else may have left the outcome
    /// unknown. A connection that cannot roll back is closed instead of reused, so no
    /// transaction is ever left open on it.
    async fn roll_back_fused(
        &self,
        conn: &mut PoolConnection<sqlx::Any>,
        error: DbError,
    ) -> BatchFailure {
        let rolled_back = self
            .timed(sqlx::query("ROLLBACK").execute(&mut **conn))
            .await
            .is_ok();
        if !rolled_back {
            conn.close_on_drop();
        }
        if rolled_back && error.is_constraint_violation() {
            BatchFailure::Statement(error)
        } else {
            BatchFailure::Commit(error)
        }
    }
}

/// The distinct verification codes a batch looks up, in their first order.
fn disclosed_codes(ops: &[BatchOp]) -> Vec<&str> {
    let mut codes: Vec<&str> = Vec::new();
    for op in ops {
        if let BatchOp::Disclose {
            verification_code, ..
        } = op
            && !codes.contains(&verification_code.as_str())
        {
            codes.push(verification_code);
        }
    }
    codes
}

/// The query for `count` verification codes (parameters from the call's next one on).
fn disclosures_query(kind: DbKind, count: usize) -> String {
    let list: Vec<String> = (1..=count).map(|n| placeholder(kind, n)).collect();
    format!(
        "SELECT {SUBMISSION_COLUMNS} FROM submission sub WHERE sub.verification_code IN ({})",
        list.join(", ")
    )
}

/// Looks up every submission a batch discloses, in one query inside its transaction.
async fn read_disclosed<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ops: &'a [BatchOp],
) -> sqlx::Result<Disclosures<'a>> {
    let codes = disclosed_codes(ops);
    if codes.is_empty() {
        return Ok(Disclosures::default());
    }
    let sql = disclosures_query(kind_of(tx), codes.len());
    // Not cached: the text differs with the number of codes.
    let mut query = sqlx::query(&sql).persistent(false);
    for code in codes {
        query = query.bind(code);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    Disclosures::new(ops, &rows)
}

/// The lookups of a batch: what each code found, and the events that record them.
#[derive(Default)]
struct Disclosures<'a> {
    found: HashMap<String, SubmissionRow>,
    requests: Vec<(&'a str, &'a AuditEntry)>,
}

impl<'a> Disclosures<'a> {
    fn new(ops: &'a [BatchOp], rows: &[AnyRow]) -> sqlx::Result<Self> {
        let mut found = HashMap::with_capacity(rows.len());
        for row in rows {
            if let Some(submission) = SubmissionRow::from_row(row)? {
                found.insert(submission.verification_code.clone(), submission);
            }
        }
        let requests = ops
            .iter()
            .filter_map(|op| match op {
                BatchOp::Disclose {
                    verification_code,
                    event,
                } => Some((verification_code.as_str(), event)),
                _ => None,
            })
            .collect();
        Ok(Self { found, requests })
    }

    /// One event per lookup of a submission that can be downloaded at `now`, in the batch's
    /// order.
    fn events(&self, now: &str) -> Vec<AuditEntry> {
        self.requests
            .iter()
            .filter_map(|(code, event)| {
                let submission = self.found.get(*code)?;
                submission.is_downloadable_at(now).then(|| AuditEntry {
                    subject: format!("submission:{}", submission.id),
                    ..(*event).clone()
                })
            })
            .collect()
    }

    fn row(&self, code: &str) -> Option<SubmissionRow> {
        self.found.get(code).cloned()
    }

    /// The outcomes of a batch without uploads: each lookup's submission, `Done` for the rest.
    fn outcomes(&self, ops: &[BatchOp]) -> Vec<BatchOutcome> {
        ops.iter()
            .map(|op| match op {
                BatchOp::Disclose {
                    verification_code, ..
                } => BatchOutcome::Disclosed(self.row(verification_code)),
                _ => BatchOutcome::Done,
            })
            .collect()
    }
}
