//! Simulates 100 nodes × 1000 VIPs (default profile, 0.1–2 ms latency, 1% loss) and reports
//! startup convergence, heartbeat messages per second, and failover after a node crash and after
//! a graceful stop. Deterministic for a given seed.
//!
//! Run: `cargo run --release -p vip-failover --example sim_report [nodes] [vips] [seed] [quorum]`

use std::time::{Duration, Instant};

use vip_failover::sim::{NetConfig, SimConfig, Simulation};
use vip_failover::{ClusterConfig, NodeId, NodeIndex, Timing, VipSpec};

fn main() -> Result<(), vip_failover::Error> {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u64>().unwrap_or(0));
    let nodes = args.next().filter(|&n| n > 0).unwrap_or(100) as usize;
    let vips = args.next().filter(|&n| n > 0).unwrap_or(1000) as usize;
    let seed = args.next().unwrap_or(1);
    let quorum = std::env::args().any(|a| a == "quorum");
    let config = SimConfig {
        cluster: ClusterConfig {
            nodes: (0..nodes)
                .map(|i| NodeId::new(format!("node-{i:03}")))
                .collect(),
            vips: (0..vips)
                .map(|i| {
                    VipSpec::new(std::net::IpAddr::V6(std::net::Ipv6Addr::new(
                        0x2001, 0xdb8, 0, 0, 0, 0, 1, i as u16,
                    )))
                })
                .collect(),
            timing: Timing::DEFAULT,
            quorum,
            preempt_delay: None,
        },
        net: NetConfig {
            loss: 0.01,
            ..NetConfig::default()
        },
        seed,
        max_clock_offset: Duration::from_secs(10),
        max_drift_ppm: 100.0,
    };
    let wall = Instant::now();
    let mut sim = Simulation::new(&config)?;
    let converged = sim
        .run_until_pred(Duration::from_secs(10), Simulation::converged)
        .map_or("never".to_string(), |t| {
            format!("{:.0} ms", t.as_secs_f64() * 1e3)
        });
    sim.run_for(Duration::from_secs(1));
    let (sent0, t0) = (sim.stats().sent, sim.now());
    sim.run_for(Duration::from_secs(4));
    let rate = (sim.stats().sent - sent0) as f64 / (sim.now() - t0).as_secs_f64();
    let mode = if quorum { "quorum mode" } else { "no quorum" };
    println!(
        "{nodes} nodes × {vips} VIPs, default profile (100 ms × 3), {mode}, 1% loss, seed {seed}"
    );
    println!("  startup convergence:       {converged}");
    println!(
        "  heartbeat messages/s:      {rate:.0} steady state steady state ({:.1} per node per second)",
        rate / nodes as f64
    );

    // Crash the node owning the most VIPs; time until all of them have one owner again.
    let mut owned = vec![0usize; nodes];
    for v in 0..vips {
        owned[usize::from(sim.owners(v as u16)[0])] += 1;
    }
    let victim = (0..nodes).max_by_key(|&n| owned[n]).unwrap_or(0) as NodeIndex;
    let t0 = sim.now();
    sim.crash(victim);
    let t = sim.run_until_pred(Duration::from_secs(5), Simulation::converged);
    println!(
        "  crash of a node owning {} VIPs: all re-owned after {}",
        owned[usize::from(victim)],
        t.map_or("never".into(), |t| format!(
            "{:.0} ms",
            (t - t0).as_secs_f64() * 1e3
        ))
    );
    sim.run_for(Duration::from_secs(2));
    let owner0 = sim.owners(0)[0];
    let t0 = sim.now();
    sim.stop(owner0);
    let t = sim.run_until_pred(Duration::from_secs(5), Simulation::converged);
    println!(
        "  graceful stop of a node:   all re-owned after {}",
        t.map_or("never".into(), |t| format!(
            "{:.1} ms",
            (t - t0).as_secs_f64() * 1e3
        ))
    );
    let s = sim.stats();
    println!(
        "  max simultaneous owners:   {} (dual ownership total {:?})",
        s.max_owners, s.dual_ownership
    );
    println!(
        "  simulated {:.1} s in {:.1} s wall",
        sim.now().as_secs_f64(),
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}
