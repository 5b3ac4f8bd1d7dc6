//! The background sweeper: retention and cleanup every `SWEEP_INTERVAL_SECONDS`, with no
//! request needed.

use crate::depository::Depository;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs passes until `stop` is cancelled. A failed pass is logged and retried next tick.
pub async fn run(depository: Depository, interval: Duration, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = depository.sweep_once().await;
        let metrics = &depository.metrics;
        metrics.sweeps.inc();
        if let Ok(report) = &result {
            metrics.expired.inc_by(report.expired as u64);
            metrics.deleted.inc_by(report.deleted as u64);
            metrics.delete_failures.inc_by(report.failed as u64);
        }
        match result {
            Ok(report) if report != Default::default() => {
                tracing::info!(
                    expired = report.expired,
                    deleted = report.deleted,
                    failed = report.failed,
                    "sweep"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "sweep failed; retrying next interval"),
        }
    }
}
