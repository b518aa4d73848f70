//! Account-level budget on new orders.
//!
//! Let's Encrypt allows 300 new orders per account per 3 hours and certmagic throttles to 10
//! orders per 10 s per CA and account; a controller that suddenly wants 500 certificates (a new
//! cluster, a restored backup) must spread them out instead of tripping the CA's limits and then
//! backing off every certificate at once. This is a sliding-window limiter: at most `limit`
//! orders in any `window`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// At most `limit` new orders per sliding `window`.
#[derive(Debug, Clone)]
pub struct OrderBudget {
    limit: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl Default for OrderBudget {
    /// 10 orders per 10 seconds.
    fn default() -> Self {
        Self::new(10, Duration::from_secs(10))
    }
}

impl OrderBudget {
    /// A budget of `limit` orders (at least 1) per `window`.
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            recent: VecDeque::new(),
        }
    }

    /// Take one order from the budget at `now`, or return the instant at which one becomes
    /// available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Instant> {
        while let Some(&oldest) = self.recent.front() {
            if now.saturating_duration_since(oldest) >= self.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() < self.limit {
            self.recent.push_back(now);
            Ok(())
        } else {
            Err(self.recent[0] + self.window)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ten_per_ten_seconds() {
        let t0 = Instant::now();
        let mut b = OrderBudget::default();
        for i in 0..10 {
            assert!(b.try_take(t0 + Duration::from_millis(i)).is_ok());
        }
        assert_eq!(
            b.try_take(t0 + Duration::from_secs(1)),
            Err(t0 + Duration::from_secs(10))
        );
        assert!(b.try_take(t0 + Duration::from_secs(10)).is_ok());
        assert!(b.try_take(t0 + Duration::from_secs(10)).is_err());
    }

    proptest! {
        /// Against a reference that rescans the whole history: a take succeeds exactly when
        /// fewer than `limit` successful takes lie in `(now - window, now]`.
        #[test]
        fn matches_reference(limit in 1usize..8, window_ms in 1u64..2000, steps in proptest::collection::vec(0u64..700, 1..200)) {
            let t0 = Instant::now();
            let window = Duration::from_millis(window_ms);
            let mut b = OrderBudget::new(limit, window);
            let mut granted: Vec<u64> = Vec::new();
            let mut now = 0u64;
            for step in steps {
                now += step;
                let in_window = granted.iter().filter(|&&g| now - g < window_ms).count();
                let got = b.try_take(t0 + Duration::from_millis(now));
                prop_assert_eq!(got.is_ok(), in_window < limit);
                match got {
                    Ok(()) => granted.push(now),
                    Err(at) => {
                        let oldest = granted.iter().copied().filter(|&g| now - g < window_ms).min().unwrap();
                        prop_assert_eq!(at, t0 + Duration::from_millis(oldest + window_ms));
                    }
                }
            }
        }
    }
}
