//! The rate limit on rule-kept traces (`DD_TRACE_RATE_LIMIT`, default 100 per second).
//!
//! A token bucket as in Datadog's tracers: it holds at most `limit` tokens (at least one, as
//! go's `x/time/rate` burst of `ceil(limit)`), starts full, and refills continuously at `limit`
//! per second; each kept trace takes one token. A limit of 0 denies every trace, a negative one
//! allows every trace. Only traces that a sampling rule kept are limited: the Agent's rates and
//! the default decision never are.
//!
//! The effective rate written as `_dd.limit_psr` is the share of traces allowed, averaged over
//! the current and the previous one-second window (the current one alone when the previous saw
//! no trace), as dd-trace-py and libdatadog compute it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);

/// What the limiter said about one trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Whether the trace may be kept.
    pub allowed: bool,
    /// The effective rate after this trace (`_dd.limit_psr`), 0..=1.
    pub effective_rate: f64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last_refill: Instant,
    window_start: Instant,
    allowed: u64,
    seen: u64,
    /// The ratio of the previous window, when it saw traces.
    previous: Option<f64>,
}

/// A token-bucket rate limiter with its effective rate.
#[derive(Debug)]
pub struct RateLimiter {
    /// Traces per second; negative: unlimited.
    limit: f64,
    /// Bucket capacity.
    capacity: f64,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    /// A limiter of `limit` traces per second.
    pub fn new(limit: f64) -> Self {
        Self::starting_at(limit, Instant::now())
    }

    fn starting_at(limit: f64, now: Instant) -> Self {
        let capacity = if limit > 0.0 { limit.ceil() } else { 0.0 };
        Self {
            limit,
            capacity,
            bucket: Mutex::new(Bucket {
                tokens: capacity,
                last_refill: now,
                window_start: now,
                allowed: 0,
                seen: 0,
                previous: None,
            }),
        }
    }

    /// Asks to keep one trace now.
    pub fn allow(&self) -> Verdict {
        self.allow_at(Instant::now())
    }

    /// Asks to keep one trace at `now` (monotonic; earlier instants count as `now`).
    pub fn allow_at(&self, now: Instant) -> Verdict {
        // A poisoned lock only means another thread panicked mid-update: the numbers are
        // still usable.
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let since_window = now.saturating_duration_since(b.window_start);
        if since_window >= WINDOW {
            b.previous = if since_window < 2 * WINDOW && b.seen > 0 {
                Some(b.allowed as f64 / b.seen as f64)
            } else {
                None
            };
            b.window_start = now;
            b.allowed = 0;
            b.seen = 0;
        }
        let allowed = if self.limit < 0.0 {
            true
        } else if self.limit == 0.0 {
            false
        } else {
            let elapsed = now.saturating_duration_since(b.last_refill).as_secs_f64();
            b.tokens = (b.tokens + elapsed * self.limit).min(self.capacity);
            b.last_refill = now.max(b.last_refill);
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                true
            } else {
                false
            }
        };
        b.seen += 1;
        b.allowed += u64::from(allowed);
        let current = b.allowed as f64 / b.seen as f64;
        let effective_rate = match b.previous {
            Some(previous) => (current + previous) / 2.0,
            None => current,
        };
        Verdict {
            allowed,
            effective_rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_gets_the_capacity_then_the_refill() {
        let t0 = Instant::now();
        let limiter = RateLimiter::starting_at(10.0, t0);
        let allowed = (0..25).filter(|_| limiter.allow_at(t0).allowed).count();
        assert_eq!(allowed, 10);
        let v = limiter.allow_at(t0);
        assert!(!v.allowed);
        assert!((v.effective_rate - 10.0 / 26.0).abs() < 1e-9, "{v:?}");
        // 200 ms later: two more tokens.
        let t1 = t0 + Duration::from_millis(200);
        let allowed = (0..5).filter(|_| limiter.allow_at(t1).allowed).count();
        assert_eq!(allowed, 2);
    }

    #[test]
    fn the_effective_rate_averages_two_windows() {
        let t0 = Instant::now();
        let limiter = RateLimiter::starting_at(2.0, t0);
        for _ in 0..4 {
            limiter.allow_at(t0); // 2 of 4 allowed: 0.5
        }
        let t1 = t0 + Duration::from_millis(1500);
        // The new window: the first trace is allowed (refilled), so (1/1 + 0.5) / 2.
        let v = limiter.allow_at(t1);
        assert!(v.allowed);
        assert!((v.effective_rate - 0.75).abs() < 1e-9, "{v:?}");
        // After a quiet gap, only the current window counts.
        let v = limiter.allow_at(t1 + Duration::from_secs(5));
        assert_eq!(v.effective_rate, 1.0);
    }

    #[test]
    fn zero_denies_negative_allows_and_fractions_still_allow_one() {
        let t0 = Instant::now();
        assert!(!RateLimiter::starting_at(0.0, t0).allow_at(t0).allowed);
        let unlimited = RateLimiter::starting_at(-1.0, t0);
        assert!((0..1000).all(|_| unlimited.allow_at(t0).allowed));
        let half = RateLimiter::starting_at(0.5, t0);
        assert!(half.allow_at(t0).allowed);
        assert!(!half.allow_at(t0 + Duration::from_secs(1)).allowed);
        assert!(half.allow_at(t0 + Duration::from_secs(2)).allowed);
    }
}
