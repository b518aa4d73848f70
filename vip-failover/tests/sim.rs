//! Properties of the election, checked on the deterministic simulator.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use proptest::prelude::*;
use vip_failover::sim::{NetConfig, SimConfig, Simulation};
use vip_failover::{ClusterConfig, NodeId, NodeIndex, Timing, VipIndex, VipSpec};

const MS: Duration = Duration::from_millis(1);

fn vip(i: usize) -> IpAddr {
    if i.is_multiple_of(2) {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 50 + i as u8))
    } else {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x50 + i as u16))
    }
}

fn config(nodes: usize, vips: usize, quorum: bool, seed: u64) -> SimConfig {
    config_with(Timing::DEFAULT, nodes, vips, quorum, seed)
}

fn config_with(timing: Timing, nodes: usize, vips: usize, quorum: bool, seed: u64) -> SimConfig {
    SimConfig {
        cluster: ClusterConfig {
            nodes: (0..nodes)
                .map(|i| NodeId::new(format!("node-{i}")))
                .collect(),
            vips: (0..vips).map(|i| VipSpec::new(vip(i))).collect(),
            timing,
            quorum,
            preempt_delay: None,
        },
        net: NetConfig::default(),
        seed,
        max_clock_offset: Duration::from_secs(5),
        max_drift_ppm: 100.0,
    }
}

fn converge(sim: &mut Simulation) -> Duration {
    sim.run_until_pred(Duration::from_secs(3), Simulation::converged)
        .expect("cluster converges at startup")
}

/// Upper bound for a takeover after a crash: detection timeout, quorum guard (two intervals),
/// skew steps of the worst-placed successor (plus the post-detection step) and network latency,
/// plus 5 ms of slack.
fn failover_bound(cfg: &SimConfig) -> Duration {
    let t = cfg.cluster.timing;
    let n = cfg.cluster.nodes.len() as u32;
    t.detection_timeout()
        + if cfg.cluster.quorum {
            t.interval * 2
        } else {
            Duration::ZERO
        }
        + t.skew_step * (n.min(16) + 1)
        + cfg.net.latency_max * 2
        + 5 * MS
}

#[test]
fn startup_places_every_vip_once_and_spreads_them() {
    let mut sim = Simulation::new(&config(5, 40, false, 1)).unwrap();
    let t = converge(&mut sim);
    assert!(t < Duration::from_millis(500), "converged after {t:?}");
    sim.run_for(Duration::from_secs(2));
    assert!(sim.converged());
    let mut per_node = [0usize; 5];
    for v in 0..40 {
        per_node[usize::from(sim.owners(v)[0])] += 1;
    }
    assert!(
        per_node.iter().all(|&c| c > 0),
        "hash ranking spreads VIPs: {per_node:?}"
    );
    // Nothing moved after convergence.
    assert!(sim.stats().announces.iter().all(|&a| a == 1));
}

#[test]
fn graceful_stop_hands_over_within_50ms() {
    let mut sim = Simulation::new(&config(3, 1, false, 7)).unwrap();
    converge(&mut sim);
    sim.run_for(Duration::from_millis(1234));
    let owner = sim.owners(0)[0];
    let t0 = sim.now();
    sim.stop(owner);
    let t = sim
        .run_until_pred(Duration::from_secs(2), |s| s.owners(0).len() == 1)
        .expect("successor takes over");
    assert!(t - t0 <= 50 * MS, "handover took {:?}", t - t0);
    assert_ne!(sim.owners(0)[0], owner);
}

#[test]
fn ownership_is_sticky_when_a_better_node_returns() {
    let mut sim = Simulation::new(&config(3, 1, false, 3)).unwrap();
    converge(&mut sim);
    let first = sim.owners(0)[0];
    sim.crash(first);
    sim.run_for(Duration::from_secs(1));
    let second = sim.owners(0)[0];
    sim.start(first);
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.owners(0), &[second], "the live owner keeps its VIP");
}

