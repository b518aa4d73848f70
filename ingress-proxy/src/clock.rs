//! A coarse monotonic clock in milliseconds, so health state fits in atomics.
//!
//! Pure logic takes `now_ms` as a parameter; only the data path calls [`now_ms`].

use std::sync::OnceLock;
use std::time::Instant;

static BASE: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the first call in this process (monotonic).
pub(crate) fn now_ms() -> u64 {
    let base = *BASE.get_or_init(Instant::now);
    // Start at 1 so that 0 can mean "never".
    base.elapsed().as_millis() as u64 + 1
}
