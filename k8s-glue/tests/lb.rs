//! LoadBalancer Services against a real kube-apiserver: addresses from the pool land in
//! `status.loadBalancer` (via `/status`), requests and conflicts are honoured with Events, and
//! Services of another class are left alone.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_glue::lb::{DEFAULT_LB_CLASS, alloc::ANNOTATION_IPS};
use k8s_glue::{LbConfig, LbController, Pool};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::events::v1::Event;
use k8s_testenv::ApiServer;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};

fn lb_service(name: &str, class: Option<&str>, ips: Option<&str>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: ips
                .map(|ips| BTreeMap::from([(ANNOTATION_IPS.to_string(), ips.to_string())])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            load_balancer_class: class.map(str::to_string),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn status_ips(api: &Api<Service>, name: &str, want_some: bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let svc = api.get(name).await.unwrap();
        let ips: Vec<String> = svc
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.ip)
            .collect();
        if ips.is_empty() != want_some || tokio::time::Instant::now() > deadline {
            return ips;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadbalancer_services_get_pool_addresses_and_status() {
    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let ns = server.fresh_namespace(&client, "lb").await.unwrap();
    let api: Api<Service> = Api::namespaced(client.clone(), &ns);

    // A pre-existing Service that already shows an address keeps it across controller start.
    let config = LbConfig {
        class: DEFAULT_LB_CLASS.into(),
        default_class: false,
        pools: vec![
            Pool {
                name: "main".into(),
                cidrs: vec!["198.51.100.0/29".parse().unwrap()],
                ranges: vec![],
                auto_assign: true,
            },
            Pool {
                name: "reserved".into(),
                cidrs: vec!["203.0.113.0/29".parse().unwrap()],
                ranges: vec![],
                auto_assign: false,
            },
        ],
    };
    let controller = LbController::new(client.clone(), config, "lb-test").unwrap();
    let mut allocations = controller.allocations();
    let task = tokio::spawn(controller.run());

    let pp = PostParams::default();
    api.create(&pp, &lb_service("auto", Some(DEFAULT_LB_CLASS), None))
        .await
        .unwrap();
    api.create(
        &pp,
        &lb_service("pinned", Some(DEFAULT_LB_CLASS), Some("203.0.113.5")),
    )
    .await
    .unwrap();
    api.create(
        &pp,
        &lb_service("other-class", Some("example.com/lb"), None),
    )
    .await
    .unwrap();
    api.create(&pp, &lb_service("classless", None, None))
        .await
        .unwrap();

    let auto = status_ips(&api, "auto", true).await;
    assert_eq!(auto.len(), 1, "auto got {auto:?}");
    let ip: std::net::IpAddr = auto[0].parse().unwrap();
    assert!(
        "198.51.100.0/29"
            .parse::<ipnet::IpNet>()
            .unwrap()
            .contains(&ip),
        "{ip} not from the pool"
    );
    assert_eq!(status_ips(&api, "pinned", true).await, vec!["203.0.113.5"]);

    // A second Service asking for the same address is refused with an Event and no status.
    api.create(
        &pp,
        &lb_service("thief", Some(DEFAULT_LB_CLASS), Some("203.0.113.5")),
    )
    .await
    .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (allocated, failed) = loop {
        let list = events.list(&ListParams::default()).await.unwrap();
        let reasons: Vec<(String, String)> = list
            .items
            .iter()
            .map(|e| {
                (
                    e.regarding
                        .as_ref()
                        .and_then(|r| r.name.clone())
                        .unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                )
            })
            .collect();
        let allocated = reasons
            .iter()
            .any(|(n, r)| n == "auto" && r == "IPAllocated");
        let failed = reasons
            .iter()
            .any(|(n, r)| n == "thief" && r == "AllocationFailed");
        if (allocated && failed) || tokio::time::Instant::now() > deadline {
            break (allocated, failed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(allocated, "no IPAllocated event for auto");
    assert!(failed, "no AllocationFailed event for thief");
    assert!(status_ips(&api, "thief", false).await.is_empty());

    // Not ours: untouched.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(status_ips(&api, "other-class", false).await.is_empty());
    assert!(status_ips(&api, "classless", false).await.is_empty());

    // The allocation map (what speakers announce) agrees with the statuses.
    let map = allocations.borrow_and_update().clone();
    assert_eq!(map.get(&format!("{ns}/auto")), Some(&vec![ip]));
    assert!(!map.contains_key(&format!("{ns}/thief")));

    // Deleting the holder frees its address for the waiting Service, which gets it at once.
    api.delete("pinned", &Default::default()).await.unwrap();
    assert_eq!(status_ips(&api, "thief", true).await, vec!["203.0.113.5"]);
    task.abort();
}
