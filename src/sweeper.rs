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
        match depository.sweep_once().await {
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
