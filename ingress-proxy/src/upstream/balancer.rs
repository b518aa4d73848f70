//! Endpoint selection: round robin, smooth weighted round robin, least requests (P2C).
//!
//! The balancer only sees indices; availability and in-flight counts are passed in as closures
//! and the random number as a parameter, so the policies are tested without sockets or clocks.
//! Selection is lock-free: one relaxed atomic counter, plus a weighted sequence precomputed when
//! the configuration is compiled.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::LoadBalancing;

/// Upper bound on the precomputed weighted sequence; larger weight sums are scaled down.
const MAX_SEQUENCE: u64 = 4096;

/// A compiled load-balancing policy over `n` endpoints.
#[derive(Debug)]
pub struct Balancer {
    policy: LoadBalancing,
    weights: Box<[u32]>,
    /// For `Weighted`: endpoint indices in smooth-WRR order, one full cycle.
    sequence: Box<[u32]>,
    next: AtomicUsize,
}

impl Balancer {
    /// Compiles `policy` for endpoints with `weights` (all ≥ 1).
    pub fn new(policy: LoadBalancing, weights: &[u32]) -> Self {
        let sequence = if policy == LoadBalancing::Weighted {
            smooth_wrr_sequence(weights)
        } else {
            Box::default()
        };
        Self {
            policy,
            weights: weights.into(),
            sequence,
            next: AtomicUsize::new(0),
        }
    }

    /// The weight of each endpoint, by index (all ≥ 1).
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    /// The policy.
    pub fn policy(&self) -> LoadBalancing {
        self.policy
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Picks an endpoint other than `exclude`, preferring available ones. When none is
    /// available every endpoint is considered (better to try than to fail outright — Envoy's
    /// "panic mode"). `None` only when there is no candidate at all.
    pub fn pick(
        &self,
        random: u64,
        exclude: Option<usize>,
        available: impl Fn(usize) -> bool,
        inflight: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        let n = self.weights.len();
        if n == 0 || (n == 1 && exclude == Some(0)) {
            return None;
        }
        if n == 1 {
            return Some(0);
        }
        let ok = |i: usize| Some(i) != exclude && available(i);
        let chosen = match self.policy {
            LoadBalancing::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
            }
            LoadBalancing::Weighted => {
                let len = self.sequence.len();
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..len)
                    .map(|k| self.sequence[(start + k) % len] as usize)
                    .find(|&i| ok(i))
            }
            LoadBalancing::LeastRequests => {
                let a = (random % n as u64) as usize;
                let b = ((random >> 32) % (n as u64 - 1)) as usize;
                let b = if b >= a { b + 1 } else { b };
                match (ok(a), ok(b)) {
                    (true, true) => {
                        // Compare inflight/weight without division.
                        let (ia, ib) = (inflight(a) as u64 + 1, inflight(b) as u64 + 1);
                        let (wa, wb) = (self.weights[a] as u64, self.weights[b] as u64);
                        Some(if ia * wb <= ib * wa { a } else { b })
                    }
                    (true, false) => Some(a),
                    (false, true) => Some(b),
                    (false, false) => (0..n).map(|k| (a + k) % n).find(|&i| ok(i)),
                }
            }
        };
        chosen.or_else(|| {
            // Panic mode: ignore health, still honour `exclude`.
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| Some(i) != exclude)
        })
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// One cycle of nginx's smooth weighted round robin: each endpoint appears `weight` times
/// (after dividing by the common divisor and scaling to at most [`MAX_SEQUENCE`] slots),
/// spread out rather than in bursts.
pub(crate) fn smooth_wrr_sequence(weights: &[u32]) -> Box<[u32]> {
    let mut w: Vec<u64> = weights.iter().map(|&w| u64::from(w.max(1))).collect();
    let g = w.iter().copied().fold(0, gcd).max(1);
    w.iter_mut().for_each(|x| *x /= g);
    let total: u64 = w.iter().sum();
    if total > MAX_SEQUENCE {
        w.iter_mut()
            .for_each(|x| *x = (*x * MAX_SEQUENCE / total).max(1));
    }
    let total: i64 = w.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_robin_cycles_and_skips_unavailable() {
        let b = Balancer::new(LoadBalancing::RoundRobin, &[1, 1, 1]);
        let picks: Vec<_> = (0..6)
            .map(|_| b.pick(0, None, |_| true, |_| 0).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        let picks: Vec<_> = (0..4)
            .map(|_| b.pick(0, None, |i| i != 1, |_| 0).unwrap())
            .collect();
        assert!(picks.iter().all(|&i| i != 1));
    }

    #[test]
    fn exclude_and_panic_mode() {
        let b = Balancer::new(LoadBalancing::RoundRobin, &[1, 1]);
        for _ in 0..4 {
            assert_eq!(b.pick(0, Some(0), |_| true, |_| 0), Some(1));
            // Nothing available: still returns something other than the excluded one.
            assert_eq!(b.pick(0, Some(1), |_| false, |_| 0), Some(0));
        }
        let one = Balancer::new(LoadBalancing::LeastRequests, &[1]);
        assert_eq!(one.pick(7, None, |_| false, |_| 0), Some(0));
        assert_eq!(one.pick(7, Some(0), |_| true, |_| 0), None);
    }

    #[test]
    fn least_requests_prefers_idle() {
        let b = Balancer::new(LoadBalancing::LeastRequests, &[1, 1]);
        for r in 0..100u64 {
            let r = r.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            assert_eq!(
                b.pick(r, None, |_| true, |i| if i == 0 { 10 } else { 0 }),
                Some(1)
            );
        }
    }

    #[test]
    fn smooth_sequence_is_spread() {
        assert_eq!(&*smooth_wrr_sequence(&[5, 1, 1]), &[0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(&*smooth_wrr_sequence(&[2, 2]), &[0, 1]);
    }

    proptest! {
        /// Reference: over one cycle each endpoint is picked exactly in proportion to its
        /// weight (after dividing by the gcd), as a naive counter would.
        #[test]
        fn weighted_matches_reference(weights in proptest::collection::vec(1u32..50, 1..8)) {
            let seq = smooth_wrr_sequence(&weights);
            let g = weights.iter().map(|&w| u64::from(w)).fold(0, gcd);
            for (i, &w) in weights.iter().enumerate() {
                let count = seq.iter().filter(|&&s| s as usize == i).count() as u64;
                prop_assert_eq!(count, u64::from(w) / g);
            }
            let b = Balancer::new(LoadBalancing::Weighted, &weights);
            let mut counts = vec![0u64; weights.len()];
            for _ in 0..seq.len() {
                counts[b.pick(0, None, |_| true, |_| 0).unwrap()] += 1;
            }
            for (i, &w) in weights.iter().enumerate() {
                prop_assert_eq!(counts[i], u64::from(w) / g);
            }
        }

        #[test]
        fn pick_never_returns_excluded_or_out_of_range(
            n in 1usize..6, ex in proptest::option::of(0usize..6), r: u64,
            avail in proptest::collection::vec(any::<bool>(), 6),
            policy in prop_oneof![Just(LoadBalancing::RoundRobin), Just(LoadBalancing::Weighted), Just(LoadBalancing::LeastRequests)],
        ) {
            let b = Balancer::new(policy, &vec![1; n]);
            match b.pick(r, ex, |i| avail[i], |_| 0) {
                Some(i) => { prop_assert!(i < n); prop_assert!(Some(i) != ex); }
                None => prop_assert!(n == 1 && ex == Some(0)),
            }
        }
    }
}
