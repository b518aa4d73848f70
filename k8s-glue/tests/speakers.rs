//! Speakers on Kubernetes against a real kube-apiserver: Nodes, speaker Pods, LoadBalancer
//! Services with `status.loadBalancer` addresses (as the controller's `LbController` writes
//! them) and EndpointSlices become the `vip-failover` cluster a speaker applies, and it follows
//! a node going NotReady, a speaker pod going unready and a Service going away.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_glue::routes::SERVICE_NAME_LABEL;
use k8s_glue::speakers::{SpeakerSettings, SpeakerView, SpeakerWatcher};
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_testenv::ApiServer;
use k8s_testenv::fixtures::{
    SPEAKER_LABEL, lb_service, meta, set_node_ready, set_pod_ready, speaker_node,
};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use tokio::sync::watch;

fn candidates(view: &SpeakerView, vip: &str) -> Option<Vec<String>> {
    let addr: std::net::IpAddr = vip.parse().unwrap();
    let spec = view.cluster.vips.iter().find(|v| v.addr == addr)?;
    Some(
        spec.candidates
            .iter()
            .flatten()
            .map(|n| n.as_str().to_string())
            .collect(),
    )
}

async fn until(
    rx: &mut watch::Receiver<Option<Arc<SpeakerView>>>,
    what: &str,
    f: impl Fn(&SpeakerView) -> bool,
) -> Arc<SpeakerView> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = rx.borrow_and_update().clone()
            && f(&v)
        {
            return v;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if tokio::time::timeout(left, rx.changed()).await.is_err() {
            panic!(
                "timed out waiting for {what}; last view: {:#?}",
                rx.borrow()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_pods_and_service_status_become_the_speaker_cluster() {
    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let ns = server.fresh_namespace(&client, "speakers").await.unwrap();
    let pp = PostParams::default();

    // Three nodes (cluster-scoped: named after the namespace), each running a speaker pod. The
    // third pod has no IP yet: its node's InternalIP is used.
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let names: Vec<String> = (1..=3).map(|i| format!("{ns}-n{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let ip = format!("198.51.100.{}", 11 + i);
        // The third speaker has no pod address yet: its node's InternalIP stands in.
        speaker_node(
            &nodes,
            &pods,
            name,
            Some(&format!("198.51.100.{}", 21 + i)),
            &format!("speaker-{}", i + 1),
            (i < 2).then_some(ip.as_str()),
        )
        .await;
    }
    // A pod of something else on the first node: not a speaker.
    let other = Pod {
        metadata: meta("other"),
        spec: Some(PodSpec {
            node_name: Some(names[0].clone()),
            containers: vec![Container {
                name: "x".into(),
                image: Some("x".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    pods.create(&pp, &other).await.unwrap();

    // Our Services: `web` (Cluster policy) and `local` (Local, one ready endpoint on node 2);
    // `foreign` has another class and must be ignored.
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let class = k8s_glue::lb::DEFAULT_LB_CLASS;
    lb_service(&services, "web", class, false, "198.51.100.50").await;
    lb_service(&services, "local", class, true, "198.51.100.51").await;
    lb_service(
        &services,
        "foreign",
        "example.com/other",
        false,
        "198.51.100.52",
    )
    .await;
    let slice = EndpointSlice {
        metadata: ObjectMeta {
            name: Some("local-1".into()),
            labels: Some(BTreeMap::from([(
                SERVICE_NAME_LABEL.into(),
                "local".into(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: vec![
            Endpoint {
                addresses: vec!["198.51.100.31".into()],
                node_name: Some(names[1].clone()),
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Endpoint {
                addresses: vec!["198.51.100.32".into()],
                node_name: Some(names[2].clone()),
                conditions: Some(EndpointConditions {
                    ready: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
        ports: None,
    };
    Api::<EndpointSlice>::namespaced(client.clone(), &ns)
        .create(&pp, &slice)
        .await
        .unwrap();

    let settings = SpeakerSettings {
        pod_namespace: Some(ns.clone()),
        pod_selector: format!("{}={}", SPEAKER_LABEL.0, SPEAKER_LABEL.1),
        ..Default::default()
    };
    let watcher = SpeakerWatcher::start(client.clone(), settings);
    let mut rx = watcher.subscribe();
    let v = until(&mut rx, "both VIPs", |v| v.cluster.vips.len() == 2).await;
    let members: Vec<&str> = v.cluster.nodes.iter().map(|n| n.as_str()).collect();
    assert_eq!(
        members,
        names.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let addr = |s: &str| -> SocketAddr { s.parse().unwrap() };
    let peers: Vec<SocketAddr> = v.peers.values().copied().collect();
    assert_eq!(
        peers,
        [
            addr("198.51.100.11:7946"),
            addr("198.51.100.12:7946"),
            addr("198.51.100.23:7946")
        ],
        "pod IPs, else the node's InternalIP"
    );
    assert_eq!(candidates(&v, "198.51.100.50").unwrap(), names);
    assert_eq!(
        candidates(&v, "198.51.100.51").unwrap(),
        [names[1].clone()],
        "Local: only the node with a ready endpoint"
    );
    assert!(candidates(&v, "198.51.100.52").is_none(), "another class");
    vip_failover::Cluster::new(&v.cluster).expect("the machine accepts the view");

    // Node 1 goes NotReady: it stays a member (its speaker runs) but is no candidate.
    set_node_ready(&nodes, &names[0], Some("198.51.100.21"), false).await;
    let v = until(&mut rx, "node 1 NotReady", |v| {
        candidates(v, "198.51.100.50").is_some_and(|c| c.len() == 2)
    })
    .await;
    assert_eq!(candidates(&v, "198.51.100.50").unwrap(), names[1..]);
    assert_eq!(v.cluster.nodes.len(), 3);

    // Node 3's speaker pod turns unready: only node 2 is left for the Cluster-policy VIP.
    set_pod_ready(&pods, "speaker-3", None, false).await;
    let v = until(&mut rx, "speaker 3 unready", |v| {
        candidates(v, "198.51.100.50").is_some_and(|c| c.len() == 1)
    })
    .await;
    assert_eq!(candidates(&v, "198.51.100.50").unwrap(), [names[1].clone()]);

    // The Local Service goes away: its VIP leaves the cluster.
    services
        .delete("local", &DeleteParams::default())
        .await
        .unwrap();
    let v = until(&mut rx, "the Local Service's VIP to go", |v| {
        v.cluster.vips.len() == 1
    })
    .await;
    assert!(candidates(&v, "198.51.100.51").is_none());

    // A speaker pod deleted: its node is no member any more.
    pods.delete("speaker-1", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let v = until(&mut rx, "speaker 1 gone", |v| v.cluster.nodes.len() == 2).await;
    assert!(!v.is_member(&names[0]) && v.is_member(&names[1]));

    for name in &names {
        let _ = nodes.delete(name, &DeleteParams::default()).await;
    }
}
