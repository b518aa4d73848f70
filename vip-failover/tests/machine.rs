//! Single-machine behaviour driven by hand: replays, foreign configurations, reconfiguration,
//! shutdown.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vip_failover::wire::Message;
use vip_failover::{Action, Cluster, ClusterConfig, Event, Machine, NodeId, Timing, VipSpec};

fn vip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, last))
}

fn config(vips: &[u8]) -> ClusterConfig {
    ClusterConfig {
        nodes: vec![NodeId::new("a"), NodeId::new("b")],
        vips: vips.iter().map(|&v| VipSpec::new(vip(v))).collect(),
        timing: Timing::DEFAULT,
        quorum: false,
        preempt_delay: None,
    }
}

fn drain(m: &mut Machine) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action()).collect()
}

fn first_message(actions: &[Action]) -> Message {
    actions
        .iter()
        .find_map(|a| match a {
            Action::SendHeartbeat { message, .. } | Action::SendRelease { message, .. } => {
                Some(message.clone())
            }
            _ => None,
        })
        .expect("a heartbeat was sent")
}

#[test]
fn replayed_and_foreign_messages_are_counted_and_ignored() {
    let t0 = Instant::now();
    let cluster = Cluster::new(&config(&[50])).unwrap();
    let mut a = Machine::new(Arc::clone(&cluster), &NodeId::new("a"), 1, t0).unwrap();
    let mut b = Machine::new(Arc::clone(&cluster), &NodeId::new("b"), 1, t0).unwrap();
    let from_b = first_message(&drain(&mut b));
    drain(&mut a);
    a.handle(
        Event::Message(from_b.clone()),
        t0 + Duration::from_millis(1),
    );
    assert_eq!(a.stats().received, 1);
    a.handle(
        Event::Message(from_b.clone()),
        t0 + Duration::from_millis(2),
    );
    assert_eq!(a.stats().stale, 1, "a replay is rejected");
    // A node running another configuration (different VIP list) is not understood.
    let other = Cluster::new(&config(&[51])).unwrap();
    let mut c = Machine::new(other, &NodeId::new("b"), 2, t0).unwrap();
    a.handle(
        Event::Message(first_message(&drain(&mut c))),
        t0 + Duration::from_millis(3),
    );
    assert_eq!(a.stats().mismatched, 1);
    assert_eq!(a.stats().received, 1);
}

#[test]
fn reconfigure_withdraws_removed_vips_and_keeps_the_rest() {
    let t0 = Instant::now();
    let cluster = Cluster::new(&config(&[50, 51])).unwrap();
    let mut a = Machine::new(cluster, &NodeId::new("a"), 1, t0).unwrap();
    // Alone: after the startup hold (one detection timeout) and skew, it owns both.
    let mut now = t0;
    let mut owned = Vec::new();
    while now < t0 + Duration::from_secs(2) {
        now = a.next_timeout().unwrap().max(now);
        a.handle(Event::Timeout, now);
        for act in drain(&mut a) {
            if let Action::Announce { addr, .. } = act {
                owned.push(addr);
            }
        }
    }
    assert_eq!(owned.len(), 2);
    let smaller = Cluster::new(&config(&[51])).unwrap();
    a.handle(Event::Reconfigure(smaller), now);
    let actions = drain(&mut a);
    assert!(
        actions.contains(&Action::Withdraw {
            vip: 0,
            addr: vip(50)
        }),
        "{actions:?}"
    );
    assert!(a.owns(0), "198.51.100.51 is now VIP 0 and still owned");
    assert!(!actions.iter().any(|x| matches!(x, Action::Announce { .. })));
}

#[test]
fn shutdown_withdraws_then_releases() {
    let t0 = Instant::now();
    let cluster = Cluster::new(&config(&[50])).unwrap();
    let mut a = Machine::new(cluster, &NodeId::new("a"), 1, t0).unwrap();
    let mut now = t0;
    while !a.owns(0) {
        now = a.next_timeout().unwrap().max(now);
        a.handle(Event::Timeout, now);
    }
    drain(&mut a);
    a.handle(Event::Shutdown, now);
    let actions = drain(&mut a);
    assert!(
        matches!(actions[0], Action::Withdraw { vip: 0, .. }),
        "{actions:?}"
    );
    let Action::SendRelease { message, .. } = &actions[1] else {
        panic!("{actions:?}")
    };
    assert!(message.body.leaving && message.body.released == vec![0]);
    assert!(a.next_timeout().is_none());
}

