//! Appending to and reading the audit log. Appends happen inside the transaction of the
//! change they record, as its last statements: the row lock on `audit_head` orders every
//! append (across replicas), and taking it last keeps lock order the same everywhere.

use super::{Db, DbError, DbKind, kind_of, placeholder};
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

/// Takes ids for `$1` events: the new head's `seq` and the `last_hash` before them.
const TAKE_IDS: &str =
    "UPDATE audit_head SET seq = seq + $1 WHERE audit_head_id = 1 RETURNING seq, last_hash";

/// Appends events in order: one head update to take their ids, multi-row inserts, one head
/// update to record the last hash.
pub(crate) async fn append_many(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    entries: &[AuditEntry],
) -> sqlx::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let head = sqlx::query(TAKE_IDS)
        .bind(entries.len() as i64)
        .fetch_one(&mut **tx)
        .await?;
    let chained = Chained::after(&head, entries)?;
    // Multi-row inserts, the last one together with the head update: one round trip for a
    // whole batch of events (a data-modifying CTE on PostgreSQL, two statements in one
    // call on SQLite, whose `$N` parameters number the call's arguments as a whole).
    let kind = kind_of(tx);
    let chunks: Vec<_> = chained.rows.chunks(INSERT_ROWS).collect();
    for (index, chunk) in chunks.iter().enumerate() {
        let last = index + 1 == chunks.len();
        let insert = insert_statement(kind, chunk.len());
        let sql = match (last, kind) {
            (false, _) => insert,
            (true, DbKind::Sqlite) => format!("{insert}; {}", record_last_hash(kind, chunk.len())),
            (true, DbKind::Postgres) => format!(
                "WITH appended AS ({insert}) {}",
                record_last_hash(kind, chunk.len())
            ),
        };
        // Not cached: the text differs with the number of rows.
        let query = chained.bind(sqlx::query(&sql).persistent(false), chunk, last);
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// SQLite: the statement that takes ids for events, for a call with other statements before
/// it (its parameter is the next one).
pub(crate) fn take_ids_statement() -> String {
    TAKE_IDS.replace("$1", &placeholder(DbKind::Sqlite, 1))
}

/// The events of one append, each with its id and its place in the hash chain.
pub(crate) struct Chained<'a> {
    at: String,
    rows: Vec<ChainedRow<'a>>,
    last_hash: String,
}

struct ChainedRow<'a> {
    id: i64,
    entry: &'a AuditEntry,
    details: String,
    prev_hash: String,
    hash: String,
}

impl<'a> Chained<'a> {
    /// Chains `entries` after `head`, the row [`TAKE_IDS`] returned for them.
    pub(crate) fn after(head: &sqlx::any::AnyRow, entries: &'a [AuditEntry]) -> sqlx::Result<Self> {
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
            let prev_hash = std::mem::replace(&mut prev_hash, hash.clone());
            rows.push(ChainedRow {
                id,
                entry,
                details,
                prev_hash,
                hash,
            });
        }
        Ok(Self {
            at,
            rows,
            last_hash: prev_hash,
        })
    }

    /// SQLite: one call that inserts every event, records the new head and commits.
    pub(crate) fn insert_and_commit(&self) -> String {
        let (kind, rows) = (DbKind::Sqlite, self.rows.len());
        format!(
            "{}; {}; COMMIT",
            insert_statement(kind, rows),
            record_last_hash(kind, rows)
        )
    }

    /// Binds `rows` to the statement from [`insert_statement`], and the last hash to the
    /// one from [`record_last_hash`] if `with_head`.
    fn bind<'q>(
        &'q self,
        mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        rows: &'q [ChainedRow<'a>],
        with_head: bool,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for row in rows {
            query = query
                .bind(row.id)
                .bind(&self.at)
                .bind(&row.entry.actor)
                .bind(row.entry.action)
                .bind(&row.entry.subject)
                .bind(&row.details)
                .bind(&row.prev_hash)
                .bind(&row.hash);
        }
        if with_head {
            query = query.bind(&self.last_hash);
        }
        query
    }

    /// Binds every event and the last hash (see [`Chained::insert_and_commit`]).
    pub(crate) fn bind_all<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        self.bind(query, &self.rows, true)
    }
}

/// A multi-row insert of `rows` events (8 parameters each, the first ones of its call).
fn insert_statement(kind: DbKind, rows: usize) -> String {
    format!(
        "INSERT INTO audit_event \
         (audit_event_id, at, actor, action, subject, details, prev_hash, hash) VALUES {}",
        super::values_placeholders(kind, rows, 8)
    )
}

/// The head update after [`insert_statement`] of `rows` events: the next parameter.
fn record_last_hash(kind: DbKind, rows: usize) -> String {
    format!(
        "UPDATE audit_head SET last_hash = {} WHERE audit_head_id = 1",
        placeholder(kind, rows * 8 + 1)
    )
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
