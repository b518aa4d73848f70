//! Virtual-IP failover for Fairway: sub-second, sticky, split-brain-free.
//!
//! The heart is [`Machine`], a sans-IO state machine in the style of `quinn-proto`: it takes
//! peer heartbeats, timer ticks, local health and configuration as [`Event`]s and produces
//! [`Action`]s (announce, withdraw, send heartbeat, send release). It reads no clock and owns no
//! socket, so [`sim::Simulation`] can drive hundreds of machines deterministically on a fake
//! network, and the Linux driver ([`linux`]) runs the very same code against UDP heartbeats,
//! an AF_PACKET ARP/NDP announcer and rtnetlink addresses.
//!
//! * [`config`]: nodes, VIPs, timing profiles; compiled into a [`Cluster`] with per-VIP rankings.
//! * [`rank`]: MetalLB-style `sha256(node#vip)` order under VRRP-style priorities.
//! * [`wire`]: the heartbeat format, authenticated with HMAC-SHA256.
//! * [`frames`]: gratuitous ARP, unsolicited/solicited NA, ARP/NS parsing (pure, byte-tested).
//! * [`schedule`]: when to (re-)announce an owned VIP.
//! * [`sim`]: the deterministic network simulator.

pub mod config;
mod error;
pub mod frames;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod machine;
pub mod rank;
pub mod schedule;
pub mod sim;
pub mod wire;

pub use config::{Cluster, ClusterConfig, NodeId, NodeIndex, Timing, VipIndex, VipSpec};
pub use error::Error;
pub use machine::{Action, Event, Machine, MachineStats, Status};
