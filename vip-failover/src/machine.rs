//! The sans-IO failover state machine (one per node), in the style of `quinn-proto`.
//!
//! Feed it [`Event`]s with [`Machine::handle`], drain [`Action`]s with [`Machine::poll_action`],
//! and call `handle(Event::Timeout, now)` when [`Machine::next_timeout`] passes. It owns no
//! sockets and reads no clock, so the same code runs under the Linux driver and the simulator.
//!
//! # Election
//! Each VIP has a fixed candidate order (priority, then `sha256(node#vip)`). Ownership is sticky:
//! while a live peer claims a VIP nobody else takes it. When a VIP becomes vacant — its owner is
//! declared dead, released it, or stopped claiming it — the best live eligible candidate takes
//! over after `skew_step × its position` (positions counted without the previous owner; one step
//! more after a failure detection), plus one `interval` of guard in quorum mode when the vacancy
//! came from a failure detection. If two
//! nodes ever claim the same VIP (after a partition heals), the lower-ranked one yields as soon
//! as it hears the other.
//!
//! # Failure detection
//! A peer is alive while something was heard from it within `interval × multiplier`: either
//! directly, or relayed — every heartbeat carries the sender's "ms since I last heard X" for all
//! nodes, so a few lost packets on one path do not make a peer look dead.
//!
//! # Quorum mode
//! A node may announce only while it and a majority of configured nodes hear each other directly
//! (a peer counts if we heard it within the timeout plus half an interval *and* its latest
//! heartbeat says it hears us), and may *start* announcing only with a majority heard within the
//! last 1.5 intervals. A takeover that is not an explicit release further needs a majority that
//! currently reports the VIP vacant (heartbeats list the VIPs their sender sees without a live
//! owner), counted from the moment that majority formed plus a guard of two intervals. The
//! minority side loses quorum no later than a timeout plus half an interval after a partition,
//! before the majority side can take over, so the two never announce at the same time.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Error;
use crate::config::{Cluster, NodeId, NodeIndex, VipIndex};
use crate::wire::{AGE_UNKNOWN, Body, Echo, Message, MessageKind};

/// Successor skew is capped at this many steps, so that large clusters still fail over quickly.
const MAX_SKEW_STEPS: u32 = 16;
/// Sent-time history kept for round-trip measurement.
const RTT_HISTORY: usize = 64;

/// An input to the machine.
#[derive(Clone, Debug)]
pub enum Event {
    /// Time passed (call when [`Machine::next_timeout`] is reached; extra calls are harmless).
    Timeout,
    /// An authenticated message from a peer.
    Message(Message),
    /// Local health changed (e.g. the proxy on this node became ready or stopped being ready).
    /// An unhealthy node gives up its VIPs and is skipped by the election.
    Health(bool),
    /// A new configuration. VIPs no longer configured are withdrawn; the machine then waits one
    /// detection timeout (like at startup) before taking anything over.
    Reconfigure(Arc<Cluster>),
    /// Planned shutdown: withdraw everything and tell the peers so they take over at once.
    Shutdown,
}

/// An output of the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start answering for the VIP (add the address, send gratuitous ARP / unsolicited NA).
    /// Repeated for a VIP already announced when another node claimed it too and lost: the
    /// driver then re-sends its announcements so clients come back.
    Announce {
        /// VIP index in the cluster.
        vip: VipIndex,
        /// Its address.
        addr: IpAddr,
    },
    /// Stop answering for the VIP (remove the address).
    Withdraw {
        /// VIP index in the cluster.
        vip: VipIndex,
        /// Its address.
        addr: IpAddr,
    },
    /// Send a heartbeat to a peer.
    SendHeartbeat {
        /// Destination node.
        to: NodeIndex,
        /// The message.
        message: Message,
    },
    /// Send a release (handover) message to a peer.
    SendRelease {
        /// Destination node.
        to: NodeIndex,
        /// The message.
        message: Message,
    },
}

/// Why a VIP has no owner in this node's view; decides how long successors wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vacancy {
    /// Nothing known yet (startup, reconfiguration).
    Unknown,
    /// The previous owner was declared dead.
    Death(NodeIndex),
    /// The previous owner handed the VIP over (release message, or shutdown).
    Released(NodeIndex),
    /// The previous owner stopped claiming it without a handover (lost quorum or health). In
    /// quorum mode this is treated like a failure: someone else may hold it already.
    Dropped(NodeIndex),
}

