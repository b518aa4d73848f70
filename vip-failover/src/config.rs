//! Cluster configuration: nodes, VIPs, timing profiles, and its compiled form ([`Cluster`]).
//!
//! Every node must run with the same node list and VIP list: heartbeats refer to nodes and VIPs by
//! index, and carry a fingerprint of the configuration so a node with a different list is ignored
//! (and counted) instead of being misunderstood.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::Error;
use crate::rank::{Rank, rank};

/// A node's name (unique in the cluster, e.g. the Kubernetes node name).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(NodeId::new)
    }
}

impl NodeId {
    /// Creates a node id.
    pub fn new(name: impl AsRef<str>) -> Self {
        NodeId(Arc::from(name.as_ref()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId::new(s)
    }
}

/// Failure-detection timing.
///
/// A peer is declared dead when nothing (direct or relayed) has been heard from it for
/// `interval × multiplier`. Successors then wait an extra `skew_step` per rank position so that
/// two nodes never take over at the same instant; the first one's heartbeat (sent at once on
/// takeover) reaches the others well within one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Timing {
    /// Heartbeat period.
    pub interval: Duration,
    /// Missed periods before a peer is declared dead.
    pub multiplier: u32,
    /// Extra delay per rank position of the successor.
    pub skew_step: Duration,
}

impl Timing {
    /// The default profile: 100 ms × 3 (detection 300 ms), 25 ms skew per position.
    pub const DEFAULT: Timing = Timing {
        interval: Duration::from_millis(100),
        multiplier: 3,
        skew_step: Duration::from_millis(25),
    };

    /// The "safe" profile for noisy VMs: 250 ms × 5 (detection 1.25 s), 50 ms skew per position.
    pub const SAFE: Timing = Timing {
        interval: Duration::from_millis(250),
        multiplier: 5,
        skew_step: Duration::from_millis(50),
    };

    /// The "fast" profile for quiet, dedicated hosts: 50 ms × 3 (detection 150 ms), 15 ms skew.
    ///
    /// The only profile whose hard-failure outage stays under 0.2 s at the median: with
    /// [`Timing::DEFAULT`] the detection alone is 200–300 ms (300 ms of silence, counted from a
    /// heartbeat that came up to one interval before the failure). It doubles heartbeat traffic
    /// and tolerates only 150 ms of scheduling stall, so keep `DEFAULT` or `SAFE` on shared VMs.
    pub const FAST: Timing = Timing {
        interval: Duration::from_millis(50),
        multiplier: 3,
        skew_step: Duration::from_millis(15),
    };

    /// How long a peer may stay silent before it is declared dead.
    pub fn detection_timeout(&self) -> Duration {
        self.interval * self.multiplier
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing::DEFAULT
    }
}

/// One virtual IP and who may hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipSpec {
    /// The address.
    pub addr: IpAddr,
    /// Nodes allowed to hold it; `None` means every configured node.
    pub candidates: Option<Vec<NodeId>>,
    /// VRRP-style priorities (higher wins; default [`VipSpec::DEFAULT_PRIORITY`]). Ties and
    /// unlisted nodes fall back to the MetalLB-style `sha256(node#vip)` order.
    pub priorities: BTreeMap<NodeId, u8>,
}

impl VipSpec {
    /// Priority of a node that has none configured (VRRP's default backup priority).
    pub const DEFAULT_PRIORITY: u8 = 100;

    /// A VIP any node may hold, ranked by hash only.
    pub fn new(addr: IpAddr) -> Self {
        VipSpec {
            addr,
            candidates: None,
            priorities: BTreeMap::new(),
        }
    }
}

/// The whole cluster's configuration (identical on every node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// All nodes, including the local one. Order does not matter (it is sorted on compile).
    pub nodes: Vec<NodeId>,
    /// The VIPs.
    pub vips: Vec<VipSpec>,
    /// Failure-detection timing.
    pub timing: Timing,
    /// Announce only while this node and a majority of the configured nodes see each other.
    pub quorum: bool,
    /// If set, an owner hands a VIP back to a better-ranked node once that node has been alive
    /// this long. `None` (the default) keeps ownership sticky: a live owner keeps its VIP.
    pub preempt_delay: Option<Duration>,
}

/// Index of a node in [`Cluster::nodes`].
pub type NodeIndex = u16;
/// Index of a VIP in [`Cluster::vips`].
pub type VipIndex = u16;

/// A VIP with its precomputed candidate ranking.
#[derive(Clone, Debug)]
pub struct CompiledVip {
    /// The address.
    pub addr: IpAddr,
    /// Eligible nodes, best first.
    pub order: Vec<NodeIndex>,
    /// `position[node]` = index of the node in `order`, `u16::MAX` if not a candidate.
    position: Vec<u16>,
}

impl CompiledVip {
    /// Position of `node` in the ranking (0 = most preferred), `None` if not a candidate.
    pub fn position(&self, node: NodeIndex) -> Option<u16> {
        match self.position.get(usize::from(node)) {
            Some(&p) if p != u16::MAX => Some(p),
            _ => None,
        }
    }

