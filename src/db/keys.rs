//! Named examiner API keys, stored as SHA-256 digests.

use super::{Db, DbError};
use crate::domain::time;
use sqlx::Row;

/// A key as listed (never the key itself).
#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: String,
    /// When it was last accepted (updated at most once a minute).
    pub last_used_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
}

impl Db {
    /// Stores a new key's digest under `name`; `Conflict` when a live key has that name.
    pub async fn create_api_key(&self, name: &str, key_hash: &str) -> Result<(), DbError> {
        self.timed(
            sqlx::query("INSERT INTO api_key (name, key_hash, created_at) VALUES ($1, $2, $3)")
                .bind(name)
                .bind(key_hash)
                .bind(time::now())
                .execute(&self.writer),
        )
        .await
        .map(drop)
    }

    /// The name of the live key with this digest, marking it used.
    pub async fn use_api_key(&self, key_hash: &str) -> Result<Option<String>, DbError> {
        let row = self
            .timed(
                sqlx::query(
                    "SELECT api_key_id, name, last_used_at FROM api_key \
                     WHERE key_hash = $1 AND revoked_at IS NULL",
                )
                .bind(key_hash)
                .fetch_optional(&self.pool),
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: i64 = row.try_get("api_key_id")?;
        let last_used: Option<String> = row.try_get("last_used_at")?;
        let minute_ago = time::format(chrono::Utc::now() - chrono::Duration::seconds(60));
        if last_used.is_none_or(|at| at < minute_ago) {
            self.timed(
                sqlx::query("UPDATE api_key SET last_used_at = $2 WHERE api_key_id = $1")
                    .bind(id)
                    .bind(time::now())
                    .execute(&self.writer),
            )
            .await?;
        }
        Ok(Some(row.try_get("name")?))
    }

    /// Every key, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRow>, DbError> {
        let rows = self
            .timed(
                sqlx::query(
                    "SELECT name, created_at, last_used_at, revoked_at FROM api_key \
                     ORDER BY api_key_id",
                )
                .fetch_all(&self.pool),
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ApiKeyRow {
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                    last_used_at: row.try_get("last_used_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                })
            })
            .collect::<sqlx::Result<_>>()
            .map_err(DbError::from)
    }

    /// Revokes the live key named `name`; false when there is none.
    pub async fn revoke_api_key(&self, name: &str) -> Result<bool, DbError> {
        let done = self
            .timed(
                sqlx::query(
                    "UPDATE api_key SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
                )
                .bind(name)
                .bind(time::now())
                .execute(&self.writer),
            )
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
