//! ACME on Kubernetes at the library level, against a real kube-apiserver and a real Pebble: an
//! Ingress annotated `fairway.dev/acme-resolver` becomes a certificate request; the Lease-elected
//! issuer (acme-issuer over the Secret store) gets it from Pebble (HTTP-01, really validated) and
//! writes the Ingress's `tls[].secretName`; two other replicas' stores serve the same certificate.

#[path = "../../acme-issuer/tests/support/pebble.rs"]
mod pebble;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use acme_issuer::order::OrderTiming;
use acme_issuer::{
    AcmeJsonStore, CertKeyType, ChallengeKind, ChallengeSolver, Http01Solver, Issuer,
    IssuerOptions, IssuerParts, LeaderElector, ResolverSettings, WantedCert,
};
use acme_store::CertStore;
use acme_store::challenge::Http01Registry;
use k8s_glue::routes::{CONTROLLER_NAME, OurClasses, cert_requests};
use k8s_glue::secrets::mapping::{EPOCH_ANNOTATION, RESOLVER_ANNOTATION};
use k8s_glue::{LeaseConfig, LeaseElector, SecretStore, SecretStoreConfig};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_testenv::ApiServer;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use pebble::{Pebble, PebbleOptions, free_port, install_crypto, verify_chain};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_ingress_is_issued_from_pebble_into_its_secret_and_served_by_replicas() {
    install_crypto();
    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let ns = server.fresh_namespace(&client, "acme").await.unwrap();
    let class = format!("fairway-{ns}");
    k8s_testenv::fixtures::create_ingress_class(&client, &class, CONTROLLER_NAME).await;
    let ingress: Ingress = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "annotations": {"fairway.dev/acme-resolver": "pebble"}},
        "spec": {"ingressClassName": class,
                 "tls": [{"hosts": ["shop.fairway.test"], "secretName": "shop-tls"}],
                 "rules": [{"host": "shop.fairway.test", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
    }))
    .unwrap();
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    ingresses
        .create(&PostParams::default(), &ingress)
        .await
        .unwrap();

    // What the controller derives from the cluster.
    let classes = Api::<IngressClass>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let ours = OurClasses::from_classes(&classes.items, CONTROLLER_NAME);
    let listed = ingresses.list(&ListParams::default()).await.unwrap();
    let (requests, problems) = cert_requests(&listed.items, &ours);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(requests.len(), 1);

    // The controller: Secret store + Lease elector + HTTP-01 challenge listener + issuer.
    let registry = Http01Registry::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_port = listener.local_addr().unwrap().port();
    tokio::spawn(acme_issuer::http01::serve(listener, registry.clone()));
    let pebble = Pebble::start(PebbleOptions::new(http_port, free_port(false))).await;

    let store = Arc::new(
        SecretStore::start(client.clone(), SecretStoreConfig::new(&ns))
            .await
            .unwrap(),
    );
    let domains: Vec<_> = requests.iter().map(|r| r.domain()).collect();
    store.set_secret_names(
        requests
            .iter()
            .zip(&domains)
            .map(|(r, d)| (r.resolver.as_str(), d, r.secret_name.as_str())),
    );
    let elector = Arc::new(
        LeaseElector::start(
            client.clone(),
            LeaseConfig::new(&ns, "fairway-acme", "controller-0"),
        )
        .unwrap(),
    );
    let mut leadership = elector.subscribe();
    tokio::time::timeout(
        Duration::from_secs(10),
        leadership.wait_for(|l| l.is_leader),
    )
    .await
    .unwrap()
    .unwrap();
    store.set_epoch(elector.current().epoch);

    let issuer = Issuer::spawn(IssuerParts {
        resolvers: vec![ResolverSettings {
            name: "pebble".into(),
            directory_url: pebble.directory_url.clone(),
            email: Some("ops@fairway.test".into()),
            http: pebble.http(),
            eab: None,
            challenge: ChallengeKind::Http01,
            key_type: CertKeyType::EcdsaP256,
        }],
        wanted: requests
            .iter()
            .map(|r| WantedCert {
                resolver: r.resolver.clone(),
                domains: r.hosts.clone(),
                key_type: None,
            })
            .collect(),
        options: IssuerOptions {
            max_sleep: Duration::from_millis(500),
            order_timeout: Duration::from_secs(30),
            timing: OrderTiming {
                poll_initial: Duration::from_millis(50),
                poll_backoff: 1.5,
                poll_timeout: Duration::from_secs(20),
            },
            ..IssuerOptions::default()
        },
        store: Arc::new(AcmeJsonStore::new(store.clone())),
        elector: elector.clone(),
        solvers: vec![Arc::new(Http01Solver::new(registry.clone())) as Arc<dyn ChallengeSolver>],
    })
    .unwrap();

    // The Secret named by the Ingress appears, holding a chain Pebble's root verifies.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let secret = loop {
        if let Some(s) = secrets.get_opt("shop-tls").await.unwrap() {
            break s;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "shop-tls never written; issuer {:?}\n{}",
                issuer.status().borrow(),
                pebble.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(secret.annotations()[RESOLVER_ANNOTATION], "pebble");
    assert_eq!(
        secret.annotations()[EPOCH_ANNOTATION],
        elector.current().epoch.to_string()
    );
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&secret.data.as_ref().unwrap()["tls.crt"].0)
            .collect::<Result<_, _>>()
            .unwrap();
    verify_chain(&chain, &pebble.root_pem().await, "shop.fairway.test").unwrap();

    // Two proxy replicas (their own stores, read-only) serve it.
    for replica in 0..2 {
        let proxy_client = server.client().await.unwrap();
        let replica_store = SecretStore::start(proxy_client, SecretStoreConfig::new(&ns))
            .await
            .unwrap();
        let mut rx = replica_store.subscribe();
        tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|s| s.lookup("shop.fairway.test", SystemTime::now()).is_some()),
        )
        .await
        .unwrap_or_else(|_| panic!("replica {replica} does not serve shop.fairway.test"))
        .unwrap();
        let served = replica_store
            .snapshot()
            .lookup("shop.fairway.test", SystemTime::now())
            .unwrap()
            .chain()[0]
            .clone();
        assert_eq!(served, chain[0], "replica {replica} serves the issued leaf");
    }
    drop(issuer);
}
