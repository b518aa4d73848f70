//! The Linux driver: runs one [`Machine`] against real sockets.
//!
//! * heartbeats: one UDP socket, HMAC-authenticated datagrams to every configured peer;
//! * announcements: an AF_PACKET socket on the interface sends gratuitous ARP (request and
//!   reply) and unsolicited NAs on the [`AnnounceSchedule`], answers ARP requests and neighbour
//!   solicitations for owned VIPs in ARP-only mode, and notices other MACs claiming our VIPs;
//! * addresses: in [`AddressMode::Kernel`] the VIP is added to / removed from the interface via
//!   rtnetlink, so the kernel answers ARP/NDP and accepts the traffic (keepalived style).
//!
//! Everything runs in one task; the machine is only touched between awaits.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::netlink::{AUTO_INTERFACE, Netlink};
use super::packet::{ETH_P_ARP, ETH_P_IPV6, PacketSocket};
use crate::Error;
use crate::config::{Cluster, ClusterConfig, NodeId, VipIndex};
use crate::frames::{self, Incoming, Mac};
use crate::machine::{Action, Event, Machine, Status};
use crate::schedule::{AnnounceSchedule, DEFAULT_REFRESH};
use crate::wire::{self, MAX_DATAGRAM, SharedKey};

/// How a VIP is made reachable on the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressMode {
    /// Add the VIP to the interface (the kernel answers ARP/NDP and accepts the traffic).
    Kernel,
    /// Only answer ARP/NDP from user space (MetalLB style; kube-proxy/IPVS accepts the traffic).
    ArpOnly,
}

/// Everything the driver needs.
#[derive(Clone, Debug)]
pub struct SpeakerOptions {
    /// The cluster (identical on every node).
    pub cluster: ClusterConfig,
    /// This node.
    pub node: NodeId,
    /// The interface VIPs live on, or [`AUTO_INTERFACE`] (`"auto"`): the interface holding
    /// the `listen` address, or with an unspecified `listen`, the default route's.
    pub interface: String,
    /// Local UDP address for heartbeats.
    pub listen: SocketAddr,
    /// Heartbeat address of every other node.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Shared HMAC key.
    pub key: SharedKey,
    /// Kernel address or ARP-only.
    pub address_mode: AddressMode,
    /// Prefix length per VIP when added to the interface (default /32 and /128).
    pub prefixes: BTreeMap<IpAddr, u8>,
    /// Periodic re-announcement while owner.
    pub refresh: Duration,
    /// Must grow across restarts (e.g. start time in µs since the epoch).
    pub incarnation: u64,
}

impl SpeakerOptions {
    /// Options with the defaults: kernel mode, /32 and /128, 30 s refresh.
    pub fn new(
        cluster: ClusterConfig,
        node: NodeId,
        interface: String,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        key: SharedKey,
        incarnation: u64,
    ) -> Self {
        SpeakerOptions {
            cluster,
            node,
            interface,
            listen,
            peers,
            key,
            address_mode: AddressMode::Kernel,
            prefixes: BTreeMap::new(),
            refresh: DEFAULT_REFRESH,
            incarnation,
        }
    }
}

/// A new membership for a running speaker ([`Speaker::follow`]): the cluster and every node's
/// heartbeat address, e.g. derived from Kubernetes Nodes, speaker Pods and LoadBalancer
/// Services. Every node must derive the same `cluster` (heartbeats carry its fingerprint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// The cluster (identical on every node).
    pub cluster: ClusterConfig,
    /// Heartbeat address of the nodes (this node's entry, if any, is ignored; a node without
    /// an address is a member that gets no heartbeats from us).
    pub peers: BTreeMap<NodeId, SocketAddr>,
}

/// I/O counters of the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IoCounters {
    /// Heartbeat and release datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams that failed to send (e.g. link down).
    pub send_errors: u64,
    /// Authenticated datagrams received.
    pub datagrams_received: u64,
    /// Datagrams dropped because the HMAC did not verify.
    pub unauthenticated: u64,
    /// Authentic datagrams that did not parse, or datagrams of impossible size.
    pub malformed: u64,
    /// Gratuitous ARP / unsolicited NA rounds sent.
    pub announcements: u64,
    /// ARP replies sent (ARP-only mode).
    pub arp_replies: u64,
    /// Neighbour advertisements sent in answer to solicitations (ARP-only mode).
    pub na_replies: u64,
    /// Frames from another MAC claiming one of our VIPs.
    pub conflicts: u64,
    /// Failed rtnetlink or packet-socket operations.
    pub os_errors: u64,
}

