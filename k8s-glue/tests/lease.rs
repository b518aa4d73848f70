//! Two Lease electors against a real kube-apiserver: one leader at a time, handover after a crash
//! within the lease duration, release hands over at once, and the fencing epoch grows.

use std::time::Duration;

use acme_issuer::LeaderElector;
use futures_util::StreamExt;
use k8s_glue::{LeaseConfig, LeaseElector};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_testenv::ApiServer;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::time::Instant;

fn fast(ns: &str, id: &str) -> LeaseConfig {
    let mut c = LeaseConfig::new(ns, "fairway-acme", id);
    c.lease_duration = Duration::from_secs(4);
    c.renew_deadline = Duration::from_secs(3);
    c.retry_period = Duration::from_millis(500);
    c
}

async fn wait_leader(e: &LeaseElector, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut rx = e.subscribe();
    tokio::time::timeout(limit, rx.wait_for(|l| l.is_leader))
        .await
        .ok()?
        .ok()?;
    Some(start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_hands_over_within_the_lease_and_never_two_holders() {
    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let ns = server.fresh_namespace(&client, "lease").await.unwrap();

    // Record every holder the API server ever shows for the Lease.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let history = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Option<String>, i32)>::new()));
    let h = history.clone();
    let recorder = tokio::spawn(async move {
        let mut w = watcher(leases, watcher::Config::default()).boxed();
        // A watch error (the watcher retries by itself) must not end the recording.
        while let Some(ev) = w.next().await {
            if let Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) = ev {
                let spec = l.spec.unwrap_or_default();
                h.lock()
                    .unwrap()
                    .push((spec.holder_identity, spec.lease_transitions.unwrap_or(0)));
            }
        }
    });

    let a = LeaseElector::start(client.clone(), fast(&ns, "a")).unwrap();
    assert!(
        wait_leader(&a, Duration::from_secs(10)).await.is_some(),
        "a never became leader"
    );
    let b = LeaseElector::start(client.clone(), fast(&ns, "b")).unwrap();
    let first_epoch = a.current().epoch;
    assert!(first_epoch >= 1);

    // Both run for a while: never two leaders at once.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let (la, lb) = (a.current().is_leader, b.current().is_leader);
        assert!(!(la && lb), "two leaders at once");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(a.current().is_leader, "a renews and keeps the lease");

    // Crash a (no release): b takes over within the lease duration plus retry jitter (bounds
    // loose for a busy CI box: lease 4 s + 2 × 1.1 s jittered retry + ~4 s slack).
    let crashed = Instant::now();
    drop(a);
    let took = wait_leader(&b, Duration::from_secs(15))
        .await
        .expect("b never took over");
    let took = took.max(crashed.elapsed());
    assert!(took <= Duration::from_secs(10), "handover took {took:?}");
    assert!(
        b.current().epoch > first_epoch,
        "the fencing epoch grows on handover"
    );

    // A third elector takes over at once after b releases.
    let c = LeaseElector::start(client.clone(), fast(&ns, "c")).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!c.current().is_leader);
    let epoch_b = b.current().epoch;
    b.release().await.unwrap();
    let took = wait_leader(&c, Duration::from_secs(10))
        .await
        .expect("c never took over");
    assert!(
        took <= Duration::from_secs(3),
        "after release c took {took:?}"
    );
    assert!(c.current().epoch > epoch_b);
    drop(c);
    // The recorder's watch may lag the electors on a busy box: let it see c's term.
    let seen = Instant::now() + Duration::from_secs(10);
    while !history
        .lock()
        .unwrap()
        .iter()
        .any(|(h, _)| h.as_deref() == Some("c"))
        && Instant::now() < seen
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    recorder.abort();

    // The API server's history: a new holder always comes with a growing leaseTransitions.
    let history = history.lock().unwrap().clone();
    let holders: Vec<_> = history.iter().filter_map(|(h, _)| h.clone()).collect();
    assert!(
        holders.contains(&"a".to_string())
            && holders.contains(&"b".to_string())
            && holders.contains(&"c".to_string()),
        "the API server never showed every holder: {history:?}"
    );
    for w in history.windows(2) {
        let ((h0, t0), (h1, t1)) = (&w[0], &w[1]);
        assert!(t1 >= t0, "leaseTransitions went back: {history:?}");
        // A release empties the holder without a transition (client-go); taking it is one.
        if h0 != h1 && h1.is_some() {
            assert!(
                t1 > t0,
                "holder changed {h0:?} -> {h1:?} without a transition: {history:?}"
            );
        }
    }
}