#[test]
fn delayed_preemption_returns_the_vip_to_the_best_node() {
    let mut cfg = config(3, 1, false, 3);
    cfg.cluster.preempt_delay = Some(Duration::from_secs(1));
    let mut sim = Simulation::new(&cfg).unwrap();
    converge(&mut sim);
    let first = sim.owners(0)[0];
    sim.crash(first);
    sim.run_for(Duration::from_secs(1));
    assert_ne!(sim.owners(0), &[first]);
    sim.start(first);
    sim.run_for(Duration::from_millis(700));
    assert_ne!(sim.owners(0), &[first], "not before the delay");
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.owners(0), &[first], "preempted back after the delay");
    assert_eq!(sim.stats().max_owners, 1);
}

#[test]
fn unhealthy_node_gives_up_its_vips() {
    let mut sim = Simulation::new(&config(3, 6, false, 11)).unwrap();
    converge(&mut sim);
    let owner = sim.owners(0)[0];
    sim.set_health(owner, false);
    sim.run_for(Duration::from_millis(100));
    assert!(sim.converged());
    assert!((0..6).all(|v| sim.owners(v) != [owner]));
}

#[test]
fn without_quorum_dual_ownership_after_heal_ends_within_one_heartbeat() {
    let cfg = config(3, 4, false, 5);
    let mut sim = Simulation::new(&cfg).unwrap();
    converge(&mut sim);
    let owner = sim.owners(0)[0];
    let others: Vec<NodeIndex> = (0..3).filter(|&n| n != owner).collect();
    sim.partition(&[vec![owner], others]);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.owners(0).len(), 2, "both sides announce without quorum");
    sim.heal();
    let t0 = sim.now();
    let t = sim
        .run_until_pred(Duration::from_secs(2), |s| {
            (0..4).all(|v| s.owners(v).len() == 1)
        })
        .expect("resolves");
    let bound = cfg.cluster.timing.interval + cfg.net.latency_max + MS;
    assert!(
        t - t0 <= bound,
        "dual ownership lasted {:?} after heal",
        t - t0
    );
}

#[test]
fn quorum_minority_withdraws_and_majority_takes_over() {
    let cfg = config(5, 4, true, 9);
    let mut sim = Simulation::new(&cfg).unwrap();
    converge(&mut sim);
    let owner = sim.owners(0)[0];
    let rest: Vec<NodeIndex> = (0..5).filter(|&n| n != owner).collect();
    sim.partition(&[vec![owner, rest[0]], rest[1..].to_vec()]);
    let t0 = sim.now();
    let t = sim
        .run_until_pred(Duration::from_secs(3), |s| {
            s.owners(0).len() == 1 && s.owners(0)[0] != owner
        })
        .expect("majority takes over");
    assert!(t - t0 <= failover_bound(&cfg), "took {:?}", t - t0);
    assert_eq!(sim.stats().max_owners, 1);
    // The minority side holds nothing.
    for v in 0..4 {
        assert!(sim.owners(v).iter().all(|o| *o != owner && *o != rest[0]));
    }
}

#[test]
fn simulation_reports_convergence_and_message_rate() {
    // A CI-sized version of `examples/sim_report.rs` (which runs 100 nodes × 1000 VIPs).
    let mut sim = Simulation::new(&config(20, 200, true, 42)).unwrap();
    let t = converge(&mut sim);
    sim.run_for(Duration::from_secs(1));
    let (sent0, t0) = (sim.stats().sent, sim.now());
    sim.run_for(Duration::from_secs(2));
    let s = sim.stats();
    let rate = (s.sent - sent0) as f64 / (sim.now() - t0).as_secs_f64();
    // Steady state: 20 nodes × 19 peers × 10 heartbeats/s.
    assert!((3_800.0..5_000.0).contains(&rate), "messages/s {rate}");
    assert!(t < Duration::from_millis(600), "converged after {t:?}");
    assert_eq!(s.max_owners, 1);
}

#[derive(Clone, Debug)]
enum Op {
    Run(u64),
    Crash(NodeIndex),
    Start(NodeIndex),
    Stop(NodeIndex),
    Partition(Vec<bool>),
    Heal,
    Loss(u8),
}

fn op(nodes: usize) -> impl Strategy<Value = Op> {
    let n = nodes as NodeIndex;
    prop_oneof![
        4 => (1u64..1500).prop_map(Op::Run),
        1 => (0..n).prop_map(Op::Crash),
        2 => (0..n).prop_map(Op::Start),
        1 => (0..n).prop_map(Op::Stop),
        2 => proptest::collection::vec(any::<bool>(), nodes).prop_map(Op::Partition),
        2 => Just(Op::Heal),
        1 => (0u8..30).prop_map(Op::Loss),
    ]
}