#[test]
fn queued_heartbeat_in_a_batch_cancels_a_due_takeover() {
    let t0 = Instant::now();
    let cluster = Cluster::new(&config(&[50])).unwrap();
    let mut a = Machine::new(Arc::clone(&cluster), &NodeId::new("a"), 1, t0).unwrap();
    let mut b = Machine::new(Arc::clone(&cluster), &NodeId::new("b"), 1, t0).unwrap();
    // Exchange heartbeats every 10 ms (a perfect network) until someone owns the VIP.
    let mut now = t0;
    let step = |m: &mut Machine, now| {
        m.handle(Event::Timeout, now);
        drain(m)
    };
    while !(a.owns(0) || b.owns(0)) {
        now += Duration::from_millis(10);
        let from_a = step(&mut a, now);
        let from_b = step(&mut b, now);
        for act in from_a {
            if let Action::SendHeartbeat { message, .. } = act {
                b.handle(Event::Message(message), now);
            }
        }
        for act in from_b {
            if let Action::SendHeartbeat { message, .. } = act {
                a.handle(Event::Message(message), now);
            }
        }
    }
    let (owner, other) = if a.owns(0) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    drain(other);
    // The other node is descheduled for 2 s; meanwhile the owner keeps sending.
    let late = now + Duration::from_secs(2);
    owner.handle(Event::Timeout, late);
    let queued: Vec<Event> = drain(owner)
        .into_iter()
        .filter_map(|x| match x {
            Action::SendHeartbeat { message, .. } => Some(Event::Message(message)),
            _ => None,
        })
        .collect();
    assert!(!queued.is_empty());
    // Timer and queued heartbeat handled together: the owner is alive, nothing is taken.
    let mut events = queued;
    events.push(Event::Timeout);
    other.handle_all(events, late + Duration::from_millis(1));
    other.handle(Event::Timeout, late + Duration::from_millis(100));
    assert!(
        !drain(other)
            .iter()
            .any(|x| matches!(x, Action::Announce { .. }))
    );
    assert!(!other.owns(0));
}

/// Runs `machines` on a perfect network (heartbeats delivered every 10 ms) for `span`; returns
/// the time reached and every `Announce` as (machine, address).
fn exchange(
    machines: &mut [&mut Machine],
    from: Instant,
    span: Duration,
) -> (Instant, Vec<(usize, IpAddr)>) {
    let (now, actions) = exchange_where(machines, from, span, |_, _| true);
    let announced = actions
        .into_iter()
        .filter_map(|(i, _, act)| match act {
            Action::Announce { addr, .. } => Some((i, addr)),
            _ => None,
        })
        .collect();
    (now, announced)
}

/// Like [`exchange`], but a heartbeat from machine `i` reaches machine `j` only if
/// `link(i, j)`; returns every action with its machine and time.
fn exchange_where(
    machines: &mut [&mut Machine],
    from: Instant,
    span: Duration,
    link: impl Fn(usize, usize) -> bool,
) -> (Instant, Vec<(usize, Instant, Action)>) {
    let mut now = from;
    let mut actions = Vec::new();
    while now < from + span {
        now += Duration::from_millis(10);
        let mut mail = Vec::new();
        for (i, m) in machines.iter_mut().enumerate() {
            m.handle(Event::Timeout, now);
            for act in drain(m) {
                if let Action::SendHeartbeat { message, .. } = &act {
                    mail.push((i, message.clone()));
                }
                actions.push((i, now, act));
            }
        }
        for (i, message) in mail {
            for (j, m) in machines.iter_mut().enumerate() {
                if i != j && link(i, j) {
                    m.handle(Event::Message(message.clone()), now);
                }
            }
        }
    }
    (now, actions)
}

