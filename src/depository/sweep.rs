//! The sweeper's pass: retention, then queued deletions (replaced files, failed uploads,
//! deleted students), each retried with exponential backoff.

use super::Depository;
use crate::db::DbError;
use crate::domain::time;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Submissions retired by retention.
    pub expired: usize,
    /// Objects deleted from storage.
    pub deleted: usize,
    /// Deletions that failed and will be retried.
    pub failed: usize,
}

const BATCH: i64 = 100;
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Delay before retry number `attempt` (1-based): 2, 4, 8 … seconds, at most an hour.
pub fn backoff(attempt: i64) -> Duration {
    let exponent = u32::try_from(attempt.clamp(1, 12)).unwrap_or(12);
    Duration::from_secs(2u64.pow(exponent)).min(MAX_BACKOFF)
}

impl Depository {
    /// One pass. Safe to run from several replicas at once: claims are leases in the
    /// database, so each object is worked on by one sweeper at a time.
    pub async fn sweep_once(&self) -> Result<SweepReport, DbError> {
        self.sweep_once_at(Utc::now()).await
    }

    /// One pass as if the clock read `now` (tests pass a later `now` instead of waiting).
    pub async fn sweep_once_at(&self, now: DateTime<Utc>) -> Result<SweepReport, DbError> {
        let later =
            |d: Duration| time::format(now + chrono::Duration::from_std(d).unwrap_or_default());
        let mut report = SweepReport {
            expired: self.db.expire_due(&time::format(now)).await?.len(),
            ..SweepReport::default()
        };
        loop {
            let claimed = self
                .db
                .claim_deletions(&time::format(now), &later(self.reservation_lease()), BATCH)
                .await?;
            for (key, attempt) in &claimed {
                match self.store.delete(key).await {
                    Ok(()) => {
                        self.db.deletion_done(key).await?;
                        report.deleted += 1;
                    }
                    Err(error) => {
                        let retry_at = later(backoff(*attempt));
                        self.db
                            .deletion_failed(key, &error.to_string(), &retry_at)
                            .await?;
                        report.failed += 1;
                    }
                }
            }
            if claimed.len() < BATCH as usize {
                return Ok(report);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(11), Duration::from_secs(2048));
        assert_eq!(backoff(50), MAX_BACKOFF);
        assert_eq!(backoff(0), Duration::from_secs(2));
    }
}
