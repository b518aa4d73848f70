//! Deterministic simulation: N [`Machine`]s on a simulated network with latency, loss,
//! partitions and a skewed, drifting clock per node.
//!
//! Everything is driven by one seeded RNG and a single event queue, so a run is reproducible from
//! its seed. The simulator records which nodes announce each VIP at every instant, which is what
//! the safety properties are checked against.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Error;
use crate::config::{Cluster, ClusterConfig, NodeIndex, VipIndex};
use crate::machine::{Action, Event, Machine};
use crate::wire::Message;

/// Network behaviour.
#[derive(Clone, Copy, Debug)]
pub struct NetConfig {
    /// Minimum one-way latency.
    pub latency_min: Duration,
    /// Maximum one-way latency (uniform in between).
    pub latency_max: Duration,
    /// Probability that a message is lost.
    pub loss: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_millis(2),
            loss: 0.0,
        }
    }
}

/// Simulation parameters.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The cluster every node runs.
    pub cluster: ClusterConfig,
    /// The network.
    pub net: NetConfig,
    /// RNG seed.
    pub seed: u64,
    /// Each node's clock starts at a random offset up to this.
    pub max_clock_offset: Duration,
    /// Each node's clock runs fast or slow by up to this many parts per million.
    pub max_drift_ppm: f64,
}

/// What the simulator observed.
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages lost or cut by a partition.
    pub dropped: u64,
    /// Takeovers (announcements by a node that was not announcing), per VIP.
    pub announces: Vec<u64>,
    /// Largest number of simultaneous announcers seen for any VIP.
    pub max_owners: usize,
    /// Total time any VIP had two or more announcers.
    pub dual_ownership: Duration,
    /// Longest single stretch of dual ownership.
    pub longest_dual_ownership: Duration,
}

/// One announce or withdraw, as recorded by the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnershipChange {
    /// Simulated time.
    pub at: Duration,
    /// The node.
    pub node: NodeIndex,
    /// The VIP.
    pub vip: VipIndex,
    /// Announce (`true`) or withdraw / crash (`false`).
    pub announced: bool,
}

struct SimNode {
    machine: Option<Machine>,
    offset: Duration,
    drift: f64,
    incarnation: u64,
    wake_gen: u64,
    group: u32,
}

enum What {
    Deliver { to: NodeIndex, message: Message },
    Wake { node: NodeIndex, generation: u64 },
}

struct Scheduled {
    at: Duration,
    order: u64,
    what: What,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest first.
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

/// The simulated cluster.
pub struct Simulation {
    cluster: Arc<Cluster>,
    net: NetConfig,
    rng: StdRng,
    base: Instant,
    now: Duration,
    order: u64,
    nodes: Vec<SimNode>,
    queue: BinaryHeap<Scheduled>,
    owners: Vec<Vec<NodeIndex>>,
    dual_since: Vec<Option<Duration>>,
    stats: SimStats,
    history: Vec<OwnershipChange>,
}

impl Simulation {
    /// Builds the cluster and starts every node at simulated time zero.
    pub fn new(config: &SimConfig) -> Result<Simulation, Error> {
        let cluster = Cluster::new(&config.cluster)?;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let n = cluster.nodes().len();
        let nodes = (0..n)
            .map(|_| SimNode {
                machine: None,
                offset: config.max_clock_offset.mul_f64(rng.random::<f64>()),
                drift: (rng.random::<f64>() * 2.0 - 1.0) * config.max_drift_ppm * 1e-6,
                incarnation: 0,
                wake_gen: 0,
                group: 0,
            })
            .collect();
        let vips = cluster.vips().len();
        let mut sim = Simulation {
            net: config.net,
            rng,
            base: Instant::now(),
            now: Duration::ZERO,
            order: 0,
            nodes,
            queue: BinaryHeap::new(),
            owners: vec![Vec::new(); vips],
            dual_since: vec![None; vips],
            stats: SimStats {
                announces: vec![0; vips],
                ..SimStats::default()
            },
            history: Vec::new(),
            cluster,
        };
        for i in 0..n {
            sim.start(i as NodeIndex);
        }
        Ok(sim)
    }

