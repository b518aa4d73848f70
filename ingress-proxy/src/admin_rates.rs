//! Requests and errors per second for each router, as the dashboard and `/api/v1/routes` show
//! them.
//!
//! The metrics only hold counters since start, and a counter does not tell an operator whether
//! a router is busy *now*. The admin listener therefore samples every router's totals once per
//! [`SAMPLE_INTERVAL`] and keeps the last [`WINDOW_SAMPLES`] intervals; a rate is the
//! difference between the newest and the oldest sample of the window divided by the time
//! between them. Computing it server-side (rather than in the page, from two polls) gives every
//! client, script or tab, the same figure from its first request.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// How often the admin listener samples the router counters.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// How many intervals a rate spans (10 s at one sample per second).
pub(crate) const WINDOW_SAMPLES: usize = 10;

/// A router's rates over the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rate {
    /// Answered requests per second (every status class).
    pub(crate) requests: f64,
    /// 5xx responses per second.
    pub(crate) errors: f64,
    /// The time the rate spans, in seconds (shorter than the window just after start or after
    /// the router appeared).
    pub(crate) seconds: f64,
}

/// One router's totals at each sample it was present in, aligned with the end of
/// [`RouteRates::times`].
#[derive(Debug)]
struct Track {
    /// The sample that last saw the router; routers missing from a sample are dropped.
    seen: u64,
    totals: VecDeque<(u64, u64)>,
}

/// The sampled windows of every router, keyed by router and service (a reload that points a
/// router at another service starts new counters, and so a new window).
#[derive(Debug, Default)]
pub(crate) struct RouteRates {
    /// Sample times in monotonic milliseconds, oldest first, at most `WINDOW_SAMPLES + 1`.
    times: VecDeque<u64>,
    /// Number of samples taken.
    seq: u64,
    routers: HashMap<Box<str>, Track>,
    /// Reused to build keys without allocating per router.
    key: String,
}

fn key_into(buf: &mut String, router: &str, service: &str) {
    buf.clear();
    buf.push_str(router);
    buf.push('\0');
    buf.push_str(service);
}

impl RouteRates {
    /// Records the totals `(requests, errors)` of every current router, taken at `at_ms`
    /// (monotonic). A sample not later than the previous one is ignored.
    pub(crate) fn record<'a>(
        &mut self,
        at_ms: u64,
        totals: impl IntoIterator<Item = (&'a str, &'a str, (u64, u64))>,
    ) {
        if self.times.back().is_some_and(|&last| at_ms <= last) {
            return;
        }
        self.times.push_back(at_ms);
        if self.times.len() > WINDOW_SAMPLES + 1 {
            self.times.pop_front();
        }
        self.seq += 1;
        let cap = self.times.len();
        for (router, service, now) in totals {
            key_into(&mut self.key, router, service);
            let track = match self.routers.get_mut(self.key.as_str()) {
                Some(t) => t,
                None => self
                    .routers
                    .entry(self.key.as_str().into())
                    .or_insert(Track {
                        seen: 0,
                        totals: VecDeque::with_capacity(WINDOW_SAMPLES + 1),
                    }),
            };
            // Counters only grow; a smaller one was reset (re-created): start over.
            if track
                .totals
                .back()
                .is_some_and(|&(r, e)| now.0 < r || now.1 < e)
            {
                track.totals.clear();
            }
            track.totals.push_back(now);
            while track.totals.len() > cap {
                track.totals.pop_front();
            }
            track.seen = self.seq;
        }
        let seq = self.seq;
        self.routers.retain(|_, t| t.seen == seq);
    }

    /// The rate of `router` → `service` over the window, or `None` until it has been sampled
    /// twice.
    pub(crate) fn rate(&mut self, router: &str, service: &str) -> Option<Rate> {
        key_into(&mut self.key, router, service);
        let track = self.routers.get(self.key.as_str())?;
        let (first, last) = (*track.totals.front()?, *track.totals.back()?);
        let n = track.totals.len();
        if n < 2 {
            return None;
        }
        let t0 = self.times[self.times.len() - n];
        let t1 = *self.times.back()?;
        let seconds = t1.saturating_sub(t0) as f64 / 1000.0;
        if seconds <= 0.0 {
            return None;
        }
        Some(Rate {
            requests: (last.0 - first.0) as f64 / seconds,
            errors: (last.1 - first.1) as f64 / seconds,
            seconds,
        })
    }

    /// How many routers are tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.routers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_the_window_difference_over_its_duration() {
        let mut r = RouteRates::default();
        r.record(1_000, [("app", "app", (0, 0))]);
        assert_eq!(r.rate("app", "app"), None, "one sample is no rate");
        r.record(2_000, [("app", "app", (30, 3))]);
        let rate = r.rate("app", "app").unwrap();
        assert_eq!((rate.requests, rate.errors, rate.seconds), (30.0, 3.0, 1.0));
        // Twenty seconds at 10 req/s: the window keeps only the last ten seconds.
        for i in 1..=20u64 {
            r.record(2_000 + i * 1_000, [("app", "app", (30 + 10 * i, 3))]);
        }
        let rate = r.rate("app", "app").unwrap();
        assert_eq!(rate.seconds, WINDOW_SAMPLES as f64);
        assert!((rate.requests - 10.0).abs() < 1e-9, "{rate:?}");
        assert_eq!(rate.errors, 0.0);
        // Idle for a whole window: zero, not the old figure.
        for i in 21..=31u64 {
            r.record(2_000 + i * 1_000, [("app", "app", (230, 3))]);
        }
        assert_eq!(r.rate("app", "app").unwrap().requests, 0.0);
    }

    #[test]
    fn new_removed_and_reset_routers() {
        let mut r = RouteRates::default();
        r.record(1_000, [("a", "s", (5, 0))]);
        r.record(2_000, [("a", "s", (7, 0)), ("b", "s", (100, 0))]);
        // `b` appeared one sample ago: no rate yet, though `a` has one.
        assert_eq!(r.rate("b", "s"), None);
        assert_eq!(r.rate("a", "s").unwrap().requests, 2.0);
        r.record(4_000, [("b", "s", (104, 2))]);
        // `a` is gone; `b` spans two seconds.
        assert_eq!(r.len(), 1);
        assert_eq!(r.rate("a", "s"), None);
        let b = r.rate("b", "s").unwrap();
        assert_eq!((b.requests, b.errors, b.seconds), (2.0, 1.0, 2.0));
        // The same router now pointing at another service is another window.
        assert_eq!(r.rate("b", "other"), None);
        // A counter that went backwards (re-created) restarts the window, never negative.
        r.record(5_000, [("b", "s", (1, 0))]);
        assert_eq!(r.rate("b", "s"), None);
        r.record(6_000, [("b", "s", (4, 0))]);
        assert_eq!(r.rate("b", "s").unwrap().requests, 3.0);
        // Out-of-order samples are ignored.
        r.record(6_000, [("b", "s", (1_000, 0))]);
        assert_eq!(r.rate("b", "s").unwrap().requests, 3.0);
    }
}
