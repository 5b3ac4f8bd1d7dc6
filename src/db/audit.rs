//! Appending to and reading the audit log. Appends happen inside the transaction of the
//! change they record, as its last statements: the row lock on `audit_head` orders every
//! append (across replicas), and taking it last keeps lock order the same everywhere.

use super::{Db, DbError};
use crate::domain::audit::{AuditEntry, AuditEvent, event_hash};
use crate::domain::time;
use sqlx::Row;

/// Events per INSERT statement (8 parameters each; well under both databases' limits).
const INSERT_ROWS: usize = 500;

pub(crate) async fn append(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    entry: &AuditEntry,
) -> sqlx::Result<()> {
    append_many(tx, std::slice::from_ref(entry)).await
}

/// Appends events in order: one head update to take their ids, multi-row inserts, one head
/// update to record the last hash.
pub(crate) async fn append_many(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    entries: &[AuditEntry],
) -> sqlx::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let head = sqlx::query(
        "UPDATE audit_head SET seq = seq + $1 WHERE audit_head_id = 1 RETURNING seq, last_hash",
    )
    .bind(entries.len() as i64)
    .fetch_one(&mut **tx)
    .await?;
    let last_id: i64 = head.try_get("seq")?;
    let mut prev_hash: String = head.try_get("last_hash")?;
    let at = time::now();
    let mut rows = Vec::with_capacity(entries.len());
    for (id, entry) in (last_id - entries.len() as i64 + 1..).zip(entries) {
        let details = entry.details.to_string();
        let hash = event_hash(
            id,
            &at,
            &entry.actor,
            entry.action,
            &entry.subject,
            &details,
            &prev_hash,
        );
        let prev = std::mem::replace(&mut prev_hash, hash.clone());
        rows.push((id, entry, details, prev, hash));
    }
    // Multi-row inserts, the last one together with the head update: one round trip for a
    // whole batch of events (a data-modifying CTE on PostgreSQL, two statements in one
    // call on SQLite, whose `$N` parameters number the call's arguments as a whole).
    let sqlite = tx.backend_name() == "SQLite";
    let chunks: Vec<_> = rows.chunks(INSERT_ROWS).collect();
    for (index, chunk) in chunks.iter().enumerate() {
        let insert = format!(
            "INSERT INTO audit_event \
             (audit_event_id, at, actor, action, subject, details, prev_hash, hash) VALUES {}",
            super::values_placeholders(chunk.len(), 8)
        );
        let last = index + 1 == chunks.len();
        let head_param = chunk.len() * 8 + 1;
        let sql = match (last, sqlite) {
            (false, _) => insert,
            (true, true) => format!(
                "{insert}; UPDATE audit_head SET last_hash = ${head_param} WHERE audit_head_id = 1"
            ),
            (true, false) => format!(
                "WITH appended AS ({insert}) \
                 UPDATE audit_head SET last_hash = ${head_param} WHERE audit_head_id = 1"
            ),
        };
        // Not cached: the text differs with the number of rows.
        let mut query = sqlx::query(&sql).persistent(false);
        for (id, entry, details, prev, hash) in chunk.iter() {
            query = query
                .bind(*id)
                .bind(&at)
                .bind(&entry.actor)
                .bind(entry.action)
                .bind(&entry.subject)
                .bind(details)
                .bind(prev)
                .bind(hash);
        }
        if last {
            query = query.bind(&prev_hash);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

fn decode(row: &sqlx::any::AnyRow) -> sqlx::Result<AuditEvent> {
    Ok(AuditEvent {
        id: row.try_get("audit_event_id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        subject: row.try_get("subject")?,
        details: row.try_get("details")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

impl Db {
    /// Appends one event in a transaction of its own (refusals, disclosures, key changes).
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), DbError> {
        self.timed(async {
            let mut tx = self.begin().await?;
            append(&mut tx, entry).await?;
            tx.commit().await
        })
        .await
    }

    /// Events with id greater than `after`, oldest first.
    pub async fn audit_events(&self, after: i64, limit: i64) -> Result<Vec<AuditEvent>, DbError> {
        let rows = self
            .timed(
                sqlx::query(
                    "SELECT audit_event_id, at, actor, action, subject, details, prev_hash, hash \
                     FROM audit_event WHERE audit_event_id > $1 ORDER BY audit_event_id LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool),
            )
            .await?;
        rows.iter()
            .map(decode)
            .collect::<sqlx::Result<_>>()
            .map_err(DbError::from)
    }

    /// The chain's head: the last id and hash.
    pub async fn audit_head(&self) -> Result<(i64, String), DbError> {
        self.timed(
            sqlx::query_as("SELECT seq, last_hash FROM audit_head WHERE audit_head_id = 1")
                .fetch_one(&self.pool),
        )
        .await
    }

    /// When download URLs were issued for a submission, oldest first.
    pub async fn download_times(&self, submission_id: i64) -> Result<Vec<String>, DbError> {
        self.timed(
            sqlx::query_scalar(
                "SELECT at FROM audit_event WHERE subject = $1 AND action = 'download_url.issued' \
                 ORDER BY audit_event_id",
            )
            .bind(format!("submission:{submission_id}"))
            .fetch_all(&self.pool),
        )
        .await
    }
}