    /// The compiled cluster.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Simulated time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Counters so far (dual-ownership time includes a stretch still in progress).
    pub fn stats(&self) -> SimStats {
        let mut s = self.stats.clone();
        for since in self.dual_since.iter().flatten() {
            let d = self.now - *since;
            s.dual_ownership += d;
            s.longest_dual_ownership = s.longest_dual_ownership.max(d);
        }
        s
    }

    /// Every announce and withdraw so far, in order.
    pub fn history(&self) -> &[OwnershipChange] {
        &self.history
    }

    /// Nodes currently announcing `vip`.
    pub fn owners(&self, vip: VipIndex) -> &[NodeIndex] {
        &self.owners[usize::from(vip)]
    }

    /// Whether every VIP has exactly one announcer.
    pub fn converged(&self) -> bool {
        self.owners.iter().all(|o| o.len() == 1)
    }

    /// The machine of a running node.
    pub fn machine(&self, node: NodeIndex) -> Option<&Machine> {
        self.nodes[usize::from(node)].machine.as_ref()
    }

    /// Whether the node is running.
    pub fn is_up(&self, node: NodeIndex) -> bool {
        self.nodes[usize::from(node)].machine.is_some()
    }

    /// Changes the loss probability.
    pub fn set_loss(&mut self, loss: f64) {
        self.net.loss = loss;
    }

    /// Splits the network: nodes in different groups cannot talk. Nodes not listed form one
    /// more group together.
    pub fn partition(&mut self, groups: &[Vec<NodeIndex>]) {
        for n in &mut self.nodes {
            n.group = u32::MAX;
        }
        for (g, members) in groups.iter().enumerate() {
            for &m in members {
                self.nodes[usize::from(m)].group = g as u32;
            }
        }
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        for n in &mut self.nodes {
            n.group = 0;
        }
    }

    /// Kills a node: it stops at once, its announcements vanish, nothing is said to peers.
    pub fn crash(&mut self, node: NodeIndex) {
        let n = &mut self.nodes[usize::from(node)];
        n.machine = None;
        n.wake_gen += 1;
        for v in 0..self.owners.len() {
            self.set_owner(v as VipIndex, node, false);
        }
    }

    /// Stops a node gracefully (withdraw + release), then takes it down.
    pub fn stop(&mut self, node: NodeIndex) {
        let now = self.node_now(node);
        if let Some(mut m) = self.nodes[usize::from(node)].machine.take() {
            m.handle(Event::Shutdown, now);
            self.drain(node, &mut m);
        }
        self.nodes[usize::from(node)].wake_gen += 1;
    }

    /// (Re)starts a node with a new incarnation.
    pub fn start(&mut self, node: NodeIndex) {
        if self.is_up(node) {
            return;
        }
        let now = self.node_now(node);
        let n = &mut self.nodes[usize::from(node)];
        n.incarnation += 1;
        let name = self.cluster.nodes()[usize::from(node)].clone();
        let mut m = Machine::new(Arc::clone(&self.cluster), &name, n.incarnation, now)
            .expect("node is in the cluster");
        self.drain(node, &mut m);
        self.nodes[usize::from(node)].machine = Some(m);
        self.schedule_wake(node);
    }

    /// Feeds a local health change to a running node.
    pub fn set_health(&mut self, node: NodeIndex, healthy: bool) {
        let now = self.node_now(node);
        if let Some(mut m) = self.nodes[usize::from(node)].machine.take() {
            m.handle(Event::Health(healthy), now);
            self.drain(node, &mut m);
            self.nodes[usize::from(node)].machine = Some(m);
            self.schedule_wake(node);
        }
    }

