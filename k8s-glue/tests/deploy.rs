//! Every manifest in `deploy/` applies to a real kube-apiserver with strict field validation (so
//! a typo fails CI), and the RBAC there is enough for the glue and no more: each component runs
//! under its own ServiceAccount (impersonated) and is refused what it does not need.

use std::time::Duration;

use acme_issuer::{LeaderElector, Leadership};
use k8s_glue::controller::{CertRequestsConfig, IngressCertRequests, LEADER_LABEL, label_pod};
use k8s_glue::{
    IngressWatcher, LeaseConfig, LeaseElector, SecretStore, SecretStoreConfig, WatchConfig,
};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_testenv::ApiServer;
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

const MANAGER: &str = "fairway-deploy-test";

fn manifests() -> Vec<(String, serde_json::Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_json::to_value(
                <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display())),
            )
            .unwrap();
            if !value.is_null() {
                docs.push((
                    file.file_name().unwrap().to_string_lossy().into_owned(),
                    value,
                ));
            }
        }
    }
    docs
}

async fn apply(client: &Client, origin: &str, doc: &serde_json::Value) -> Result<(), kube::Error> {
    let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
    let types = obj
        .types
        .clone()
        .unwrap_or_else(|| panic!("{origin}: no apiVersion/kind"));
    let gvk = GroupVersionKind::try_from(&types).unwrap();
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = match (caps.scope, obj.namespace()) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), &ns, &resource)
        }
        (kube::discovery::Scope::Namespaced, None) => {
            panic!("{origin}: {} {} has no namespace", gvk.kind, obj.name_any())
        }
        (kube::discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    };
    let pp = PatchParams::apply(MANAGER).validation_strict();
    api.patch(&obj.name_any(), &pp, &Patch::Apply(doc))
        .await
        .map(drop)
}

fn sa(name: &str) -> String {
    format!("system:serviceaccount:fairway:{name}")
}

const SA_GROUPS: &[&str] = &["system:serviceaccounts", "system:serviceaccounts:fairway"];

