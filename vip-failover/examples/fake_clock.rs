//! Drives two [`Machine`]s by hand on a fake clock: no sockets, no sleeping. Shows the sans-IO
//! loop every driver implements: `handle(event, now)`, drain `poll_action()`, sleep until
//! `next_timeout()`.
//!
//! Run: `cargo run -p vip-failover --example fake_clock`

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use vip_failover::{Action, Cluster, ClusterConfig, Event, Machine, NodeId, Timing, VipSpec};

fn main() -> Result<(), vip_failover::Error> {
    let config = ClusterConfig {
        nodes: vec![NodeId::new("n1"), NodeId::new("n2")],
        vips: vec![VipSpec::new(Ipv4Addr::new(198, 51, 100, 50).into())],
        timing: Timing::DEFAULT,
        quorum: false,
        preempt_delay: None,
    };
    let cluster = Cluster::new(&config)?;
    let start = Instant::now();
    let mut now = start;
    let mut nodes = [
        Machine::new(cluster.clone(), &NodeId::new("n1"), 1, now)?,
        Machine::new(cluster.clone(), &NodeId::new("n2"), 1, now)?,
    ];
    let mut alive = [true, true];
    // Messages in flight: (deliver at, to, message). A 1 ms network.
    let mut wire: Vec<(Instant, usize, vip_failover::wire::Message)> = Vec::new();

    for tick in 0..2000u32 {
        if tick == 1000 {
            let owner = (0..2)
                .find(|&i| nodes[i].owns(0))
                .expect("someone owns the VIP");
            println!(
                "{:>6.3}s  n{} crashes",
                (now - start).as_secs_f64(),
                owner + 1
            );
            alive[owner] = false;
        }
        // Deliver due messages.
        let (due, rest): (Vec<_>, Vec<_>) = wire.drain(..).partition(|(at, _, _)| *at <= now);
        wire = rest;
        for (_, to, msg) in due {
            if alive[to] {
                nodes[to].handle(Event::Message(msg), now);
            }
        }
        for i in 0..2 {
            if !alive[i] {
                continue;
            }
            if nodes[i].next_timeout().is_some_and(|t| t <= now) {
                nodes[i].handle(Event::Timeout, now);
            }
            while let Some(action) = nodes[i].poll_action() {
                match action {
                    Action::Announce { addr, .. } => {
                        println!(
                            "{:>6.3}s  n{} announces {addr}",
                            (now - start).as_secs_f64(),
                            i + 1
                        )
                    }
                    Action::Withdraw { addr, .. } => {
                        println!(
                            "{:>6.3}s  n{} withdraws {addr}",
                            (now - start).as_secs_f64(),
                            i + 1
                        )
                    }
                    Action::SendHeartbeat { to, message } | Action::SendRelease { to, message } => {
                        wire.push((now + Duration::from_millis(1), usize::from(to), message));
                    }
                }
            }
        }
        now += Duration::from_millis(1);
    }
    let survivor = (0..2).find(|&i| alive[i]).expect("one node survives");
    println!(
        "final status of n{}: {:?}",
        survivor + 1,
        nodes[survivor].status(now).vips
    );
    Ok(())
}
