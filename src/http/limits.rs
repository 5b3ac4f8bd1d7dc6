//! Abuse protection: who the client is, how many unknown codes and wrong keys it may try,
//! and how many uploads may be received at once.

use axum::http::HeaderName;
use axum::http::request::Parts;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The key a client is counted under: its IPv4 address, or its IPv6 /64.
pub type ClientKey = IpAddr;

/// Where client addresses come from.
#[derive(Debug, Clone, Default)]
pub struct ClientIdentity {
    /// A header set by a trusted proxy (`Fly-Client-IP`); never `X-Forwarded-For` by default.
    pub trusted_header: Option<HeaderName>,
}

impl ClientIdentity {
    /// The client's key: the trusted header's address when configured and parseable,
    /// otherwise the socket peer.
    pub fn key(&self, parts: &Parts) -> ClientKey {
        let from_header = self.trusted_header.as_ref().and_then(|name| {
            parts
                .headers
                .get(name)?
                .to_str()
                .ok()?
                .trim()
                .parse::<IpAddr>()
                .ok()
        });
        let ip = from_header
            .or_else(|| crate::listener::peer(parts).map(|a| a.ip()))
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        group(ip)
    }
}

/// IPv6 clients are grouped by /64 (one household or device gets a whole /64).
pub fn group(ip: IpAddr) -> ClientKey {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(Ipv6Addr::from(segments))
            }
        },
        v4 => v4,
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

/// Counts events per client in fixed windows; a client over the limit is refused until
/// its window ends. Memory is bounded: at capacity, expired windows are dropped first, then
/// the oldest.
#[derive(Debug)]
pub struct FailureLimiter {
    limit: u32,
    window: Duration,
    capacity: usize,
    windows: Mutex<HashMap<ClientKey, Window>>,
}

impl FailureLimiter {
    /// At most `limit` events per `window` per client, tracking at most `capacity` clients.
    pub fn new(limit: u32, window: Duration, capacity: usize) -> Self {
        Self {
            limit,
            window,
            capacity: capacity.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` when the client is over its limit.
    pub fn blocked(&self, key: ClientKey) -> Option<Duration> {
        self.blocked_at(key, Instant::now())
    }

    fn blocked_at(&self, key: ClientKey, now: Instant) -> Option<Duration> {
        let windows = self.windows.lock().expect("limiter lock");
        let window = windows.get(&key)?;
        let ends = window.started + self.window;
        (window.count > self.limit && now < ends).then(|| ends - now)
    }

    /// Counts one event for the client.
    pub fn record(&self, key: ClientKey) {
        self.record_at(key, Instant::now());
    }

    fn record_at(&self, key: ClientKey, now: Instant) {
        let mut windows = self.windows.lock().expect("limiter lock");
        if windows.len() >= self.capacity && !windows.contains_key(&key) {
            windows.retain(|_, w| now < w.started + self.window);
            if windows.len() >= self.capacity
                && let Some(oldest) = windows
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(k, _)| *k)
            {
                windows.remove(&oldest);
            }
        }
        let window = windows.entry(key).or_insert(Window {
            started: now,
            count: 0,
        });
        if now >= window.started + self.window {
            *window = Window {
                started: now,
                count: 0,
            };
        }
        window.count = window.count.saturating_add(1);
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.windows.lock().expect("limiter lock").len()
    }
}

/// Unknown-code answers across all clients per hour; crossing the budget logs one security
/// warning per hour.
#[derive(Debug)]
pub struct GlobalBudget {
    budget: u64,
    started: Mutex<Instant>,
    count: AtomicU64,
}

impl GlobalBudget {
    /// A budget of `budget` events per hour.
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            started: Mutex::new(Instant::now()),
            count: AtomicU64::new(0),
        }
    }

    /// Counts one event; returns true when this event crossed the budget.
    pub fn record(&self) -> bool {
        {
            let mut started = self.started.lock().expect("budget lock");
            if started.elapsed() >= Duration::from_secs(3600) {
                *started = Instant::now();
                self.count.store(0, Ordering::SeqCst);
            }
        }
        let count = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if count == self.budget + 1 {
            tracing::warn!(
                budget = self.budget,
                "security: unknown-code lookups this hour exceed the global budget; \
                 someone may be guessing codes"
            );
            return true;
        }
        false
    }
}

/// Everything that limits abuse, shared by the routes.
#[derive(Debug)]
pub struct Limits {
    /// Where client addresses come from.
    pub identity: ClientIdentity,
    /// Unknown-code answers per client.
    pub misses: FailureLimiter,
    /// Unknown-code answers overall.
    pub global_misses: GlobalBudget,
    /// Wrong examiner keys per client.
    pub auth_failures: FailureLimiter,
    /// Uploads being received.
    pub uploads: tokio::sync::Semaphore,
}

/// Clients tracked per limiter at most.
pub const TRACKED_CLIENTS: usize = 100_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60), 10);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            limiter.record_at(ip, start);
        }
        assert_eq!(
            limiter.blocked_at(ip, start),
            None,
            "the limit itself is allowed"
        );
        limiter.record_at(ip, start);
        assert_eq!(limiter.blocked_at(ip, start), Some(Duration::from_secs(60)));
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(limiter.blocked_at(other, start), None, "per client");
        let later = start + Duration::from_secs(61);
        assert_eq!(limiter.blocked_at(ip, later), None, "cools down");
        limiter.record_at(ip, later);
        assert_eq!(
            limiter.blocked_at(ip, later),
            None,
            "a new window starts at one"
        );
    }

    #[test]
    fn memory_stays_bounded_under_many_clients() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60), 1000);
        for i in 0..50_000u32 {
            limiter.record(IpAddr::from(i.to_be_bytes()));
        }
        assert!(limiter.tracked() <= 1000);
    }

    #[test]
    fn ipv6_is_grouped_by_64_and_mapped_v4_unwrapped() {
        let a = group("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = group("2001:db8:1:2:bbbb::2".parse().unwrap());
        let c = group("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            group("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn global_budget_warns_once() {
        let budget = GlobalBudget::new(2);
        assert!(!budget.record());
        assert!(!budget.record());
        assert!(budget.record());
        assert!(!budget.record());
    }
}