/// What `/status` and the metrics show.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SpeakerStatus {
    /// The machine's view.
    #[serde(flatten)]
    pub machine: Status,
    /// Interface name.
    pub interface: String,
    /// Interface MAC, `aa:bb:..`.
    pub mac: String,
    /// Address mode.
    pub address_mode: AddressMode,
    /// Driver counters.
    pub io: IoCounters,
}

/// A bound speaker, ready to [`run`](Speaker::run).
pub struct Speaker {
    machine: Machine,
    cluster: Arc<Cluster>,
    opts: SpeakerOptions,
    netlink: Netlink,
    arp: PacketSocket,
    ndp: Option<PacketSocket>,
    udp: UdpSocket,
    peer_addrs: Vec<Option<SocketAddr>>,
    schedule: AnnounceSchedule,
    io: IoCounters,
    status_tx: watch::Sender<Arc<SpeakerStatus>>,
    last_publish: Instant,
    out: Vec<u8>,
    updates: Option<watch::Receiver<Arc<Membership>>>,
    /// The last health input (true without a health feed).
    healthy: bool,
}

fn mac_string(m: Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Speaker {
    /// Validates the options, looks up the interface, opens the sockets and removes VIP
    /// addresses a previous (killed) instance may have left on the interface.
    pub async fn bind(mut opts: SpeakerOptions) -> Result<Speaker, Error> {
        let cluster = Cluster::new(&opts.cluster)?;
        let now = Instant::now();
        let machine = Machine::new(Arc::clone(&cluster), &opts.node, opts.incarnation, now)?;
        let mut peer_addrs = vec![None; cluster.nodes().len()];
        for (i, node) in cluster.nodes().iter().enumerate() {
            if *node == opts.node {
                continue;
            }
            let addr = opts
                .peers
                .get(node)
                .ok_or_else(|| Error::Config(format!("no heartbeat address for node `{node}`")))?;
            peer_addrs[i] = Some(*addr);
        }
        let netlink = if opts.interface == AUTO_INTERFACE {
            let netlink = Netlink::connect_auto(opts.listen.ip()).await?;
            tracing::info!(
                interface = netlink.interface(),
                "interface = \"auto\" chose"
            );
            // Every later use (sockets, status, logs) names the real interface.
            opts.interface = netlink.interface().to_owned();
            netlink
        } else {
            Netlink::connect(&opts.interface).await?
        };
        let arp = PacketSocket::open(&opts.interface, netlink.index(), ETH_P_ARP)?;
        let ndp = if cluster.vips().iter().any(|v| v.addr.is_ipv6()) {
            Some(PacketSocket::open(
                &opts.interface,
                netlink.index(),
                ETH_P_IPV6,
            )?)
        } else {
            None
        };
        let udp = UdpSocket::bind(opts.listen)
            .await
            .map_err(|e| Error::io(format!("bind heartbeat socket {}", opts.listen), e))?;
        let vips: Vec<IpAddr> = cluster.vips().iter().map(|v| v.addr).collect();
        for (addr, prefix) in netlink.present(&vips).await? {
            tracing::info!(%addr, interface = %opts.interface, "removing stale VIP address");
            netlink.remove(addr, prefix).await?;
        }
        let status = Arc::new(SpeakerStatus {
            machine: machine.status(now),
            interface: opts.interface.clone(),
            mac: mac_string(netlink.mac()),
            address_mode: opts.address_mode,
            io: IoCounters::default(),
        });
        let (status_tx, _) = watch::channel(status);
        Ok(Speaker {
            schedule: AnnounceSchedule::new(opts.refresh),
            machine,
            cluster,
            opts,
            netlink,
            arp,
            ndp,
            udp,
            peer_addrs,
            io: IoCounters::default(),
            status_tx,
            last_publish: now,
            out: Vec::with_capacity(1500),
            updates: None,
            healthy: true,
        })
    }

    /// Applies every membership `updates` publishes while running (its current value too, if
    /// it differs from the running one), without a restart: VIPs no longer configured are
    /// withdrawn, kept VIPs stay announced, and the machine waits one detection timeout before
    /// taking anything new over ([`Event::Reconfigure`]). A node that is not a member gives up
    /// everything until it is one again. An invalid membership is logged and ignored.
    pub fn follow(&mut self, updates: watch::Receiver<Arc<Membership>>) {
        self.updates = Some(updates);
    }

    /// The heartbeat socket's local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// The interface MAC.
    pub fn mac(&self) -> Mac {
        self.netlink.mac()
    }

    /// A live view of the status (updated on every transition and at least every 200 ms).
    pub fn status(&self) -> watch::Receiver<Arc<SpeakerStatus>> {
        self.status_tx.subscribe()
    }

    /// Runs until `shutdown` completes, then withdraws every VIP, tells the peers (so they take
    /// over at once) and returns. `health`, if given, feeds local readiness to the election.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        mut health: Option<watch::Receiver<bool>>,
    ) -> Result<(), Error> {
        tokio::pin!(shutdown);
        let mut udp_buf = vec![0u8; MAX_DATAGRAM];
        let mut arp_buf = vec![0u8; 2048];
        let mut ndp_buf = vec![0u8; 2048];
        if let Some(h) = &health {
            self.healthy = *h.borrow();
            self.machine
                .handle(Event::Health(self.healthy), Instant::now());
        }
        self.apply().await;
        if let Some(rx) = &mut self.updates {
            let current = Arc::clone(&rx.borrow_and_update());
            self.reconfigure(&current).await;
        }
        loop {
            let deadline = [self.machine.next_timeout(), self.schedule.next_due()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            let wake = tokio::select! {
                biased;
                () = &mut shutdown => Wake::Shutdown,
                r = self.udp.recv_from(&mut udp_buf) => Wake::Udp(r),
                r = self.arp.recv(&mut arp_buf) => Wake::Frame(r.map(|n| (n, false))),
                r = recv_opt(self.ndp.as_ref(), &mut ndp_buf) => Wake::Frame(r.map(|n| (n, true))),
                h = next_health(&mut health) => Wake::Health(h),
                m = next_membership(&mut self.updates) => Wake::Membership(m),
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => Wake::Timer,
            };
            let now = Instant::now();
            match wake {
                Wake::Shutdown => {
                    self.machine.handle(Event::Shutdown, now);
                    self.apply().await;
                    self.publish(true);
                    return Ok(());
                }
                Wake::Timer => {
                    // After a stall, heartbeats may be queued: read them before acting on
                    // timers, so a late but live owner cancels its successor's takeover.
                    let mut events = self.drain_udp(&mut udp_buf, None);
                    events.push(Event::Timeout);
                    self.machine.handle_all(events, now);
                }
                Wake::Udp(Ok((n, _from))) => {
                    let first = self.decode(&udp_buf[..n]);
                    let events = self.drain_udp(&mut udp_buf, first);
                    self.machine.handle_all(events, now);
                }
                Wake::Udp(Err(e)) => {
                    tracing::debug!(error = %e, "heartbeat receive failed");
                    self.io.os_errors += 1;
                }
                Wake::Frame(Ok((n, v6))) => {
                    let buf = if v6 { &ndp_buf[..n] } else { &arp_buf[..n] };
                    if let Some(frame) = frames::parse(buf) {
                        self.on_frame(frame, now).await;
                    }
                }
                Wake::Frame(Err(e)) => {
                    tracing::debug!(error = %e, "packet receive failed");
                    self.io.os_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Wake::Health(h) => {
                    self.healthy = h;
                    self.machine.handle(Event::Health(h), now);
                }
                Wake::Membership(m) => self.reconfigure(&m).await,
            }
            let transitions = self.machine.stats().transitions;
            self.apply().await;
            self.publish(self.machine.stats().transitions != transitions);
        }
    }

    /// Switches the machine and the driver's per-node and per-VIP state to `m`.
    async fn reconfigure(&mut self, m: &Membership) {
        if m.cluster == self.opts.cluster && m.peers == self.opts.peers {
            return;
        }
        let cluster = match Cluster::new(&m.cluster) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an invalid membership");
                return;
            }
        };
        let now = Instant::now();
        let member = cluster.node_index(&self.opts.node).is_some();
        // Announcement schedules are indexed by VIP: remember them by address.
        let scheduled: Vec<IpAddr> = self
            .cluster
            .vips()
            .iter()
            .enumerate()
            .filter(|(i, _)| self.schedule.contains(*i as VipIndex))
            .map(|(_, v)| v.addr)
            .collect();
        let mut peer_addrs = vec![None; cluster.nodes().len()];
        for (i, node) in cluster.nodes().iter().enumerate() {
            if *node != self.opts.node {
                peer_addrs[i] = m.peers.get(node).copied();
            }
        }
        self.machine
            .handle(Event::Reconfigure(Arc::clone(&cluster)), now);
        if !member {
            // The machine keeps its old cluster and withdraws everything; so do we.
            tracing::warn!(node = %self.opts.node, "this node is not a member; withdrawing every VIP");
            self.apply().await;
            return;
        }
        // The machine now speaks in the new cluster's indices (withdrawals of VIPs that are gone
        // carry their address; `apply` resolves announcements by address): switch the driver's
        // per-node and per-VIP state before applying its actions. Kept VIPs are re-announced.
        self.peer_addrs = peer_addrs;
        self.cluster = Arc::clone(&cluster);
        self.schedule = AnnounceSchedule::new(self.opts.refresh);
        for addr in scheduled {
            if let Some(v) = cluster.vip_index(addr).filter(|&v| self.machine.owns(v)) {
                self.schedule.start(v, now);
            }
        }
        self.apply().await;
        if self.ndp.is_none() && cluster.vips().iter().any(|v| v.addr.is_ipv6()) {
            match PacketSocket::open(&self.opts.interface, self.netlink.index(), ETH_P_IPV6) {
                Ok(s) => self.ndp = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the NDP socket for IPv6 VIPs");
                    self.io.os_errors += 1;
                }
            }
        }
        self.opts.cluster = m.cluster.clone();
        self.opts.peers = m.peers.clone();
        // A node that had left the cluster comes back with its current health.
        self.machine.handle(Event::Health(self.healthy), now);
        tracing::info!(
            nodes = self.cluster.nodes().len(),
            vips = self.cluster.vips().len(),
            "membership applied"
        );
        self.publish(true);
    }

    fn decode(&mut self, datagram: &[u8]) -> Option<Event> {
        match wire::decode(datagram, &self.opts.key) {
            Ok(msg) => {
                self.io.datagrams_received += 1;
                Some(Event::Message(msg))
            }
            Err(Error::Unauthenticated) => {
                self.io.unauthenticated += 1;
                None
            }
            Err(_) => {
                self.io.malformed += 1;
                None
            }
        }
    }

    /// Every datagram already queued on the heartbeat socket (bounded, so a flood cannot
    /// starve the timers), decoded, after `first`.
    fn drain_udp(&mut self, buf: &mut [u8], first: Option<Event>) -> Vec<Event> {
        let mut events: Vec<Event> = first.into_iter().collect();
        for _ in 0..256 {
            match self.udp.try_recv_from(buf) {
                Ok((n, _)) => {
                    if let Some(e) = self.decode(&buf[..n]) {
                        events.push(e);
                    }
                }
                Err(_) => break,
            }
        }
        events
    }

    fn publish(&mut self, force: bool) {
        let now = Instant::now();
        if !force && now < self.last_publish + Duration::from_millis(200) {
            return;
        }
        self.last_publish = now;
        let status = SpeakerStatus {
            machine: self.machine.status(now),
            interface: self.opts.interface.clone(),
            mac: mac_string(self.netlink.mac()),
            address_mode: self.opts.address_mode,
            io: self.io,
        };
        self.status_tx.send_replace(Arc::new(status));
    }

    fn prefix(&self, addr: IpAddr) -> u8 {
        self.opts
            .prefixes
            .get(&addr)
            .copied()
            .unwrap_or(if addr.is_ipv4() { 32 } else { 128 })
    }

    fn owned_vip(&self, addr: IpAddr) -> Option<VipIndex> {
        self.cluster
            .vip_index(addr)
            .filter(|&v| self.machine.owns(v))
    }

    async fn apply(&mut self) {
        while let Some(action) = self.machine.poll_action() {
            let now = Instant::now();
            match action {
                Action::Announce { addr, .. } => {
                    // By address: across a reconfiguration the action's index may be the old
                    // cluster's (see `reconfigure`).
                    let Some(vip) = self.cluster.vip_index(addr) else {
                        continue;
                    };
                    let again = self.schedule.contains(vip);
                    if self.opts.address_mode == AddressMode::Kernel
                        && !again
                        && let Err(e) = self.netlink.add(addr, self.prefix(addr)).await
                    {
                        tracing::warn!(error = %e, "could not add VIP address");
                        self.io.os_errors += 1;
                    }
                    tracing::info!(%addr, again, "announcing VIP");
                    self.schedule.start(vip, now);
                }
                Action::Withdraw { addr, .. } => {
                    if let Some(vip) = self.cluster.vip_index(addr) {
                        self.schedule.stop(vip);
                    }
                    tracing::info!(%addr, "withdrawing VIP");
                    if self.opts.address_mode == AddressMode::Kernel
                        && let Err(e) = self.netlink.remove(addr, self.prefix(addr)).await
                    {
                        tracing::warn!(error = %e, "could not remove VIP address");
                        self.io.os_errors += 1;
                    }
                }
                Action::SendHeartbeat { to, message } | Action::SendRelease { to, message } => {
                    let Some(dest) = self.peer_addrs[usize::from(to)] else {
                        continue;
                    };
                    wire::encode(&message, &self.opts.key, &mut self.out);
                    match self.udp.try_send_to(&self.out, dest) {
                        Ok(_) => self.io.datagrams_sent += 1,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            match self.udp.send_to(&self.out, dest).await {
                                Ok(_) => self.io.datagrams_sent += 1,
                                Err(_) => self.io.send_errors += 1,
                            }
                        }
                        Err(_) => self.io.send_errors += 1,
                    }
                }
            }
        }
        self.announce_due().await;
    }

    async fn announce_due(&mut self) {
        let mac = self.netlink.mac();
        for vip in self.schedule.due(Instant::now()) {
            let addr = self.cluster.vips()[usize::from(vip)].addr;
            let sent = match addr {
                IpAddr::V4(a) => {
                    let r1 = self.arp.send(&frames::gratuitous_arp_request(mac, a)).await;
                    let r2 = self.arp.send(&frames::gratuitous_arp_reply(mac, a)).await;
                    r1.and(r2)
                }
                IpAddr::V6(a) => self.arp.send(&frames::unsolicited_na(mac, a)).await,
            };
            match sent {
                Ok(()) => self.io.announcements += 1,
                Err(e) => {
                    tracing::debug!(error = %e, %addr, "announcement failed");
                    self.io.os_errors += 1;
                }
            }
        }
    }

    async fn on_frame(&mut self, frame: Incoming, now: Instant) {
        let mac = self.netlink.mac();
        let arp_only = self.opts.address_mode == AddressMode::ArpOnly;
        let reply = match frame {
            Incoming::ArpRequest {
                sender_mac,
                sender_ip,
                target,
            } => {
                if !arp_only || sender_mac == mac || self.owned_vip(IpAddr::V4(target)).is_none() {
                    return;
                }
                self.io.arp_replies += 1;
                frames::arp_reply(mac, target, sender_mac, sender_ip)
            }
            Incoming::NeighborSolicit {
                src_mac,
                src_ip,
                target,
            } => {
                if !arp_only || src_mac == mac || self.owned_vip(IpAddr::V6(target)).is_none() {
                    return;
                }
                self.io.na_replies += 1;
                frames::solicited_na(mac, target, src_mac, src_ip)
            }
            Incoming::ArpClaim { ip, mac: other } => {
                self.on_claim(IpAddr::V4(ip), other, now);
                return;
            }
            Incoming::NeighborAdvert { target, mac: other } => {
                self.on_claim(IpAddr::V6(target), other, now);
                return;
            }
        };
        if let Err(e) = self.arp.send(&reply).await {
            tracing::debug!(error = %e, "reply failed");
            self.io.os_errors += 1;
        }
    }

    /// Another MAC claims a VIP we own. If it is a peer taking over, the next heartbeat settles
    /// who keeps it; if we keep it, re-announcing one interval later brings clients back.
    fn on_claim(&mut self, addr: IpAddr, other: Mac, now: Instant) {
        if other == self.netlink.mac() {
            return;
        }
        if let Some(vip) = self.owned_vip(addr) {
            self.io.conflicts += 1;
            self.schedule
                .start(vip, now + self.cluster.timing().interval);
        }
    }
}

enum Wake {
    Shutdown,
    Timer,
    Udp(io::Result<(usize, SocketAddr)>),
    Frame(io::Result<(usize, bool)>),
    Health(bool),
    Membership(Arc<Membership>),
}

async fn recv_opt(socket: Option<&PacketSocket>, buf: &mut [u8]) -> io::Result<usize> {
    match socket {
        Some(s) => s.recv(buf).await,
        None => std::future::pending().await,
    }
}

async fn next_membership(rx: &mut Option<watch::Receiver<Arc<Membership>>>) -> Arc<Membership> {
    match rx {
        Some(r) => {
            if r.changed().await.is_err() {
                *rx = None;
                return std::future::pending().await;
            }
            Arc::clone(&r.borrow_and_update())
        }
        None => std::future::pending().await,
    }
}

async fn next_health(rx: &mut Option<watch::Receiver<bool>>) -> bool {
    match rx {
        Some(r) => {
            if r.changed().await.is_err() {
                *rx = None;
                return std::future::pending().await;
            }
            *r.borrow_and_update()
        }
        None => std::future::pending().await,
    }
}
