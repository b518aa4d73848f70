//! Deterministic per-VIP ranking of nodes.
//!
//! MetalLB orders candidates by `sha256(node + "#" + vip)` so that VIPs spread evenly and every
//! node computes the same order without talking. Fairway keeps that order as the tie-breaker
//! below an optional VRRP-style priority (higher first).

use sha2::{Digest, Sha256};

/// Sort key of a node for one VIP: smaller is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    /// `255 - priority`, so that higher priorities sort first.
    inverted_priority: u8,
    /// `sha256(node#vip)`.
    hash: [u8; 32],
}

/// Computes the rank of `node` for `vip` (its textual address) with the given priority.
pub fn rank(node: &str, vip: &str, priority: u8) -> Rank {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update(b"#");
    h.update(vip.as_bytes());
    Rank {
        inverted_priority: 255 - priority,
        hash: h.finalize().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_dominates_hash() {
        let a = rank("a", "198.51.100.50", 200);
        let b = rank("b", "198.51.100.50", 100);
        assert!(a < b);
        let a = rank("a", "198.51.100.50", 100);
        let b = rank("b", "198.51.100.50", 200);
        assert!(b < a);
    }

    #[test]
    fn equal_priority_orders_by_metallb_hash() {
        // sha256("n1#198.51.100.50") vs sha256("n2#198.51.100.50"), compared bytewise.
        let h1: [u8; 32] = Sha256::digest(b"n1#198.51.100.50").into();
        let h2: [u8; 32] = Sha256::digest(b"n2#198.51.100.50").into();
        let r1 = rank("n1", "198.51.100.50", 100);
        let r2 = rank("n2", "198.51.100.50", 100);
        assert_eq!(r1 < r2, h1 < h2);
    }
}