#[derive(Clone, Debug, Default)]
struct Peer {
    /// Last direct message (any kind).
    last_direct: Option<Instant>,
    /// A message arrived since the start or the last reconfiguration (so its claims under the
    /// current configuration are known); ends the hold early once true for every peer.
    heard_current: bool,
    /// Last direct or relayed evidence of life.
    last_evidence: Option<Instant>,
    alive: bool,
    alive_since: Option<Instant>,
    incarnation: u64,
    seq: u64,
    healthy: bool,
    hears_me: bool,
    /// When this peer last heard us, by its latest report (our clock, latency ignored); the
    /// quorum-at-risk probe watches it so a link lossy in our direction is probed too.
    heard_me_at: Option<Instant>,
    /// Left by a leaving release; only a newer incarnation brings it back.
    left: bool,
    claims: Vec<VipIndex>,
    /// VIPs this peer reports without a live owner (sorted).
    vacant: Vec<VipIndex>,
    /// VIPs this peer intends to take over (quorum mode).
    intents: Vec<VipIndex>,
    /// Highest of our sequence numbers this peer has echoed.
    acked_seq: u64,
    last_rx: Option<(u64, Instant)>,
    rtt: Option<Duration>,
    received: u64,
    lost: u64,
}

#[derive(Clone, Debug, Default)]
struct VipState {
    owned: bool,
    vacant: Option<(Instant, Vacancy)>,
    takeover_at: Option<Instant>,
    /// Another node claims this VIP while we own it (and we outrank it).
    contested: bool,
    /// Since when this node is, in its own view, the best live candidate for the vacant VIP.
    best_since: Option<Instant>,
    /// Quorum mode: since when a majority agrees the VIP is vacant.
    confirmed_since: Option<Instant>,
    /// Quorum mode: we intend to take it over; the sequence number of the first message that
    /// said so. We announce once a majority has echoed it.
    intent_seq: Option<u64>,
    /// Peers whose latest message lists an intent for this VIP.
    intenders: Vec<NodeIndex>,
    /// Peers whose latest message claims this VIP (alive or not).
    claimers: Vec<NodeIndex>,
}

/// Counters kept by the machine (dropped messages and ownership changes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MachineStats {
    /// Messages accepted from peers.
    pub received: u64,
    /// Messages from a node with a different configuration fingerprint.
    pub mismatched: u64,
    /// Messages with an impossible sender or shape.
    pub invalid: u64,
    /// Replayed or reordered messages (not newer than the last one from that peer).
    pub stale: u64,
    /// Local announce + withdraw transitions.
    pub transitions: u64,
}

/// A peer as seen from this node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PeerStatus {
    /// The peer.
    pub node: NodeId,
    /// Considered alive.
    pub alive: bool,
    /// Reported healthy.
    pub healthy: bool,
    /// Its latest heartbeat says it hears us.
    pub hears_us: bool,
    /// Time since the last direct message, in milliseconds.
    pub last_heard_ms: Option<u64>,
    /// Latest heartbeat round-trip time, in microseconds.
    pub rtt_us: Option<u64>,
    /// Messages received from it.
    pub received: u64,
    /// Messages from it that never arrived (sequence gaps).
    pub lost: u64,
}

/// One VIP as seen from this node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VipStatus {
    /// The address.
    pub addr: IpAddr,
    /// The current owner in this node's view.
    pub owner: Option<NodeId>,
    /// This node announces it.
    pub local: bool,
}

/// A snapshot of the machine for `/status` and metrics.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// This node.
    pub node: NodeId,
    /// Local health.
    pub healthy: bool,
    /// Quorum held (always true outside quorum mode).
    pub quorum: bool,
    /// Per VIP.
    pub vips: Vec<VipStatus>,
    /// Per peer.
    pub peers: Vec<PeerStatus>,
    /// Counters.
    pub stats: MachineStats,
}

/// The per-node failover state machine.
#[derive(Debug)]
pub struct Machine {
    cluster: Arc<Cluster>,
    me: NodeIndex,
    incarnation: u64,
    hold_until: Option<Instant>,
    healthy: bool,
    shut_down: bool,
    quorum_ok: bool,
    /// Quorum confirmed within the last 1.5 intervals (required to *start* announcing).
    fresh_quorum: bool,
    /// Time of the last `step`, so expired quorum edges are not reported as timeouts again.
    last_step: Instant,
    seq: u64,
    next_heartbeat: Instant,
    sent: VecDeque<(u64, Instant)>,
    peers: Vec<Peer>,
    vips: Vec<VipState>,
    pending_takeovers: usize,
    intents_pending: usize,
    actions: VecDeque<Action>,
    dirty: bool,
    send_now: bool,
    releasing: Vec<VipIndex>,
    probe_next: bool,
    recheck_intents: bool,
    stats: MachineStats,
}

