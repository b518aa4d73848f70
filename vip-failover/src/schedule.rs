//! When to (re-)announce an owned VIP: at takeover, again after 1.1 s and 2.2 s (old kernels
//! ignore a second gratuitous ARP within `locktime`, 1 s; lossy links drop one), then every
//! refresh period so switch FDBs (300 s ageing) and routers never forget us.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::VipIndex;

/// Offsets of the repeated announcements after a takeover.
pub const REPEATS: [Duration; 2] = [Duration::from_millis(1100), Duration::from_millis(2200)];
/// Default periodic refresh while owner.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(30);

/// Announcement timers for the VIPs this node owns.
#[derive(Debug)]
pub struct AnnounceSchedule {
    refresh: Duration,
    /// Per owned VIP: (takeover time, announcements sent so far, next due).
    entries: BTreeMap<VipIndex, (Instant, usize, Instant)>,
}

impl AnnounceSchedule {
    /// A schedule with the given refresh period.
    pub fn new(refresh: Duration) -> Self {
        AnnounceSchedule {
            refresh,
            entries: BTreeMap::new(),
        }
    }

    /// The VIP was just taken over (or a competing claim was seen): announce now and restart
    /// the repeats.
    pub fn start(&mut self, vip: VipIndex, now: Instant) {
        self.entries.insert(vip, (now, 0, now));
    }

    /// The VIP was withdrawn.
    pub fn stop(&mut self, vip: VipIndex) {
        self.entries.remove(&vip);
    }

    /// Whether the VIP is scheduled (owned).
    pub fn contains(&self, vip: VipIndex) -> bool {
        self.entries.contains_key(&vip)
    }

    /// The earliest pending announcement.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.2).min()
    }

    /// VIPs to announce at `now`; advances their timers.
    pub fn due(&mut self, now: Instant) -> Vec<VipIndex> {
        let mut out = Vec::new();
        for (&vip, (start, sent, next)) in &mut self.entries {
            if *next > now {
                continue;
            }
            out.push(vip);
            *sent += 1;
            *next = match REPEATS.get(*sent - 1) {
                Some(off) => *start + *off,
                None => now + self.refresh,
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takeover_then_repeats_then_refresh() {
        let t0 = Instant::now();
        let mut s = AnnounceSchedule::new(DEFAULT_REFRESH);
        s.start(3, t0);
        assert_eq!(s.due(t0), vec![3]);
        assert_eq!(s.next_due(), Some(t0 + Duration::from_millis(1100)));
        assert!(s.due(t0 + Duration::from_millis(1099)).is_empty());
        assert_eq!(s.due(t0 + Duration::from_millis(1100)), vec![3]);
        assert_eq!(s.next_due(), Some(t0 + Duration::from_millis(2200)));
        let t2 = t0 + Duration::from_millis(2205);
        assert_eq!(s.due(t2), vec![3]);
        assert_eq!(s.next_due(), Some(t2 + DEFAULT_REFRESH));
        s.stop(3);
        assert_eq!(s.next_due(), None);
    }
}
