//! Pure scheduling policy: when to renew, how long to back off, how fast to order.
//!
//! Nothing here reads a clock, sleeps or does I/O: every decision takes `now` (and, where
//! randomness is involved, a sample in `[0, 1)`) as a parameter, so the rules are tested with
//! a fake clock and property tests instead of waiting for real time to pass.

pub mod backoff;
pub mod budget;
pub mod renewal;