impl Machine {
    /// Creates the machine for `local`. `incarnation` must grow across restarts of this node
    /// (e.g. the start time in microseconds): peers use it to tell a restart from a replay.
    ///
    /// The machine starts healthy and takes nothing over until it has heard every peer or one
    /// detection timeout has passed, so a restarting node does not grab VIPs a peer holds.
    pub fn new(
        cluster: Arc<Cluster>,
        local: &NodeId,
        incarnation: u64,
        now: Instant,
    ) -> Result<Machine, Error> {
        let me = cluster
            .node_index(local)
            .ok_or_else(|| Error::UnknownLocalNode(local.to_string()))?;
        let n = cluster.nodes().len();
        let mut m = Machine {
            hold_until: Some(now + cluster.timing().detection_timeout()),
            me,
            incarnation,
            healthy: true,
            shut_down: false,
            quorum_ok: !cluster.quorum() || cluster.majority() <= 1,
            fresh_quorum: !cluster.quorum() || cluster.majority() <= 1,
            last_step: now,
            seq: 0,
            next_heartbeat: now,
            sent: VecDeque::with_capacity(RTT_HISTORY),
            peers: vec![Peer::default(); n],
            vips: vec![VipState::default(); cluster.vips().len()],
            pending_takeovers: 0,
            intents_pending: 0,
            actions: VecDeque::new(),
            dirty: true,
            send_now: true,
            releasing: Vec::new(),
            probe_next: false,
            recheck_intents: false,
            stats: MachineStats::default(),
            cluster,
        };
        m.step(now);
        Ok(m)
    }

    /// The compiled cluster this machine runs with.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// This node's index.
    pub fn local_index(&self) -> NodeIndex {
        self.me
    }

    /// Whether this node currently announces `vip`.
    pub fn owns(&self, vip: VipIndex) -> bool {
        self.vips.get(usize::from(vip)).is_some_and(|v| v.owned)
    }

    /// Whether [`Event::Shutdown`] has been handled.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// Counters.
    pub fn stats(&self) -> MachineStats {
        self.stats
    }

    /// Processes one input at time `now`.
    pub fn handle(&mut self, event: Event, now: Instant) {
        if self.ingest(event, now) {
            self.step(now);
        }
    }

    /// Processes several inputs that arrived together (e.g. every datagram queued on the socket
    /// after the process was descheduled) and only then evaluates timers and elections, so a
    /// heartbeat still sitting in the queue cancels a takeover instead of racing it.
    pub fn handle_all(&mut self, events: impl IntoIterator<Item = Event>, now: Instant) {
        let mut step = false;
        for e in events {
            step |= self.ingest(e, now);
        }
        if step {
            self.step(now);
        }
    }

    /// Applies one input; returns whether a `step` should follow.
    fn ingest(&mut self, event: Event, now: Instant) -> bool {
        if self.shut_down {
            return false;
        }
        match event {
            Event::Timeout => {}
            Event::Message(m) => self.on_message(&m, now),
            Event::Health(h) => {
                if h != self.healthy {
                    self.healthy = h;
                    self.dirty = true;
                    self.send_now = true;
                }
            }
            Event::Reconfigure(c) => self.reconfigure(c, now),
            Event::Shutdown => {
                for v in 0..self.vips.len() {
                    if self.vips[v].owned {
                        self.withdraw(v as VipIndex);
                        self.releasing.push(v as VipIndex);
                    }
                }
                self.shut_down = true;
                self.send_round(now, true);
                return false;
            }
        }
        true
    }

