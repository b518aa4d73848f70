//! Per-certificate failure backoff.
//!
//! A failing order (a typo'd domain, DNS not yet pointing at us, a CA outage) must not be
//! retried in a hot loop: that burns the account's order budget and the CA's rate limits for every
//! other certificate. Delays double from `initial` (1 minute) up to `cap` (6 hours); a
//! `Retry-After` from the CA is honoured even when it is longer (clamped to `retry_after_max`, so a
//! broken header cannot park a certificate forever). Success resets the ladder.

use std::time::{Duration, SystemTime};

/// Tunables of the backoff ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Largest delay the ladder itself produces.
    pub cap: Duration,
    /// Largest `Retry-After` honoured.
    pub retry_after_max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(60),
            cap: Duration::from_secs(6 * 3600),
            retry_after_max: Duration::from_secs(7 * 86_400),
        }
    }
}

impl BackoffPolicy {
    /// The ladder's delay after `failures` consecutive failures (`failures >= 1`).
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(32);
        self.initial
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(self.cap)
            .min(self.cap)
    }
}

/// The backoff state of one certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    next_attempt: Option<SystemTime>,
}

impl Backoff {
    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Earliest instant of the next attempt (`None`: any time).
    pub fn next_attempt(&self) -> Option<SystemTime> {
        self.next_attempt
    }

    /// Whether an attempt is allowed at `now`.
    pub fn ready(&self, now: SystemTime) -> bool {
        self.next_attempt.is_none_or(|t| now >= t)
    }

    /// Record a failure at `now`, with the CA's `Retry-After` if it sent one; returns the
    /// earliest instant of the next attempt.
    pub fn record_failure(
        &mut self,
        policy: &BackoffPolicy,
        now: SystemTime,
        retry_after: Option<SystemTime>,
    ) -> SystemTime {
        self.failures = self.failures.saturating_add(1);
        let mut next = now + policy.delay(self.failures);
        if let Some(ra) = retry_after {
            next = next.max(ra.min(now + policy.retry_after_max));
        }
        self.next_attempt = Some(next);
        next
    }

    /// Record a success: the ladder starts over.
    pub fn record_success(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn ladder_doubles_from_one_minute_to_six_hours() {
        let p = BackoffPolicy::default();
        let delays: Vec<u64> = (1..=12).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(
            delays,
            [
                60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600, 21600
            ]
        );
        assert_eq!(p.delay(u32::MAX).as_secs(), 21600);
    }

    #[test]
    fn retry_after_is_honoured_and_success_resets() {
        let p = BackoffPolicy::default();
        let mut b = Backoff::default();
        assert!(b.ready(at(0)));
        assert_eq!(
            b.record_failure(&p, at(1000), Some(at(1000 + 3600))),
            at(4600)
        );
        assert!(!b.ready(at(4599)));
        assert!(b.ready(at(4600)));
        // A shorter Retry-After does not shorten the ladder.
        assert_eq!(b.record_failure(&p, at(5000), Some(at(5001))), at(5120));
        b.record_success();
        assert_eq!(b, Backoff::default());
    }

    proptest! {
        #[test]
        fn next_attempt_bounds(
            events in proptest::collection::vec((0u64..100_000, proptest::option::of(0u64..2_000_000)), 1..30)
        ) {
            let p = BackoffPolicy::default();
            let mut b = Backoff::default();
            let mut now = 1_000_000u64;
            let mut last_delay = Duration::ZERO;
            for (step, ra) in events {
                now += step;
                let retry_after = ra.map(|r| at(now + r));
                let next = b.record_failure(&p, at(now), retry_after);
                let delay = next.duration_since(at(now)).unwrap();
                // Never earlier than the ladder, never earlier than a (clamped) Retry-After.
                let ladder = p.delay(b.failures());
                prop_assert!(delay >= ladder);
                prop_assert!(ladder >= last_delay.min(p.cap));
                if let Some(r) = ra {
                    prop_assert!(delay >= Duration::from_secs(r).min(p.retry_after_max));
                } else {
                    prop_assert_eq!(delay, ladder);
                }
                prop_assert!(delay <= p.cap.max(p.retry_after_max));
                last_delay = ladder;
            }
        }
    }
}
