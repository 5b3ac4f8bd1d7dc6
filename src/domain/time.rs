//! Timestamps. They are stored as fixed-width RFC 3339 UTC text (`2026-12-03T16:47:41.123Z`),
//! which reads well in both databases and sorts chronologically as text.

use chrono::{DateTime, SecondsFormat, Utc};
use std::time::Duration;

/// Formats an instant the way it is stored and shown.
pub fn format(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Now, formatted.
pub fn now() -> String {
    format(Utc::now())
}

/// `duration` from now, formatted.
pub fn from_now(duration: Duration) -> String {
    format(Utc::now() + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_and_sortable() {
        let a = format(DateTime::from_timestamp(1, 0).unwrap());
        let b = format(DateTime::from_timestamp(1_000_000_000, 5_000_000).unwrap());
        assert_eq!(a, "1970-01-01T00:00:01.000Z");
        assert_eq!(b, "2001-09-09T01:46:40.005Z");
        assert_eq!(a.len(), b.len());
        assert!(a < b);
        assert!(now() < from_now(Duration::from_secs(1)));
    }
}