/// Quorum mode: when a majority has not been heard (or has not heard us) for two intervals,
/// the owner's heartbeats ask for an immediate answer, well before losing quorum would make it
/// withdraw; the answers keep the VIP where it is. Checked for silence in either direction.
#[test]
fn quorum_at_risk_heartbeats_probe_before_the_owner_withdraws() {
    let timing = Timing::DEFAULT;
    for blocked_towards_owner in [true, false] {
        let t0 = Instant::now();
        let mut cfg = config(&[50]);
        cfg.nodes.push(NodeId::new("c"));
        cfg.quorum = true;
        let cluster = Cluster::new(&cfg).unwrap();
        let mut ms: Vec<Machine> = ["a", "b", "c"]
            .iter()
            .map(|n| Machine::new(Arc::clone(&cluster), &NodeId::new(*n), 1, t0).unwrap())
            .collect();
        let mut refs: Vec<&mut Machine> = ms.iter_mut().collect();
        let (now, _) = exchange(&mut refs, t0, Duration::from_secs(1));
        let owner = (0..3).find(|&i| refs[i].owns(0)).expect("an owner");
        // Every heartbeat between the owner and the others is lost, in one direction.
        let cut = |i: usize, j: usize| {
            if blocked_towards_owner {
                j == owner
            } else {
                i == owner
            }
        };
        // Cut until the owner probes.
        let mut then = now;
        let probed = loop {
            let (t, actions) =
                exchange_where(&mut refs, then, Duration::from_millis(10), |i, j| {
                    !cut(i, j)
                });
            then = t;
            let probe = actions.iter().any(|(i, _, act)| {
                matches!(act, Action::SendHeartbeat { message, .. } if *i == owner && message.body.probe)
            });
            if probe || then - now > timing.detection_timeout() {
                break then - now;
            }
        };
        // Not while a single heartbeat is missing (silence is counted from the last heartbeat
        // before the cut, up to one interval earlier); before the detection timeout.
        assert!(
            probed > timing.interval && probed <= timing.detection_timeout(),
            "probed after {probed:?} (towards owner: {blocked_towards_owner})"
        );
        assert!(refs[owner].owns(0), "the owner kept the VIP while probing");
        // The network comes back: the answers keep the VIP with its owner, nobody else
        // announces, and probing stops.
        let (_, actions) = exchange(&mut refs, then, Duration::from_secs(1));
        assert!(actions.is_empty(), "ownership moved: {actions:?}");
        assert!(refs[owner].owns(0));
    }
}

/// A reconfiguration that makes a better-ranked node a candidate again (e.g. its Kubernetes
/// Node is Ready again) leaves the VIP with its live owner: ownership stays sticky, because the
/// hold after a reconfiguration lasts until every peer's claims under the new configuration are
/// known.
#[test]
fn reconfigure_keeps_a_live_owner_when_a_better_candidate_returns() {
    let t0 = Instant::now();
    let (na, nb) = (NodeId::new("a"), NodeId::new("b"));
    // Who wins VIP 50 when both may hold it?
    let both = Cluster::new(&config(&[50])).unwrap();
    let mut a = Machine::new(Arc::clone(&both), &na, 1, t0).unwrap();
    let mut b = Machine::new(Arc::clone(&both), &nb, 1, t0).unwrap();
    exchange(&mut [&mut a, &mut b], t0, Duration::from_secs(1));
    let best = if a.owns(0) { 0 } else { 1 };
    assert!(a.owns(0) != b.owns(0));
    // Start over with only the other node as candidate: it takes the VIP.
    let other = 1 - best;
    let mut only_other = config(&[50]);
    only_other.vips[0].candidates = Some(vec![[na.clone(), nb.clone()][other].clone()]);
    let restricted = Cluster::new(&only_other).unwrap();
    let mut a = Machine::new(Arc::clone(&restricted), &na, 2, t0).unwrap();
    let mut b = Machine::new(Arc::clone(&restricted), &nb, 2, t0).unwrap();
    let (now, _) = exchange(&mut [&mut a, &mut b], t0, Duration::from_secs(1));
    assert!([&a, &b][other].owns(0));
    // Both become candidates again, on both nodes at the same instant.
    a.handle(Event::Reconfigure(Arc::clone(&both)), now);
    b.handle(Event::Reconfigure(Arc::clone(&both)), now);
    let (_, announced) = exchange(&mut [&mut a, &mut b], now, Duration::from_secs(1));
    assert!(
        !announced.iter().any(|(i, _)| *i == best),
        "the better-ranked node took over a live owner's VIP: {announced:?}"
    );
    assert!([&a, &b][other].owns(0) && ![&a, &b][best].owns(0));
}