fn forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> bool {
    matches!(r, Err(kube::Error::Api(ref s)) if s.code == 403)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_apply_strictly_and_rbac_is_least_privilege() {
    let server = ApiServer::shared();
    let admin = server.client().await.unwrap();
    let docs = manifests();
    let kinds: Vec<String> = docs
        .iter()
        .map(|(_, d)| d["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    for want in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "IngressClass",
        "Deployment",
        "DaemonSet",
    ] {
        assert!(kinds.iter().any(|k| k == want), "deploy/ has no {want}");
    }
    for (origin, doc) in &docs {
        apply(&admin, origin, doc).await.unwrap_or_else(|e| {
            panic!("{origin}: {} {}: {e}", doc["kind"], doc["metadata"]["name"])
        });
    }
    // Strict validation is on: an unknown field is an error, not silently dropped.
    let (origin, mut typo) = docs
        .iter()
        .find(|(_, d)| d["kind"] == "Deployment")
        .cloned()
        .unwrap();
    typo["spec"]["replica"] = serde_json::json!(3);
    assert!(
        apply(&admin, &origin, &typo).await.is_err(),
        "a misspelt field must fail"
    );

    let class: IngressClass = Api::all(admin.clone()).get("fairway").await.unwrap();
    assert_eq!(
        class.spec.unwrap().controller.as_deref(),
        Some("fairway.dev/ingress-controller")
    );
    let ds: DynamicObject = Api::namespaced_with(
        admin.clone(),
        "fairway",
        &kube::discovery::ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "DaemonSet")),
    )
    .get("fairway-speaker")
    .await
    .unwrap();
    let caps =
        &ds.data["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"];
    assert_eq!(caps["add"], serde_json::json!(["NET_ADMIN", "NET_RAW"]));
    assert_eq!(ds.data["spec"]["template"]["spec"]["hostNetwork"], true);

    // Controller: Lease election and the Secret store in its namespace work; other namespaces'
    // Secrets and cluster-wide deletes do not.
    let controller = server
        .client_as(&sa("fairway-controller"), SA_GROUPS)
        .await
        .unwrap();
    let elector = LeaseElector::start(
        controller.clone(),
        LeaseConfig::new("fairway", "fairway-controller", "pod-a"),
    )
    .unwrap();
    let mut rx = elector.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|l| l.is_leader))
        .await
        .unwrap()
        .unwrap();
    let store = SecretStore::start(controller.clone(), SecretStoreConfig::new("fairway"))
        .await
        .unwrap();
    store.update_async(&mut |_doc| Ok(())).await.unwrap();
    assert!(forbidden(
        Api::<Secret>::namespaced(controller.clone(), "default")
            .list(&ListParams::default())
            .await
    ));
    assert!(forbidden(
        Api::<Namespace>::all(controller.clone())
            .delete("default", &Default::default())
            .await
    ));
    // It watches Ingresses and IngressClasses cluster-wide for ACME requests.
    let requests = IngressCertRequests::start(
        controller.clone(),
        CertRequestsConfig {
            controller: "fairway.dev/ingress-controller".into(),
            default_class: false,
            secret_namespace: "fairway".into(),
            debounce: Duration::from_millis(10),
        },
    );
    let mut requested = requests.subscribe();
    tokio::time::timeout(Duration::from_secs(10), requested.wait_for(|r| r.synced))
        .await
        .expect("the controller's Ingress watches must sync under its RBAC")
        .unwrap();
    // It labels its own pod (the challenge Service selects the leader's) but deletes no pod and
    // touches none elsewhere.
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "fairway-controller-0", "namespace": "fairway"},
        "spec": {"serviceAccountName": "fairway-controller", "automountServiceAccountToken": false,
                 "containers": [{"name": "controller", "image": "fairway/fairway:0.1.0"}]}
    }))
    .unwrap();
    let admin_pods = Api::<Pod>::namespaced(admin.clone(), "fairway");
    admin_pods
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let (_leading, leadership) = tokio::sync::watch::channel(Leadership {
        is_leader: true,
        epoch: 1,
    });
    let labeller = tokio::spawn({
        let controller = controller.clone();
        async move {
            label_pod(
                controller,
                "fairway",
                "fairway-controller-0",
                leadership,
                Duration::from_millis(100),
            )
            .await;
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let p = admin_pods.get("fairway-controller-0").await.unwrap();
        if p.labels().get(LEADER_LABEL).map(String::as_str) == Some("true") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the controller could not label its pod"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    labeller.abort();
    let label = serde_json::json!({"metadata": {"labels": {LEADER_LABEL: "true"}}});
    assert!(forbidden(
        Api::<Pod>::namespaced(controller.clone(), "default")
            .patch("x", &PatchParams::default(), &Patch::Merge(&label))
            .await
    ));
    assert!(forbidden(
        Api::<Pod>::namespaced(controller.clone(), "fairway")
            .delete("fairway-controller-0", &Default::default())
            .await
    ));

    // It may write Service status (LoadBalancer allocation) but not Services themselves.
    let svc = Api::<Service>::namespaced(controller.clone(), "fairway");
    let status =
        serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}}});
    svc.patch_status(
        "fairway-proxy",
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await
    .unwrap();
    assert!(forbidden(
        svc.delete("fairway-proxy", &Default::default()).await
    ));

    // Proxy: can watch everything it routes from, cluster-wide; cannot write.
    let proxy = server
        .client_as(&sa("fairway-proxy"), SA_GROUPS)
        .await
        .unwrap();
    let watcher = IngressWatcher::start(proxy.clone(), WatchConfig::default());
    let mut published = watcher.subscribe();
    tokio::time::timeout(
        Duration::from_secs(10),
        published.wait_for(|p| p.table_generation > 0),
    )
    .await
    .expect("the proxy's watches must sync under its RBAC")
    .unwrap();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("x".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(forbidden(
        Api::<Secret>::namespaced(proxy.clone(), "fairway")
            .create(&PostParams::default(), &secret)
            .await
    ));

    // Speaker: reads Nodes, writes nothing.
    let speaker = server
        .client_as(&sa("fairway-speaker"), SA_GROUPS)
        .await
        .unwrap();
    Api::<Node>::all(speaker.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(forbidden(
        Api::<Secret>::namespaced(speaker.clone(), "fairway")
            .list(&ListParams::default())
            .await
    ));
}
