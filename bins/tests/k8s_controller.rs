//! `fairway-controller` in Kubernetes mode against a real kube-apiserver and a real Pebble: two
//! controller processes elect one leader through a Lease; an Ingress annotated
//! `fairway.dev/acme-resolver` gets its TLS host issued (HTTP-01 through a `fairway-proxy`
//! forwarding to the leader) into its `tls[].secretName` Secret; the proxy (Kubernetes provider)
//! serves it, verified against Pebble's root; the leader allocates LoadBalancer addresses from
//! the configured pools (a CIDR and an inclusive range); killing the leader with SIGKILL hands
//! the Lease, the allocation and the leader label of its pod to the other process.

mod controller_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use controller_common::pebble::{Pebble, PebbleOptions, free_port, install_crypto};
use controller_common::{KillOnDrop, http_get, metric, verified_handshake};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_testenv::ApiServer;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

const LEADER_LABEL: &str = k8s_glue::controller::LEADER_LABEL;

const HOST: &str = "shop.fairway.test";
const SECRET: &str = "shop-tls";
const LEASE: &str = "fairway-controller";

/// Polls `f` every 100 ms until it yields `Some`, or panics with `what` and `context()`.
async fn eventually<T, F, Fut>(
    within: Duration,
    what: &str,
    context: impl Fn() -> String,
    mut f: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {within:?}: {what}\n{}", context());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn controller_config(
    dir: &Path,
    id: &str,
    kubeconfig: &Path,
    ns: &str,
    pebble: &Pebble,
    challenge: u16,
    admin: u16,
) -> PathBuf {
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[kubernetes]
kubeconfig = "{kubeconfig}"
publish_service = "{ns}/auto"

[kubernetes.lease]
namespace = "{ns}"
identity = "{id}"
duration_secs = 4
renew_deadline_ms = 3000
retry_period_ms = 500

[kubernetes.load_balancer]
class = "fairway.dev/lb"
[[kubernetes.load_balancer.pools]]
name = "auto"
addresses = ["203.0.113.64/30"]
[[kubernetes.load_balancer.pools]]
name = "pinned"
addresses = ["203.0.113.80-203.0.113.87"]
auto_assign = false

[acme]
challenge_address = "127.0.0.1:{challenge}"
admin_address = "127.0.0.1:{admin}"
max_in_flight = 2

[acme.resolvers.pebble]
directory = "{dir_url}"
email = "ops@fairway.test"
ca_bundle = "{ca}"
"#,
            kubeconfig = kubeconfig.display(),
            dir_url = pebble.directory_url,
            ca = pebble.listener_ca_path.display(),
        ),
    )
    .unwrap();
    path
}

/// `fairway-controller --config <config>` as pod `pod` (`$POD_NAME`), logging to `log`.
fn spawn_controller(config: &Path, pod: &str, log: &Path) -> KillOnDrop {
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_fairway-controller"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info,k8s_glue=debug")
            .env("POD_NAME", pod)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start fairway-controller"),
    )
}

/// The controller pods' [`LEADER_LABEL`] values, by pod name.
async fn leader_labels(pods: &Api<Pod>, ids: &[&str]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for id in ids {
        out.push(
            pods.get(id)
                .await
                .ok()
                .and_then(|p| p.labels().get(LEADER_LABEL).cloned()),
        );
    }
    out
}

fn lb_service(name: &str, pinned: Option<&str>) -> Service {
    let mut svc = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "fairway.dev/lb",
                 "ports": [{"port": 80}]}
    });
    if let Some(ip) = pinned {
        svc["metadata"]["annotations"] = serde_json::json!({"metallb.io/loadBalancerIPs": ip});
    }
    serde_json::from_value(svc).unwrap()
}

async fn status_ips(api: &Api<Service>, name: &str) -> Vec<String> {
    api.get(name)
        .await
        .ok()
        .and_then(|s| s.status)
        .and_then(|s| s.load_balancer)
        .and_then(|l| l.ingress)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.ip)
        .collect()
}

async fn holder(leases: &Api<Lease>) -> Option<(String, i32)> {
    let spec = leases.get_opt(LEASE).await.ok()??.spec?;
    Some((spec.holder_identity?, spec.lease_transitions.unwrap_or(0)))
}