    /// Whether `a` outranks `b` (both must be candidates; non-candidates rank last).
    pub fn outranks(&self, a: NodeIndex, b: NodeIndex) -> bool {
        self.position(a).unwrap_or(u16::MAX) < self.position(b).unwrap_or(u16::MAX)
    }
}

/// The compiled, immutable cluster: sorted nodes, ranked VIPs and the configuration fingerprint.
///
/// Compiling hashes every (node, VIP) pair once; share the result (`Arc`) between machines in a
/// simulation.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<NodeId>,
    vips: Vec<CompiledVip>,
    timing: Timing,
    quorum: bool,
    preempt_delay: Option<Duration>,
    fingerprint: u64,
}

impl Cluster {
    /// Validates and compiles a configuration.
    pub fn new(config: &ClusterConfig) -> Result<Arc<Cluster>, Error> {
        let mut nodes = config.nodes.clone();
        nodes.sort();
        if nodes.is_empty() {
            return Err(Error::Config("no nodes configured".into()));
        }
        if let Some(w) = nodes.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Config(format!("node `{}` listed twice", w[0])));
        }
        if nodes.len() > usize::from(u16::MAX - 1) {
            return Err(Error::Config("too many nodes".into()));
        }
        if config.vips.len() > usize::from(u16::MAX - 1) {
            return Err(Error::Config("too many VIPs".into()));
        }
        if config.timing.interval.is_zero() || config.timing.multiplier == 0 {
            return Err(Error::Config(
                "timing: interval and multiplier must be positive".into(),
            ));
        }
        let index_of = |n: &NodeId| nodes.binary_search(n).ok();
        let mut seen = std::collections::HashSet::new();
        let mut vips = Vec::with_capacity(config.vips.len());
        let mut fp = Sha256::new();
        fp.update(b"fairway-vip-cluster-v1");
        for n in &nodes {
            fp.update(n.as_str().as_bytes());
            fp.update([0]);
        }
        for spec in &config.vips {
            if !seen.insert(spec.addr) {
                return Err(Error::Config(format!("VIP {} listed twice", spec.addr)));
            }
            for node in spec
                .priorities
                .keys()
                .chain(spec.candidates.iter().flatten())
            {
                if index_of(node).is_none() {
                    return Err(Error::UnknownCandidate {
                        vip: spec.addr,
                        node: node.to_string(),
                    });
                }
            }
            let vip_key = spec.addr.to_string();
            let mut ranked: Vec<(Rank, NodeIndex)> = nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| spec.candidates.as_ref().is_none_or(|c| c.contains(n)))
                .map(|(i, n)| {
                    let prio = spec
                        .priorities
                        .get(n)
                        .copied()
                        .unwrap_or(VipSpec::DEFAULT_PRIORITY);
                    (rank(n.as_str(), &vip_key, prio), i as NodeIndex)
                })
                .collect();
            ranked.sort();
            let mut position = vec![u16::MAX; nodes.len()];
            for (pos, (_, node)) in ranked.iter().enumerate() {
                position[usize::from(*node)] = pos as u16;
            }
            fp.update(vip_key.as_bytes());
            fp.update([0]);
            for (_, node) in &ranked {
                fp.update(node.to_be_bytes());
            }
            fp.update([0xff]);
            vips.push(CompiledVip {
                addr: spec.addr,
                order: ranked.into_iter().map(|(_, n)| n).collect(),
                position,
            });
        }
        fp.update([u8::from(config.quorum)]);
        let digest = fp.finalize();
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&digest[..8]);
        Ok(Arc::new(Cluster {
            nodes,
            vips,
            timing: config.timing,
            quorum: config.quorum,
            preempt_delay: config.preempt_delay,
            fingerprint: u64::from_be_bytes(fingerprint),
        }))
    }

    /// All nodes, sorted by name (a node's index is its position here).
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// Index of a node by name.
    pub fn node_index(&self, node: &NodeId) -> Option<NodeIndex> {
        self.nodes.binary_search(node).ok().map(|i| i as NodeIndex)
    }

    /// All VIPs in configuration order (a VIP's index is its position here).
    pub fn vips(&self) -> &[CompiledVip] {
        &self.vips
    }

    /// Index of a VIP by address.
    pub fn vip_index(&self, addr: IpAddr) -> Option<VipIndex> {
        self.vips
            .iter()
            .position(|v| v.addr == addr)
            .map(|i| i as VipIndex)
    }

    /// Failure-detection timing.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Whether quorum mode is on.
    pub fn quorum(&self) -> bool {
        self.quorum
    }

    /// Delayed preemption, if enabled.
    pub fn preempt_delay(&self) -> Option<Duration> {
        self.preempt_delay
    }

    /// Number of nodes that makes a majority.
    pub fn majority(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    /// A hash of nodes, VIPs, rankings and mode; carried in every heartbeat.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}