    /// The next output, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call `handle(Event::Timeout, ..)` next; `None` after shutdown.
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.shut_down {
            return None;
        }
        let timeout = self.cluster.timing().detection_timeout();
        let mut t = self.next_heartbeat;
        if let Some(h) = self.hold_until {
            t = t.min(h);
        }
        let timing = self.cluster.timing();
        let window = timing.interval + timing.interval / 2;
        for p in &self.peers {
            if p.alive
                && let Some(e) = p.last_evidence
            {
                t = t.min(e + timeout);
            }
            // Quorum membership expires on direct contact only.
            if self.cluster.quorum()
                && let Some(d) = p.last_direct
            {
                for edge in [d + window, d + timeout + self.margin()] {
                    if edge > self.last_step {
                        t = t.min(edge);
                    }
                }
            }
        }
        if self.pending_takeovers > 0 {
            for v in &self.vips {
                if let Some(at) = v.takeover_at {
                    t = t.min(at);
                }
            }
        }
        Some(t)
    }

    /// A snapshot for status pages and metrics.
    pub fn status(&self, now: Instant) -> Status {
        let nodes = self.cluster.nodes();
        Status {
            node: nodes[usize::from(self.me)].clone(),
            healthy: self.healthy,
            quorum: self.quorum_ok,
            vips: (0..self.vips.len())
                .map(|v| VipStatus {
                    addr: self.cluster.vips()[v].addr,
                    owner: self
                        .owner_of(v as VipIndex)
                        .map(|n| nodes[usize::from(n)].clone()),
                    local: self.vips[v].owned,
                })
                .collect(),
            peers: self
                .peers
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != usize::from(self.me))
                .map(|(i, p)| PeerStatus {
                    node: nodes[i].clone(),
                    alive: p.alive,
                    healthy: p.healthy,
                    hears_us: p.hears_me,
                    last_heard_ms: p
                        .last_direct
                        .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                    rtt_us: p.rtt.map(|r| r.as_micros() as u64),
                    received: p.received,
                    lost: p.lost,
                })
                .collect(),
            stats: self.stats,
        }
    }

    /// The owner of `vip` in this node's view: us, or the best live peer claiming it.
    pub fn owner_of(&self, vip: VipIndex) -> Option<NodeIndex> {
        let state = self.vips.get(usize::from(vip))?;
        if state.owned {
            return Some(self.me);
        }
        self.best_claimer(vip)
    }

    fn best_claimer(&self, vip: VipIndex) -> Option<NodeIndex> {
        let cv = &self.cluster.vips()[usize::from(vip)];
        self.vips[usize::from(vip)]
            .claimers
            .iter()
            .copied()
            .filter(|&p| self.peers[usize::from(p)].alive)
            .min_by_key(|&p| cv.position(p).unwrap_or(u16::MAX))
    }

    fn best_intender(&self, vip: VipIndex) -> Option<NodeIndex> {
        let cv = &self.cluster.vips()[usize::from(vip)];
        self.vips[usize::from(vip)]
            .intenders
            .iter()
            .copied()
            .filter(|&p| self.peers[usize::from(p)].alive)
            .min_by_key(|&p| cv.position(p).unwrap_or(u16::MAX))
    }

    fn set_intent(&mut self, vip: VipIndex, seq: Option<u64>) {
        let slot = &mut self.vips[usize::from(vip)].intent_seq;
        match (slot.is_some(), seq.is_some()) {
            (false, true) => self.intents_pending += 1,
            (true, false) => self.intents_pending -= 1,
            _ => {}
        }
        if slot.is_some() != seq.is_some() {
            self.send_now = true;
        }
        *slot = seq;
    }

    /// Slack for quorum membership: half an interval, so that a heartbeat arriving a little
    /// after `interval × multiplier` (jitter, drift) does not cost the quorum.
    fn margin(&self) -> Duration {
        self.cluster.timing().interval / 2
    }

    fn margin_ms(&self) -> u64 {
        self.margin().as_millis() as u64
    }

    fn timeout_ms(&self) -> u64 {
        self.cluster.timing().detection_timeout().as_millis() as u64
    }

    fn on_message(&mut self, m: &Message, now: Instant) {
        let b = &*m.body;
        let n = self.cluster.nodes().len();
        if b.fingerprint != self.cluster.fingerprint() {
            self.stats.mismatched += 1;
            return;
        }
        if b.from == self.me || usize::from(b.from) >= n || b.ages_ms.len() != n {
            self.stats.invalid += 1;
            return;
        }
        if b.claims
            .iter()
            .chain(&b.released)
            .any(|&v| usize::from(v) >= self.vips.len())
        {
            self.stats.invalid += 1;
            return;
        }
        let from = usize::from(b.from);
        {
            let p = &self.peers[from];
            if p.last_direct.is_some() && (b.incarnation, b.seq) <= (p.incarnation, p.seq) {
                self.stats.stale += 1;
                return;
            }
        }
        self.stats.received += 1;
        let timeout_ms = self.timeout_ms();
        let margin_ms = self.margin_ms();
        let me = usize::from(self.me);
        let rtt = m.echo.and_then(|e| self.rtt_of(e, now));
        let p = &mut self.peers[from];
        if p.last_direct.is_some() && b.incarnation == p.incarnation {
            p.lost += b.seq.saturating_sub(p.seq + 1);
        } else {
            p.left = false;
        }
        p.incarnation = b.incarnation;
        p.seq = b.seq;
        p.received += 1;
        p.last_direct = Some(now);
        p.heard_current = true;
        p.last_evidence = Some(now);
        p.last_rx = Some((b.seq, now));
        if rtt.is_some() {
            p.rtt = rtt;
        }
        if p.healthy != b.healthy {
            p.healthy = b.healthy;
            self.dirty = true;
        }
        let hears_me = u64::from(b.ages_ms[me]) < timeout_ms + margin_ms;
        p.heard_me_at = (b.ages_ms[me] != AGE_UNKNOWN)
            .then(|| now.checked_sub(Duration::from_millis(b.ages_ms[me].into())))
            .flatten();
        if p.hears_me != hears_me {
            p.hears_me = hears_me;
            self.dirty = true;
        }
        if b.leaving {
            p.left = true;
            self.dirty = true;
        }
        if p.vacant != b.vacant {
            p.vacant.clone_from(&b.vacant);
            p.vacant.sort_unstable();
            self.dirty = true;
        }
        if let Some(e) = m.echo
            && e.seq > p.acked_seq
        {
            p.acked_seq = e.seq;
        }
        if self.intents_pending > 0 {
            // An acknowledgement may complete one of our intents.
            self.recheck_intents = true;
        }
        let new_intents: Vec<VipIndex> = if b.leaving {
            Vec::new()
        } else {
            b.intents.clone()
        };
        let old_intents = std::mem::replace(&mut self.peers[from].intents, new_intents.clone());
        if old_intents != new_intents {
            self.dirty = true;
            // Acknowledge new intents at once rather than at the next periodic heartbeat.
            self.send_now = true;
            for &v in &old_intents {
                if !new_intents.contains(&v) {
                    self.vips[usize::from(v)]
                        .intenders
                        .retain(|&c| usize::from(c) != from);
                }
            }
            for &v in &new_intents {
                if usize::from(v) < self.vips.len() {
                    let state = &mut self.vips[usize::from(v)];
                    if !state.intenders.contains(&(from as NodeIndex)) {
                        state.intenders.push(from as NodeIndex);
                    }
                }
            }
        }
        // Relayed evidence: the sender heard node x `age` ms before sending.
        for (x, &age) in b.ages_ms.iter().enumerate() {
            if x == me || x == from || age == AGE_UNKNOWN || u64::from(age) >= timeout_ms {
                continue;
            }
            let peer = &mut self.peers[x];
            if peer.left {
                continue;
            }
            if let Some(t) = now.checked_sub(Duration::from_millis(u64::from(age)))
                && peer.last_evidence.is_none_or(|e| e < t)
            {
                peer.last_evidence = Some(t);
            }
        }
        // Claims: diff the sender's new claim list against the old one.
        let new_claims: Vec<VipIndex> = if b.leaving {
            Vec::new()
        } else {
            b.claims.clone()
        };
        let old_claims = std::mem::replace(&mut self.peers[from].claims, new_claims.clone());
        if old_claims != new_claims {
            self.dirty = true;
            for &v in &old_claims {
                if !new_claims.contains(&v) {
                    let state = &mut self.vips[usize::from(v)];
                    state.claimers.retain(|&c| usize::from(c) != from);
                    if self.best_claimer(v).is_none() && !self.vips[usize::from(v)].owned {
                        let handover = b.kind == MessageKind::Release
                            && (b.leaving || b.released.contains(&v));
                        let why = if handover {
                            Vacancy::Released(from as NodeIndex)
                        } else {
                            Vacancy::Dropped(from as NodeIndex)
                        };
                        self.vips[usize::from(v)].vacant = Some((now, why));
                        self.send_now |= self.cluster.quorum();
                    }
                }
            }
            for &v in &new_claims {
                let state = &mut self.vips[usize::from(v)];
                if !state.claimers.contains(&(from as NodeIndex)) {
                    state.claimers.push(from as NodeIndex);
                }
            }
        }
        if b.kind == MessageKind::Release {
            self.dirty = true;
        }
        if b.probe {
            self.send_now = true;
        }
    }

    fn rtt_of(&self, echo: Echo, now: Instant) -> Option<Duration> {
        let (_, sent) = self.sent.iter().find(|(s, _)| *s == echo.seq)?;
        Some(
            now.saturating_duration_since(*sent)
                .saturating_sub(echo.hold),
        )
    }

    fn reconfigure(&mut self, cluster: Arc<Cluster>, now: Instant) {
        let Some(me) = cluster.node_index(&self.cluster.nodes()[usize::from(self.me)]) else {
            // We are no longer part of the cluster: give everything up.
            for v in 0..self.vips.len() {
                if self.vips[v].owned {
                    self.withdraw(v as VipIndex);
                }
            }
            self.healthy = false;
            return;
        };
        let mut vips = vec![VipState::default(); cluster.vips().len()];
        for (v, state) in self.vips.iter().enumerate() {
            if !state.owned {
                continue;
            }
            let addr = self.cluster.vips()[v].addr;
            match cluster.vip_index(addr) {
                Some(nv) => vips[usize::from(nv)].owned = true,
                None => {
                    self.actions.push_back(Action::Withdraw {
                        vip: v as VipIndex,
                        addr,
                    });
                    self.stats.transitions += 1;
                }
            }
        }
        let mut peers = vec![Peer::default(); cluster.nodes().len()];
        for (i, name) in cluster.nodes().iter().enumerate() {
            if let Some(old) = self.cluster.node_index(name) {
                let mut p = std::mem::take(&mut self.peers[usize::from(old)]);
                p.claims.clear();
                p.intents.clear();
                p.vacant.clear();
                // Its claims under the new configuration are unknown until it speaks again:
                // hold until then, or a live owner would look vacant and lose its VIP.
                p.heard_current = false;
                peers[i] = p;
            }
        }
        self.cluster = cluster;
        self.me = me;
        self.peers = peers;
        self.vips = vips;
        self.pending_takeovers = 0;
        self.intents_pending = 0;
        self.hold_until = Some(now + self.cluster.timing().detection_timeout());
        self.dirty = true;
        self.send_now = true;
    }

    fn step(&mut self, now: Instant) {
        self.last_step = now;
        let timing = self.cluster.timing();
        let timeout = timing.detection_timeout();
        // Liveness.
        for i in 0..self.peers.len() {
            if i == usize::from(self.me) {
                continue;
            }
            let p = &self.peers[i];
            let alive = !p.left && p.last_evidence.is_some_and(|e| now < e + timeout);
            if alive != p.alive {
                self.dirty = true;
                let p = &mut self.peers[i];
                p.alive = alive;
                p.alive_since = alive.then_some(now);
                if !alive && !p.left {
                    // Suspicion: the next (immediate) round asks everyone to answer at once, so
                    // a live peer whose last few heartbeats were lost cancels the takeover
                    // (successors wait at least one skew step, far longer than a round trip).
                    self.probe_next = true;
                    self.send_now = true;
                }
                if !alive {
                    let p = &self.peers[i];
                    let vacancy = if p.left {
                        Vacancy::Released(i as NodeIndex)
                    } else {
                        Vacancy::Death(i as NodeIndex)
                    };
                    let claims = p.claims.clone();
                    for v in claims {
                        if self.best_claimer(v).is_none() && !self.vips[usize::from(v)].owned {
                            self.vips[usize::from(v)].vacant = Some((now, vacancy));
                            // Quorum mode: peers wait for a majority to report the VIP vacant;
                            // tell them now rather than at the next periodic heartbeat.
                            self.send_now |= self.cluster.quorum();
                        }
                    }
                }
            }
        }
        // Startup hold.
        if let Some(h) = self.hold_until {
            let heard_all = self
                .peers
                .iter()
                .enumerate()
                .all(|(i, p)| i == usize::from(self.me) || p.heard_current);
            if now >= h || heard_all {
                self.hold_until = None;
                self.dirty = true;
            }
        }
        // Quorum.
        if self.cluster.quorum() {
            let keep = timeout + self.margin();
            let support = 1 + self
                .peers
                .iter()
                .filter(|p| !p.left && p.hears_me && p.last_direct.is_some_and(|t| now < t + keep))
                .count();
            let ok = support >= self.cluster.majority();
            let window = timing.interval + timing.interval / 2;
            let fresh = 1 + self
                .peers
                .iter()
                .filter(|p| {
                    !p.left && p.hears_me && p.last_direct.is_some_and(|t| now < t + window)
                })
                .count();
            let fresh = fresh >= self.cluster.majority();
            // Quorum at risk: fewer than a majority heard both ways within two intervals.
            // Losing quorum makes an owner withdraw, so before the keep window runs out the
            // periodic heartbeats ask every peer for an immediate answer: a few heartbeats lost
            // on two links at once then no longer moves a VIP.
            if ok && now >= self.next_heartbeat {
                let steady = timing.interval * 2;
                let recent = |t: Option<Instant>| t.is_some_and(|t| now < t + steady);
                let steady = 1 + self
                    .peers
                    .iter()
                    .filter(|p| {
                        !p.left && p.hears_me && recent(p.last_direct) && recent(p.heard_me_at)
                    })
                    .count();
                if steady < self.cluster.majority() {
                    self.probe_next = true;
                }
            }
            if ok != self.quorum_ok || fresh != self.fresh_quorum {
                self.quorum_ok = ok;
                self.fresh_quorum = fresh;
                self.dirty = true;
            }
        }
        let heartbeat_due = now >= self.next_heartbeat;
        let recheck = std::mem::take(&mut self.recheck_intents);
        if self.dirty || (heartbeat_due && self.cluster.preempt_delay().is_some()) {
            self.dirty = false;
            for v in 0..self.vips.len() {
                self.evaluate(v as VipIndex, now);
            }
        } else if self.pending_takeovers > 0 || recheck {
            for v in 0..self.vips.len() {
                let state = &self.vips[v];
                if state.takeover_at.is_some_and(|at| at <= now)
                    || (recheck && state.intent_seq.is_some())
                {
                    self.evaluate(v as VipIndex, now);
                }
            }
        }
        if !self.releasing.is_empty() {
            self.send_round(now, true);
        }
        if heartbeat_due || self.send_now {
            self.send_round(now, false);
        }
    }

    /// Whether this node may keep announcing `vip`.
    fn can_keep(&self, vip: VipIndex) -> bool {
        self.healthy
            && !self.shut_down
            && self.quorum_ok
            && self.cluster.vips()[usize::from(vip)]
                .position(self.me)
                .is_some()
    }

    /// Whether this node may start announcing `vip` (not during the startup hold).
    fn can_own(&self, vip: VipIndex) -> bool {
        self.hold_until.is_none() && self.can_keep(vip)
    }

    fn set_takeover(&mut self, vip: VipIndex, at: Option<Instant>) {
        let slot = &mut self.vips[usize::from(vip)].takeover_at;
        match (slot.is_some(), at.is_some()) {
            (false, true) => self.pending_takeovers += 1,
            (true, false) => self.pending_takeovers -= 1,
            _ => {}
        }
        *slot = at;
    }

    fn evaluate(&mut self, vip: VipIndex, now: Instant) {
        let v = usize::from(vip);
        let can_own = self.can_own(vip);
        let claimer = self.best_claimer(vip);
        let cluster = Arc::clone(&self.cluster);
        let cv = &cluster.vips()[v];
        if self.vips[v].owned {
            if !self.can_keep(vip) {
                self.withdraw(vip);
                return;
            }
            match claimer {
                Some(c) if cv.outranks(c, self.me) => {
                    // Dual ownership (e.g. after a partition heals): the lower rank yields.
                    self.withdraw(vip);
                    return;
                }
                Some(_) if !self.vips[v].contested => {
                    // We keep it; clients may have followed the other claimant's gratuitous
                    // ARP, so announce again (the driver treats a repeat as "re-announce").
                    self.vips[v].contested = true;
                    self.actions
                        .push_back(Action::Announce { vip, addr: cv.addr });
                }
                Some(_) => {}
                None => self.vips[v].contested = false,
            }
            if let Some(delay) = cluster.preempt_delay() {
                let better = cv.order.iter().take_while(|&&n| n != self.me).any(|&n| {
                    let p = &self.peers[usize::from(n)];
                    p.alive && p.healthy && p.alive_since.is_some_and(|s| now >= s + delay)
                });
                if better {
                    self.withdraw(vip);
                    self.releasing.push(vip);
                }
            }
            return;
        }
        if claimer.is_some() {
            self.vips[v].vacant = None;
            self.vips[v].best_since = None;
            self.vips[v].confirmed_since = None;
            self.set_intent(vip, None);
            self.set_takeover(vip, None);
            return;
        }
        if let Some(seq) = self.vips[v].intent_seq {
            let rival = self
                .best_intender(vip)
                .is_some_and(|o| cv.outranks(o, self.me));
            if !can_own || rival || !self.fresh_quorum {
                self.set_intent(vip, None);
                return;
            }
            let window = cluster.timing().interval + cluster.timing().interval / 2;
            let acks = 1 + self
                .peers
                .iter()
                .filter(|p| {
                    !p.left
                        && p.hears_me
                        && p.acked_seq >= seq
                        && p.last_direct.is_some_and(|t| now < t + window)
                        && p.vacant.binary_search(&vip).is_err()
                })
                .count();
            if acks >= cluster.majority() {
                self.announce(vip);
            }
            return;
        }
        if self.best_intender(vip).is_some() {
            // Another node is about to take it over: treat it as taken.
            self.vips[v].best_since = None;
            self.vips[v].confirmed_since = None;
            self.set_takeover(vip, None);
            return;
        }
        let (since, why) = *self.vips[v].vacant.get_or_insert((now, Vacancy::Unknown));
        let best = cv.order.iter().copied().find(|&n| {
            if n == self.me {
                return true;
            }
            let p = &self.peers[usize::from(n)];
            p.alive && p.healthy
        });
        if !can_own || best != Some(self.me) {
            self.vips[v].best_since = None;
            self.vips[v].confirmed_since = None;
            self.set_intent(vip, None);
            self.set_takeover(vip, None);
            return;
        }
        // If we only just became the best candidate (a better one died or lost health), count
        // from then: every node that becomes best at the same moment still waits its own skew.
        let mut since = since.max(*self.vips[v].best_since.get_or_insert(now));
        if cluster.quorum() && !matches!(why, Vacancy::Released(_)) {
            // A majority (counting us) must currently see the VIP vacant: a peer that still
            // hears the owner keeps us from taking it even if we never heard its claim.
            let window = cluster.timing().interval + cluster.timing().interval / 2;
            let agree = 1 + self
                .peers
                .iter()
                .filter(|p| {
                    !p.left
                        && p.hears_me
                        && p.last_direct.is_some_and(|t| now < t + window)
                        && p.vacant.binary_search(&vip).is_ok()
                })
                .count();
            if agree < cluster.majority() {
                self.vips[v].confirmed_since = None;
                self.set_takeover(vip, None);
                return;
            }
            since = since.max(*self.vips[v].confirmed_since.get_or_insert(now));
        }
        let timing = cluster.timing();
        // Quorum mode: a node cut off from the majority may still start announcing for up to
        // 1.5 intervals after its last contact (the freshness window below), so a takeover
        // that is not an explicit release waits two intervals.
        let guard = match why {
            Vacancy::Released(_) => Duration::ZERO,
            Vacancy::Death(_) | Vacancy::Dropped(_) | Vacancy::Unknown if cluster.quorum() => {
                timing.interval * 2
            }
            _ => Duration::ZERO,
        };
        let my_pos = u32::from(cv.position(self.me).unwrap_or(0));
        let previous = match why {
            Vacancy::Death(p) | Vacancy::Released(p) | Vacancy::Dropped(p) => cv.position(p),
            Vacancy::Unknown => None,
        };
        let mut steps = my_pos - u32::from(previous.is_some_and(|p| u32::from(p) < my_pos));
        if matches!(why, Vacancy::Death(_)) {
            // Even the first successor waits one step after a failure detection: the owner's
            // third heartbeat may arrive a little after `interval × multiplier` (latency
            // jitter, clock drift), and must cancel the takeover rather than race it.
            steps += 1;
        }
        let at = since + guard + timing.skew_step * steps.min(MAX_SKEW_STEPS);
        if now >= at && !self.fresh_quorum {
            // Keep the VIP vacant until a majority has been heard recently; the next heartbeat
            // that restores freshness re-evaluates.
            self.set_takeover(vip, None);
        } else if now >= at && cluster.quorum() {
            // Quorum mode: first make the intent known; announce once a majority echoed it.
            self.set_takeover(vip, None);
            self.set_intent(vip, Some(self.seq + 1));
        } else if now >= at {
            self.set_takeover(vip, None);
            self.announce(vip);
        } else {
            self.set_takeover(vip, Some(at));
        }
    }

    fn announce(&mut self, vip: VipIndex) {
        let v = usize::from(vip);
        self.set_intent(vip, None);
        let state = &mut self.vips[v];
        state.vacant = None;
        state.best_since = None;
        state.confirmed_since = None;
        state.owned = true;
        self.stats.transitions += 1;
        self.send_now = true;
        let addr = self.cluster.vips()[v].addr;
        self.actions.push_back(Action::Announce { vip, addr });
    }

    fn withdraw(&mut self, vip: VipIndex) {
        let state = &mut self.vips[usize::from(vip)];
        if !state.owned {
            return;
        }
        state.owned = false;
        state.contested = false;
        // Whatever made it vacant before we took it is stale now.
        state.vacant = None;
        self.stats.transitions += 1;
        self.send_now = true;
        let addr = self.cluster.vips()[usize::from(vip)].addr;
        self.actions.push_back(Action::Withdraw { vip, addr });
    }

    fn send_round(&mut self, now: Instant, release: bool) {
        let n = self.cluster.nodes().len();
        let me = usize::from(self.me);
        self.seq += 1;
        let ages_ms = (0..n)
            .map(|i| {
                if i == me {
                    return 0;
                }
                self.peers[i].last_direct.map_or(AGE_UNKNOWN, |t| {
                    now.saturating_duration_since(t)
                        .as_millis()
                        .min(u128::from(AGE_UNKNOWN - 1)) as u16
                })
            })
            .collect();
        let claims = (0..self.vips.len())
            .filter(|&v| self.vips[v].owned)
            .map(|v| v as VipIndex)
            .collect();
        let vacant = if self.cluster.quorum() {
            (0..self.vips.len() as VipIndex)
                .filter(|&v| {
                    let state = &self.vips[usize::from(v)];
                    !state.owned
                        && state.intent_seq.is_none()
                        && self.best_claimer(v).is_none()
                        && self.best_intender(v).is_none()
                })
                .collect()
        } else {
            Vec::new()
        };
        let intents = if self.shut_down || self.intents_pending == 0 {
            Vec::new()
        } else {
            (0..self.vips.len() as VipIndex)
                .filter(|&v| self.vips[usize::from(v)].intent_seq.is_some())
                .collect()
        };
        let body = Arc::new(Body {
            kind: if release {
                MessageKind::Release
            } else {
                MessageKind::Heartbeat
            },
            fingerprint: self.cluster.fingerprint(),
            from: self.me,
            incarnation: self.incarnation,
            seq: self.seq,
            healthy: self.healthy && !self.shut_down,
            leaving: release && self.shut_down,
            claims,
            released: if release {
                std::mem::take(&mut self.releasing)
            } else {
                Vec::new()
            },
            ages_ms,
            vacant,
            intents,
            probe: !release && std::mem::take(&mut self.probe_next),
        });
        for (i, p) in self.peers.iter().enumerate() {
            if i == me {
                continue;
            }
            let message = Message {
                body: Arc::clone(&body),
                echo: p.last_rx.map(|(seq, t)| Echo {
                    seq,
                    hold: now.saturating_duration_since(t),
                }),
            };
            let to = i as NodeIndex;
            self.actions.push_back(if release {
                Action::SendRelease { to, message }
            } else {
                Action::SendHeartbeat { to, message }
            });
        }
        if self.sent.len() == RTT_HISTORY {
            self.sent.pop_front();
        }
        self.sent.push_back((self.seq, now));
        if !release {
            self.send_now = false;
            self.next_heartbeat = now + self.cluster.timing().interval;
        }
    }
}