fn is_leader(admin: u16) -> Option<f64> {
    http_get(admin, "/metrics").and_then(|b| metric(&b, "fairway_acme_is_leader"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_elect_issue_into_the_ingress_secret_allocate_and_fail_over() {
    install_crypto();
    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let ns = server.fresh_namespace(&client, "ctl").await.unwrap();
    let class = format!("fairway-{ns}");
    k8s_testenv::fixtures::create_ingress_class(&client, &class, k8s_glue::routes::CONTROLLER_NAME)
        .await;
    let ingress: Ingress = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "annotations": {"fairway.dev/acme-resolver": "pebble"}},
        "spec": {"ingressClassName": class,
                 "tls": [{"hosts": [HOST], "secretName": SECRET}],
                 "rules": [{"host": HOST, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
    }))
    .unwrap();
    Api::<Ingress>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &ingress)
        .await
        .unwrap();

    // Pebble validates HTTP-01 on the proxy's plain entrypoint; the proxy forwards challenges
    // to the one challenge address, bound by whichever controller leads.
    let (web, websecure, challenge) = (free_port(false), free_port(false), free_port(false));
    let pebble = Pebble::start(PebbleOptions::new(web, free_port(false))).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.kubeconfig_path();
    let ids = ["controller-a", "controller-b"];
    let admins = [free_port(false), free_port(false)];
    let configs: Vec<PathBuf> = ids
        .iter()
        .zip(admins)
        .map(|(id, admin)| {
            controller_config(dir.path(), id, kubeconfig, &ns, &pebble, challenge, admin)
        })
        .collect();
    let check = Command::new(env!("CARGO_BIN_EXE_fairway-controller"))
        .args(["--check", "--config"])
        .arg(&configs[0])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success()
            && out.contains(&format!("Lease {ns}/{LEASE}, 2 LoadBalancer pools")),
        "{out}{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let logs: Vec<PathBuf> = ids
        .iter()
        .map(|id| dir.path().join(format!("{id}.log")))
        .collect();
    // Pod objects standing for the controllers' pods (no kubelet runs them): the leader labels
    // its own.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let sa: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    for id in ids {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": id, "labels": {"app.kubernetes.io/name": "fairway-controller"}},
            "spec": {"automountServiceAccountToken": false,
                     "containers": [{"name": "controller", "image": "fairway/fairway:0.1.0"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let mut controllers: Vec<Option<KillOnDrop>> = configs
        .iter()
        .zip(&logs)
        .zip(ids)
        .map(|((c, l), id)| Some(spawn_controller(c, id, l)))
        .collect();
    let proxy_config = dir.path().join("proxy.toml");
    std::fs::write(
        &proxy_config,
        format!(
            r#"
[entrypoints.web]
address = "127.0.0.1:{web}"
[entrypoints.websecure]
address = "127.0.0.1:{websecure}"
tls = {{ alpn = ["http/1.1"] }}

[acme_challenge]
forward_to = "http://127.0.0.1:{challenge}"

[kubernetes]
kubeconfig = "{kc}"
namespaces = ["{ns}"]
"#,
            kc = kubeconfig.display()
        ),
    )
    .unwrap();
    let proxy_log = dir.path().join("proxy.log");
    let _proxy = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_fairway-proxy"))
            .arg("--config")
            .arg(&proxy_config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&proxy_log).unwrap())
            .spawn()
            .expect("start fairway-proxy"),
    );
    let context = || {
        let mut out = String::new();
        for log in logs.iter().chain([&proxy_log]) {
            out += &format!(
                "--- {}:\n{}\n",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        out + &pebble.logs()
    };

    // Exactly one holds the Lease, and only that one says it leads.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let (leader_id, transitions) =
        eventually(Duration::from_secs(20), "a Lease holder", context, || {
            holder(&leases)
        })
        .await;
    let leader = ids
        .iter()
        .position(|i| *i == leader_id)
        .expect("a known holder");
    let follower = 1 - leader;
    eventually(
        Duration::from_secs(10),
        "leader/follower metrics",
        context,
        || async {
            (is_leader(admins[leader]) == Some(1.0) && is_leader(admins[follower]) == Some(0.0))
                .then_some(())
        },
    )
    .await;

    let mut want = vec![None, None];
    want[leader] = Some("true".to_string());
    want[follower] = Some("false".to_string());
    eventually(
        Duration::from_secs(10),
        "the leader's pod labelled",
        context,
        || async { (leader_labels(&pods, &ids).await == want).then_some(()) },
    )
    .await;

    // The certificate lands in the Ingress's Secret, stamped with the term's epoch.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = eventually(
        Duration::from_secs(45),
        "the Ingress's TLS Secret",
        context,
        || async { secrets.get_opt(SECRET).await.ok().flatten() },
    )
    .await;
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(
        secret
            .annotations()
            .get("fairway.dev/acme-resolver")
            .map(String::as_str),
        Some("pebble")
    );
    let epoch: i64 = secret.annotations()["fairway.dev/epoch"].parse().unwrap();
    assert_eq!(
        epoch,
        i64::from(transitions) + 1,
        "written in the leader's term"
    );
    assert_eq!(
        holder(&leases).await.map(|h| h.0),
        Some(leader_id.clone()),
        "no handover while issuing"
    );

    // The proxy serves it: a client trusting only Pebble's root completes the handshake.
    let root = pebble.root_pem().await;
    eventually(
        Duration::from_secs(20),
        "a verified handshake through fairway-proxy",
        context,
        || async { verified_handshake(websecure, HOST, &root).await.ok() },
    )
    .await;

    // LoadBalancer Services: the auto-assign CIDR's first host; a pinned address from the
    // range (its first address, which a /29 CIDR would skip as the network address).
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    for svc in [
        lb_service("auto", None),
        lb_service("pinned", Some("203.0.113.80")),
    ] {
        services.create(&PostParams::default(), &svc).await.unwrap();
    }
    for (name, want) in [("auto", "203.0.113.65"), ("pinned", "203.0.113.80")] {
        let ips = eventually(
            Duration::from_secs(15),
            &format!("Service {name} gets an address"),
            context,
            || async {
                let ips = status_ips(&services, name).await;
                (!ips.is_empty()).then_some(ips)
            },
        )
        .await;
        assert_eq!(ips, [want], "Service {name}");
    }
    // The leader publishes the proxies' Service address (`publish_service`) in our Ingress's
    // status.
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    eventually(
        Duration::from_secs(15),
        "the Ingress status shows the published Service's address",
        context,
        || async {
            let ing = ingresses.get("shop").await.ok()?;
            let ips: Vec<String> = ing
                .status?
                .load_balancer?
                .ingress?
                .into_iter()
                .filter_map(|i| i.ip)
                .collect();
            (ips == ["203.0.113.65"]).then_some(())
        },
    )
    .await;

    // SIGKILL the leader: the other process takes the Lease (bounded: a few lease durations
    // on a loaded box), leads, and allocates for a new Service.
    let mut killed = controllers[leader].take().unwrap();
    killed.0.kill().unwrap();
    killed.0.wait().unwrap();
    let (new_holder, new_transitions) = eventually(
        Duration::from_secs(30),
        "the follower takes over the Lease",
        context,
        || async { holder(&leases).await.filter(|(h, _)| *h == ids[follower]) },
    )
    .await;
    assert_eq!(new_holder, ids[follower]);
    assert!(
        new_transitions > transitions,
        "a new term: {new_transitions}"
    );
    eventually(
        Duration::from_secs(10),
        "the new leader's metrics",
        context,
        || async { (is_leader(admins[follower]) == Some(1.0)).then_some(()) },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the new leader's pod labelled",
        context,
        || async {
            (leader_labels(&pods, &ids).await[follower].as_deref() == Some("true")).then_some(())
        },
    )
    .await;
    services
        .create(&PostParams::default(), &lb_service("after", None))
        .await
        .unwrap();
    let ips = eventually(
        Duration::from_secs(15),
        "the new leader allocates",
        context,
        || async {
            let ips = status_ips(&services, "after").await;
            (!ips.is_empty()).then_some(ips)
        },
    )
    .await;
    assert_eq!(ips, ["203.0.113.66"], "the earlier allocations are kept");
    assert_eq!(status_ips(&services, "auto").await, ["203.0.113.65"]);
    drop(controllers);
}
