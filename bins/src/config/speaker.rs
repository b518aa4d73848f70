//! `[speaker]` section: VIP failover (filled in by the vip-failover issue).
