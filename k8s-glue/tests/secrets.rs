//! The Secret store against a real kube-apiserver: rotating a `kubernetes.io/tls` Secret changes
//! the served certificate, `update` writes Secrets with cert-manager annotations and survives a
//! concurrent writer, and `acme.json` import/export round-trips (accounts included).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use acme_store::{AcmeDocument, CertStore, Snapshot, StoredCert};
use k8s_glue::secrets::mapping::{CM_ALT_NAMES, EPOCH_ANNOTATION, RESOLVER_ANNOTATION};
use k8s_glue::{SecretStore, SecretStoreConfig};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_testenv::ApiServer;
use kube::ResourceExt;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use tokio::sync::watch;

fn pem_pair(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn tls_secret(name: &str, crt: &str, key: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(crt.as_bytes().to_vec())),
            ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
        ])),
        ..Default::default()
    }
}

fn serial(snap: &Snapshot, name: &str) -> Option<String> {
    snap.lookup(name, SystemTime::now())
        .map(|e| e.serial_hex().to_string())
}

async fn until(rx: &mut watch::Receiver<Arc<Snapshot>>, what: &str, f: impl Fn(&Snapshot) -> bool) {
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| f(s)))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_tls_secret_changes_the_served_certificate() {
    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let ns = server.fresh_namespace(&client, "secrets").await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let (crt1, key1) = pem_pair("shop.example.com");
    secrets
        .create(
            &PostParams::default(),
            &tls_secret("shop-tls", &crt1, &key1),
        )
        .await
        .unwrap();

    let store = SecretStore::start(client.clone(), SecretStoreConfig::new(&ns))
        .await
        .unwrap();
    let first = serial(&store.snapshot(), "shop.example.com").expect("served after start");
    let mut rx = store.subscribe();

    // Rotate: the same Secret gets a new certificate (as cert-manager renews).
    let (crt2, key2) = pem_pair("shop.example.com");
    let mut s = secrets.get("shop-tls").await.unwrap();
    s.data = tls_secret("x", &crt2, &key2).data;
    let rotated = std::time::Instant::now();
    secrets
        .replace("shop-tls", &PostParams::default(), &s)
        .await
        .unwrap();
    until(&mut rx, "rotation", |snap| {
        serial(snap, "shop.example.com").is_some_and(|s| s != first)
    })
    .await;
    println!("rotation visible after {:?}", rotated.elapsed());

    // Deleting it stops serving it.
    secrets
        .delete("shop-tls", &Default::default())
        .await
        .unwrap();
    until(&mut rx, "deletion", |snap| {
        serial(snap, "shop.example.com").is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_write_annotated_secrets_and_acme_json_round_trips() {
    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let ns = server.fresh_namespace(&client, "secrets-rw").await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let store = Arc::new(
        SecretStore::start(client.clone(), SecretStoreConfig::new(&ns))
            .await
            .unwrap(),
    );
    store.set_epoch(3);

    // Import a Traefik acme.json: one account, two certificates.
    let (crt_a, key_a) = pem_pair("a.example.com");
    let (crt_b, key_b) = pem_pair("b.example.com");
    let mut doc = AcmeDocument::default();
    let le = doc.resolvers.entry("le".into()).or_default();
    le.account = Some(acme_store::Account {
        email: "ops@example.com".into(),
        registration: None,
        private_key: Some("QUJD".into()),
        key_type: Some("4096".into()),
        extra: Vec::new(),
    });
    le.upsert(StoredCert::from_pem("a.example.com", &[], &crt_a, &key_a));
    le.upsert(StoredCert::from_pem("b.example.com", &[], &crt_b, &key_b));
    le.certificates_null = false;
    let json = doc.to_json().unwrap();
    // b's Secret is named by an Ingress (`tls[].secretName: b-tls`), a's gets the default name.
    let b_domain = acme_store::Domain {
        main: "b.example.com".into(),
        sans: vec![],
        extra: vec![],
    };
    store.set_secret_names([("le", &b_domain, "b-tls")]);
    let snap = store.import_acme_json(json.as_bytes(), "le").await.unwrap();
    assert!(serial(&snap, "a.example.com").is_some());

    assert!(secrets.get("b-tls").await.is_ok(), "named Secret written");
    let written = secrets.get("fairway-tls-a.example.com").await.unwrap();
    assert_eq!(written.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(written.annotations()[RESOLVER_ANNOTATION], "le");
    assert_eq!(written.annotations()[CM_ALT_NAMES], "a.example.com");
    assert_eq!(written.annotations()[EPOCH_ANNOTATION], "3");
    assert_eq!(
        written.data.as_ref().unwrap()["tls.crt"].0,
        crt_a.as_bytes()
    );

    // Export gives back the same account and certificates.
    let mut rx = store.subscribe();
    // (The TLS Secrets and the accounts Secret arrive on two watches: wait for both.)
    until(&mut rx, "watch catches up", |s| {
        s.entries().len() == 2
            && s.document()
                .resolvers
                .get("le")
                .is_some_and(|r| r.account.is_some())
    })
    .await;
    let exported = AcmeDocument::parse(store.export_acme_json().unwrap().as_bytes()).unwrap();
    assert_eq!(
        exported.resolvers["le"].account,
        doc.resolvers["le"].account
    );
    let mut names: Vec<String> = exported.resolvers["le"]
        .certificates
        .iter()
        .map(|c| c.domain.main.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["a.example.com", "b.example.com"]);

    // A blocking update (the CertStore trait) that renews a while another writer changes the same
    // Secret underneath: the conditional PUT conflicts once, the update re-reads and wins.
    let (crt_a2, key_a2) = pem_pair("a.example.com");
    let meddled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (store2, secrets2, meddled2) = (store.clone(), secrets.clone(), meddled.clone());
    let handle = tokio::runtime::Handle::current();
    let new_crt = crt_a2.clone();
    let attempts = tokio::task::spawn_blocking(move || {
        let mut attempts = 0;
        store2
            .update(&mut |doc: &mut AcmeDocument| {
                attempts += 1;
                if !meddled2.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    // Someone else touches the Secret between our read and our write (from
                    // another thread: this closure runs inside the store's own block_on).
                    let (handle, secrets2) = (handle.clone(), secrets2.clone());
                    std::thread::spawn(move || {
                        handle.block_on(async {
                            let mut s = secrets2.get("fairway-tls-a.example.com").await.unwrap();
                            s.labels_mut().insert("touched".into(), "yes".into());
                            secrets2
                                .replace("fairway-tls-a.example.com", &PostParams::default(), &s)
                                .await
                                .unwrap();
                        })
                    })
                    .join()
                    .unwrap();
                }
                doc.resolvers
                    .get_mut("le")
                    .unwrap()
                    .upsert(StoredCert::from_pem("a.example.com", &[], &crt_a2, &key_a2));
                Ok(())
            })
            .unwrap();
        attempts
    })
    .await
    .unwrap();
    assert_eq!(
        attempts, 2,
        "the conflicting write must be retried from a fresh read"
    );
    let renewed = secrets.get("fairway-tls-a.example.com").await.unwrap();
    assert_eq!(
        renewed.data.as_ref().unwrap()["tls.crt"].0,
        new_crt.as_bytes()
    );

    // Removing a certificate deletes its Secret.
    store
        .update_async(&mut |doc: &mut AcmeDocument| {
            doc.resolvers
                .get_mut("le")
                .unwrap()
                .remove_main("b.example.com");
            Ok(())
        })
        .await
        .unwrap();
    let left: Vec<String> = secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.name_any())
        .collect();
    assert!(!left.contains(&"b-tls".to_string()), "{left:?}");
    assert!(
        left.contains(&"fairway-acme-accounts".to_string()),
        "{left:?}"
    );
}

/// A proxy's store serves only the Secrets named in its filter: an unnamed TLS Secret of the
/// same namespace is not served, naming it serves it (no relist), dropping a name stops serving
/// it, and the filtered store refuses writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_store_publishes_only_the_named_secrets() {
    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let ns = server.fresh_namespace(&client, "serving").await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    let (crt_a, key_a) = pem_pair("a.example.com");
    let (crt_b, key_b) = pem_pair("b.example.com");
    secrets
        .create(&pp, &tls_secret("a-tls", &crt_a, &key_a))
        .await
        .unwrap();
    secrets
        .create(&pp, &tls_secret("b-tls", &crt_b, &key_b))
        .await
        .unwrap();

    let names = |n: &[&str]| Arc::new(n.iter().map(|s| s.to_string()).collect());
    let (filter, rx) = watch::channel(names(&["a-tls"]));
    let store = SecretStore::start_serving(client.clone(), SecretStoreConfig::new(&ns), rx)
        .await
        .unwrap();
    let snap = store.snapshot();
    assert!(serial(&snap, "a.example.com").is_some(), "named: served");
    assert!(
        serial(&snap, "b.example.com").is_none(),
        "unnamed Secret of the same namespace: not served"
    );
    let mut sub = store.subscribe();
    filter.send_replace(names(&["a-tls", "b-tls"]));
    until(&mut sub, "the newly named Secret", |s| {
        serial(s, "b.example.com").is_some() && serial(s, "a.example.com").is_some()
    })
    .await;
    filter.send_replace(names(&["b-tls"]));
    until(&mut sub, "the dropped name to stop being served", |s| {
        serial(s, "a.example.com").is_none() && serial(s, "b.example.com").is_some()
    })
    .await;
    // The watch still applies to served names: deleting the Secret stops serving it.
    secrets.delete("b-tls", &Default::default()).await.unwrap();
    until(&mut sub, "the deleted Secret to go", |s| {
        serial(s, "b.example.com").is_none()
    })
    .await;

    let refused = store
        .update_async(&mut |_doc: &mut AcmeDocument| Ok(()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("read-only") && refused.contains(&ns),
        "{refused}"
    );
}