fn apply(sim: &mut Simulation, op: &Op) {
    match op {
        Op::Run(ms) => sim.run_for(Duration::from_millis(*ms)),
        Op::Crash(n) => sim.crash(*n),
        Op::Start(n) => sim.start(*n),
        Op::Stop(n) => sim.stop(*n),
        Op::Partition(side) => {
            let a = (0..side.len())
                .filter(|&i| side[i])
                .map(|i| i as NodeIndex)
                .collect();
            let b = (0..side.len())
                .filter(|&i| !side[i])
                .map(|i| i as NodeIndex)
                .collect();
            sim.partition(&[a, b]);
        }
        Op::Heal => sim.heal(),
        Op::Loss(pct) => sim.set_loss(f64::from(*pct) / 100.0),
    }
}

/// Every shipped timing profile: the properties must hold for each of them.
fn profile() -> impl Strategy<Value = Timing> {
    prop_oneof![
        Just(Timing::DEFAULT),
        Just(Timing::SAFE),
        Just(Timing::FAST)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Quorum mode: crashes, restarts, graceful stops, partitions and loss never produce two
    /// announcers for one VIP at any instant.
    #[test]
    fn quorum_mode_never_has_two_owners(
        timing in profile(),
        nodes in 3usize..6,
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(5), 1..25),
    ) {
        let mut sim = Simulation::new(&config_with(timing, nodes, 3, true, seed)).unwrap();
        for o in &ops {
            let o = match o {
                Op::Crash(n) | Op::Start(n) | Op::Stop(n) if usize::from(*n) >= nodes => continue,
                Op::Partition(side) => Op::Partition(side[..nodes].to_vec()),
                o => o.clone(),
            };
            apply(&mut sim, &o);
            prop_assert!(sim.stats().max_owners <= 1, "two owners after {:?}", o);
        }
        sim.run_for(Duration::from_secs(2));
        prop_assert!(sim.stats().max_owners <= 1);
    }

    /// After a crash of the owner, a new owner appears within the detection bound.
    #[test]
    fn crash_failover_within_detection_bound(
        timing in profile(),
        nodes in 2usize..7,
        quorum in any::<bool>(),
        seed in any::<u64>(),
        phase_ms in 0u64..1000,
    ) {
        let nodes = if quorum { nodes.max(3) } else { nodes };
        let cfg = config_with(timing, nodes, 2, quorum, seed);
        let mut sim = Simulation::new(&cfg).unwrap();
        converge(&mut sim);
        sim.run_for(Duration::from_millis(500 + phase_ms));
        let owner = sim.owners(0)[0];
        sim.crash(owner);
        let t0 = sim.now();
        let t = sim.run_until_pred(Duration::from_secs(5), |s| s.owners(0).len() == 1);
        let t = t.expect("someone takes over");
        prop_assert!(t - t0 <= failover_bound(&cfg), "took {:?}", t - t0);
    }

    /// 5% loss without failures: nothing ever moves.
    #[test]
    fn no_flapping_under_five_percent_loss(
        timing in profile(),
        nodes in 3usize..6,
        quorum in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut cfg = config_with(timing, nodes, 6, quorum, seed);
        cfg.net.loss = 0.05;
        let mut sim = Simulation::new(&cfg).unwrap();
        converge(&mut sim);
        sim.run_for(Duration::from_secs(1));
        let before = sim.stats().announces;
        sim.run_for(Duration::from_secs(30));
        let s = sim.stats();
        prop_assert_eq!(s.announces, before);
        prop_assert!(sim.converged());
        prop_assert_eq!(s.max_owners, 1);
    }
}

#[test]
fn vip_index_round_trip_in_status() {
    let mut sim = Simulation::new(&config(3, 2, false, 1)).unwrap();
    converge(&mut sim);
    let owner = sim.owners(0)[0];
    let m = sim.machine(owner).unwrap();
    let status = m.status(std::time::Instant::now());
    assert!(status.vips[0].local);
    assert_eq!(m.owner_of(0 as VipIndex), Some(owner));
    assert_eq!(status.peers.len(), 2);
}
