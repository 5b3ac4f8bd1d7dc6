//! The submission window: uploads are accepted between `SUBMISSIONS_OPEN_AT` and
//! `SUBMISSIONS_CLOSE_AT` (plus a student's extra time). The check is made when the request
//! arrives, so an upload that started before the close counts even if its body ends after.

use chrono::{DateTime, Duration, Utc};

/// The configured window; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubmissionWindow {
    /// Uploads before this are refused.
    pub opens_at: Option<DateTime<Utc>>,
    /// Uploads from this instant on are refused (before extra time).
    pub closes_at: Option<DateTime<Utc>>,
}

/// Why an upload is outside the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutsideWindow {
    /// Too early.
    NotYetOpen(DateTime<Utc>),
    /// Too late.
    Closed(DateTime<Utc>),
}

impl SubmissionWindow {
    /// When this student's window closes (their extra time included).
    pub fn closes_for(&self, extra_seconds: i64) -> Option<DateTime<Utc>> {
        self.closes_at
            .map(|close| close + Duration::seconds(extra_seconds.max(0)))
    }

    /// Whether a request arriving at `at` may upload.
    pub fn check(&self, extra_seconds: i64, at: DateTime<Utc>) -> Result<(), OutsideWindow> {
        if let Some(open) = self.opens_at
            && at < open
        {
            return Err(OutsideWindow::NotYetOpen(open));
        }
        if let Some(close) = self.closes_for(extra_seconds)
            && at >= close
        {
            return Err(OutsideWindow::Closed(close));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn edges_and_extra_time() {
        let window = SubmissionWindow {
            opens_at: Some(at(0)),
            closes_at: Some(at(100)),
        };
        assert_eq!(
            window.check(0, at(-1)),
            Err(OutsideWindow::NotYetOpen(at(0)))
        );
        assert_eq!(window.check(0, at(0)), Ok(()));
        assert_eq!(window.check(0, at(99)), Ok(()));
        assert_eq!(
            window.check(0, at(100)),
            Err(OutsideWindow::Closed(at(100)))
        );
        assert_eq!(window.check(30, at(129)), Ok(()));
        assert_eq!(
            window.check(30, at(130)),
            Err(OutsideWindow::Closed(at(130)))
        );
        assert_eq!(SubmissionWindow::default().check(0, at(1_000_000)), Ok(()));
    }
}