    /// Runs until simulated time `until`.
    pub fn run_until(&mut self, until: Duration) {
        while self.queue.peek().is_some_and(|s| s.at <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until `pred` holds (checked after every event) or `limit` more time passed; returns
    /// the simulated time at which it first held.
    pub fn run_until_pred(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&Simulation) -> bool,
    ) -> Option<Duration> {
        let end = self.now + limit;
        if pred(self) {
            return Some(self.now);
        }
        while self.queue.peek().is_some_and(|s| s.at <= end) {
            self.step();
            if pred(self) {
                return Some(self.now);
            }
        }
        self.now = end;
        None
    }

    fn step(&mut self) {
        let Some(s) = self.queue.pop() else { return };
        self.now = s.at;
        match s.what {
            What::Deliver { to, message } => {
                let now = self.node_now(to);
                let Some(mut m) = self.nodes[usize::from(to)].machine.take() else {
                    self.stats.dropped += 1;
                    return;
                };
                self.stats.delivered += 1;
                m.handle(Event::Message(message), now);
                self.drain(to, &mut m);
                self.nodes[usize::from(to)].machine = Some(m);
                self.schedule_wake(to);
            }
            What::Wake { node, generation } => {
                if self.nodes[usize::from(node)].wake_gen != generation {
                    return;
                }
                let now = self.node_now(node);
                let Some(mut m) = self.nodes[usize::from(node)].machine.take() else {
                    return;
                };
                m.handle(Event::Timeout, now);
                self.drain(node, &mut m);
                self.nodes[usize::from(node)].machine = Some(m);
                self.schedule_wake(node);
            }
        }
    }

    fn node_now(&self, node: NodeIndex) -> Instant {
        let n = &self.nodes[usize::from(node)];
        self.base + n.offset + self.now.mul_f64(1.0 + n.drift)
    }

    fn sim_time_of(&self, node: NodeIndex, at: Instant) -> Duration {
        let n = &self.nodes[usize::from(node)];
        let local = at.saturating_duration_since(self.base + n.offset);
        // Round up (and a microsecond more) so the node sees at least `at` when woken.
        local.div_f64(1.0 + n.drift) + Duration::from_micros(1)
    }

    fn schedule_wake(&mut self, node: NodeIndex) {
        let Some(at) = self.nodes[usize::from(node)]
            .machine
            .as_ref()
            .and_then(|m| m.next_timeout())
        else {
            return;
        };
        let at = self.sim_time_of(node, at).max(self.now);
        let n = &mut self.nodes[usize::from(node)];
        n.wake_gen += 1;
        let generation = n.wake_gen;
        self.push(at, What::Wake { node, generation });
    }

    fn push(&mut self, at: Duration, what: What) {
        self.order += 1;
        self.queue.push(Scheduled {
            at,
            order: self.order,
            what,
        });
    }

    fn drain(&mut self, node: NodeIndex, m: &mut Machine) {
        while let Some(action) = m.poll_action() {
            match action {
                Action::Announce { vip, .. } => self.set_owner(vip, node, true),
                Action::Withdraw { vip, .. } => self.set_owner(vip, node, false),
                Action::SendHeartbeat { to, message } | Action::SendRelease { to, message } => {
                    self.stats.sent += 1;
                    let connected =
                        self.nodes[usize::from(node)].group == self.nodes[usize::from(to)].group;
                    if !connected || self.rng.random::<f64>() < self.net.loss {
                        self.stats.dropped += 1;
                        continue;
                    }
                    let span = self.net.latency_max.saturating_sub(self.net.latency_min);
                    let latency = self.net.latency_min + span.mul_f64(self.rng.random::<f64>());
                    self.push(self.now + latency, What::Deliver { to, message });
                }
            }
        }
    }

    fn set_owner(&mut self, vip: VipIndex, node: NodeIndex, on: bool) {
        let v = usize::from(vip);
        let owners = &mut self.owners[v];
        let present = owners.contains(&node);
        if on == present {
            return;
        }
        if on {
            owners.push(node);
            self.stats.announces[v] += 1;
        } else {
            owners.retain(|&o| o != node);
        }
        self.history.push(OwnershipChange {
            at: self.now,
            node,
            vip,
            announced: on,
        });
        let count = owners.len();
        self.stats.max_owners = self.stats.max_owners.max(count);
        match (count >= 2, self.dual_since[v]) {
            (true, None) => self.dual_since[v] = Some(self.now),
            (false, Some(since)) => {
                let d = self.now - since;
                self.stats.dual_ownership += d;
                self.stats.longest_dual_ownership = self.stats.longest_dual_ownership.max(d);
                self.dual_since[v] = None;
            }
            _ => {}
        }
    }
}
