//! The controller's live certificate requests against a real kube-apiserver: annotated Ingresses
//! of our class in the Secret namespace become requests as they are created, changed and
//! deleted; other namespaces are reported, other classes ignored; `feed_issuer` turns them into
//! the issuer's wanted list (unknown resolvers left out).

use std::collections::BTreeSet;
use std::time::Duration;

use acme_issuer::WantedCert;
use k8s_glue::controller::{CertRequestsConfig, IngressCertRequests, feed_issuer};
use k8s_glue::routes::CONTROLLER_NAME;
use k8s_glue::{SecretStore, SecretStoreConfig};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_testenv::ApiServer;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use tokio::sync::watch;

fn ingress(name: &str, class: &str, resolver: &str, hosts: &[&str], secret: &str) -> Ingress {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "annotations": {"fairway.dev/acme-resolver": resolver}},
        "spec": {"ingressClassName": class,
                 "tls": [{"hosts": hosts, "secretName": secret}],
                 "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}
    }))
    .unwrap()
}

async fn until<T: Clone + std::fmt::Debug>(
    rx: &mut watch::Receiver<T>,
    what: &str,
    f: impl FnMut(&T) -> bool,
) -> T {
    let got = match tokio::time::timeout(Duration::from_secs(15), rx.wait_for(f)).await {
        Ok(Ok(r)) => Some(r.clone()),
        _ => None,
    };
    got.unwrap_or_else(|| panic!("timed out: {what}; last {:?}", *rx.borrow()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_ingresses_become_live_requests_and_the_wanted_list() {
    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let ns = server.fresh_namespace(&client, "ctl").await.unwrap();
    let other_ns = server.fresh_namespace(&client, "ctl-other").await.unwrap();
    let class = format!("fairway-{ns}");
    k8s_testenv::fixtures::create_ingress_class(&client, &class, CONTROLLER_NAME).await;

    let requests = IngressCertRequests::start(
        client.clone(),
        CertRequestsConfig {
            controller: CONTROLLER_NAME.into(),
            default_class: false,
            secret_namespace: ns.clone(),
            debounce: Duration::from_millis(20),
        },
    );
    let mut rx = requests.subscribe();
    until(&mut rx, "the first list", |r| r.synced).await;

    let here: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let there: Api<Ingress> = Api::namespaced(client.clone(), &other_ns);
    let pp = PostParams::default();
    here.create(
        &pp,
        &ingress(
            "shop",
            &class,
            "le",
            &["shop.test", "www.shop.test"],
            "shop-tls",
        ),
    )
    .await
    .unwrap();
    here.create(
        &pp,
        &ingress("foreign", "someone-else", "le", &["x.test"], "x-tls"),
    )
    .await
    .unwrap();
    there
        .create(
            &pp,
            &ingress("elsewhere", &class, "le", &["e.test"], "e-tls"),
        )
        .await
        .unwrap();
    here.create(&pp, &ingress("typo", &class, "nope", &["t.test"], "t-tls"))
        .await
        .unwrap();
    let r = until(&mut rx, "requests of both Ingresses of ours", |r| {
        r.requests.len() == 2 && !r.problems.is_empty()
    })
    .await;
    let shop = r
        .requests
        .iter()
        .find(|q| q.secret_name == "shop-tls")
        .unwrap();
    assert_eq!(shop.hosts, ["shop.test", "www.shop.test"]);
    assert_eq!(shop.ingress, format!("{ns}/shop"));
    assert!(
        r.requests.iter().all(|q| q.namespace == ns),
        "only the Secret namespace: {r:?}"
    );
    assert_eq!(r.problems.len(), 1, "{r:?}");
    assert_eq!(r.problems[0].ingress, format!("{other_ns}/elsewhere"));

    // The wanted list: the fixed certificate, then the Ingress's; the unknown resolver is left
    // out. Secret names go to the store.
    let store = std::sync::Arc::new(
        SecretStore::start(client.clone(), SecretStoreConfig::new(&ns))
            .await
            .unwrap(),
    );
    let fixed = vec![WantedCert {
        resolver: "le".into(),
        domains: vec!["fixed.test".into()],
        key_type: None,
    }];
    let (wanted_tx, mut wanted) = watch::channel(Vec::<WantedCert>::new());
    let feeding = tokio::spawn(feed_issuer(
        requests.subscribe(),
        store.clone(),
        fixed,
        BTreeSet::from(["le".to_string()]),
        move |w| {
            wanted_tx.send_replace(w);
        },
    ));
    let domains =
        |w: &Vec<WantedCert>| -> Vec<Vec<String>> { w.iter().map(|c| c.domains.clone()).collect() };
    until(&mut wanted, "the wanted list", |w| {
        domains(w)
            == [
                vec!["fixed.test".to_string()],
                vec!["shop.test".into(), "www.shop.test".into()],
            ]
    })
    .await;

    // A change of hosts is live; so is a deletion.
    let patch = serde_json::json!({"spec": {"tls": [{"hosts": ["api.shop.test"], "secretName": "shop-tls"}]}});
    here.patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    until(&mut rx, "the changed hosts", |r| {
        r.requests
            .iter()
            .any(|q| q.secret_name == "shop-tls" && q.hosts == ["api.shop.test"])
    })
    .await;
    here.delete("shop", &DeleteParams::default()).await.unwrap();
    until(&mut rx, "the deletion", |r| {
        r.requests.iter().all(|q| q.secret_name != "shop-tls")
    })
    .await;
    until(&mut wanted, "the wanted list after the deletion", |w| {
        domains(w) == [vec!["fixed.test".to_string()]]
    })
    .await;
    feeding.abort();
}

/// The leader's Ingress status publisher: our Ingresses get the proxies' Service address (as
/// ingress-nginx's `--publish-service`), follow it when it changes, and other classes are left
/// alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_status_follows_the_published_service_for_our_class_only() {
    use k8s_glue::controller::{IngressStatusConfig, publish_ingress_status};
    use k8s_openapi::api::core::v1::Service;

    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let ns = server.fresh_namespace(&client, "ctl-status").await.unwrap();
    let class = format!("fairway-{ns}");
    k8s_testenv::fixtures::create_ingress_class(&client, &class, CONTROLLER_NAME).await;
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    // Without the ACME annotation: the requests test watches every namespace at the same time.
    let plain = |name: &str, class: &str| -> Ingress {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name},
            "spec": {"ingressClassName": class,
                     "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}
        }))
        .unwrap()
    };
    ingresses.create(&pp, &plain("ours", &class)).await.unwrap();
    ingresses
        .create(&pp, &plain("theirs", "nginx"))
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    k8s_testenv::fixtures::lb_service(&services, "proxy", "fairway.dev/lb", false, "203.0.113.7")
        .await;

    let publisher = tokio::spawn(publish_ingress_status(
        client.clone(),
        IngressStatusConfig {
            controller: CONTROLLER_NAME.into(),
            default_class: false,
            publish_service: Some((ns.clone(), "proxy".into())),
            static_ips: Vec::new(),
            debounce: Duration::from_millis(20),
        },
    ));
    let status_of = |name: &'static str| {
        let ingresses = ingresses.clone();
        async move {
            let ing = ingresses.get(name).await.unwrap();
            ing.status
                .and_then(|s| s.load_balancer)
                .and_then(|lb| lb.ingress)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| i.ip)
                .collect::<Vec<_>>()
        }
    };
    let wait_for = |want: &'static [&'static str]| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let got = status_of("ours").await;
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "status of `ours`: {got:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    wait_for(&["203.0.113.7"]).await;

    // The Service's address changes (a new allocation): the Ingress follows.
    let mut svc = services.get("proxy").await.unwrap();
    svc.status
        .as_mut()
        .and_then(|s| s.load_balancer.as_mut())
        .and_then(|lb| lb.ingress.as_mut())
        .unwrap()[0]
        .ip = Some("203.0.113.8".into());
    services.replace_status("proxy", &pp, &svc).await.unwrap();
    wait_for(&["203.0.113.8"]).await;
    assert!(
        status_of("theirs").await.is_empty(),
        "another class is left alone"
    );
    publisher.abort();
}
