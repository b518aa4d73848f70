//! Ingress → live routes against a real kube-apiserver: an Ingress of our class, its Service and
//! an EndpointSlice pointing at a real upstream (nginx in a network namespace) become a route whose
//! backend reaches that upstream; endpoint changes apply without recompiling the table; other classes are ignored;
//! status is written for our class only; deleting the Ingress removes the route.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use ingress_router::RequestView;
use k8s_glue::routes::CONTROLLER_NAME;
use k8s_glue::{IngressWatcher, Published, WatchConfig};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_testenv::ApiServer;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// The tests of this binary run one at a time: each creates an IngressClass of our controller,
/// which every watcher sees (classes are cluster-wide) and which recompiles its table — and one
/// test asserts that an endpoint change does *not* recompile.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn ingress_class(client: &Client, name: &str) {
    k8s_testenv::fixtures::create_ingress_class(client, name, CONTROLLER_NAME).await;
}

fn ingress(name: &str, class: &str, host: &str, path: &str) -> Ingress {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {"ingressClassName": class, "rules": [{"host": host, "http": {"paths": [
            {"path": path, "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http"}}}}
        ]}}], "tls": [{"hosts": [host], "secretName": format!("{name}-tls")}]}
    }))
    .unwrap()
}

/// A slice of Service `web`.
fn slice(name: &str, addrs: &[(&str, bool)], port: u16) -> EndpointSlice {
    k8s_testenv::fixtures::endpoint_slice(name, "web", addrs, port)
}

/// A real HTTP upstream (nginx) inside a network namespace we create, reachable from here over a
/// veth pair on 198.51.100.248/30. EndpointSlices may not name loopback addresses (the API server
/// rejects them), so the upstream needs a non-loopback address of its own. Needs root, iproute2
/// and nginx (installed by scripts/test.sh); torn down on drop.
struct NetnsUpstream {
    ns: String,
    host_if: String,
    nginx: std::process::Child,
    _dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl NetnsUpstream {
    fn ip(args: &[&str]) {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .expect("running `ip` (iproute2)");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start() -> Self {
        let id = std::process::id() % 100_000;
        let (ns, host_if, peer_if) = (
            format!("fwk8s-{id}"),
            format!("fwk{id}a"),
            format!("fwk{id}b"),
        );
        Self::ip(&["netns", "add", &ns]);
        let up = NetnsUpstream::partial(&ns, &host_if);
        Self::ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ]);
        Self::ip(&["link", "set", &peer_if, "netns", &ns]);
        Self::ip(&["addr", "add", "198.51.100.249/30", "dev", &host_if]);
        Self::ip(&["link", "set", &host_if, "up"]);
        Self::ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            "198.51.100.250/30",
            "dev",
            &peer_if,
        ]);
        Self::ip(&["-n", &ns, "link", "set", &peer_if, "up"]);
        Self::ip(&["-n", &ns, "link", "set", "lo", "up"]);
        std::mem::forget(up);
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("nginx.conf");
        let d = dir.path().display();
        std::fs::write(
            &conf,
            format!(
                "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;\n\
                 events {{}}\n\
                 http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
                   fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
                   server {{ listen 198.51.100.250:8080; location / {{ return 200 \"upstream $request_uri\"; }} }} }}\n"
            ),
        )
        .unwrap();
        let nginx = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "nginx",
                "-p",
                &d.to_string(),
                "-c",
                &conf.display().to_string(),
                "-e",
                &format!("{d}/error.log"),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting nginx in the namespace");
        NetnsUpstream {
            ns,
            host_if,
            nginx,
            _dir: dir,
            addr: "198.51.100.250:8080".parse().unwrap(),
        }
    }

    /// A guard that removes what exists so far if setup fails half-way.
    fn partial(ns: &str, host_if: &str) -> impl Drop {
        struct Cleanup(String, String);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip")
                    .args(["link", "del", &self.1])
                    .output();
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &self.0])
                    .output();
            }
        }
        Cleanup(ns.to_string(), host_if.to_string())
    }

    async fn get(&self, to: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::net::TcpStream::connect(to).await {
                Ok(mut s) => {
                    s.write_all(
                        format!("GET {path} HTTP/1.0\r\nhost: a.example.com\r\n\r\n").as_bytes(),
                    )
                    .await
                    .unwrap();
                    let mut out = String::new();
                    s.read_to_string(&mut out).await.unwrap();
                    return out;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "upstream {to} unreachable: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl Drop for NetnsUpstream {
    fn drop(&mut self) {
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
        drop(NetnsUpstream::partial(&self.ns, &self.host_if));
    }
}

/// The endpoints the live table routes `host` + `path` to (None: no route, i.e. 404).
fn route(w: &IngressWatcher, host: &str, path: &str) -> Option<Vec<SocketAddr>> {
    let table = w.table().load();
    table
        .route(&RequestView::new(host, path))
        .map(|m| m.backend.endpoints().to_vec())
}

async fn until(
    rx: &mut watch::Receiver<Published>,
    what: &str,
    mut f: impl FnMut(&Published) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|p| f(p)))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap();
}

async fn until_route(
    w: &IngressWatcher,
    host: &str,
    path: &str,
    want: Option<Vec<SocketAddr>>,
) -> Duration {
    let start = Instant::now();
    while route(w, host, path) != want {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "route {host}{path} never became {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_service_and_slice_become_a_route_to_the_upstream() {
    let _serial = SERIAL.lock().await;
    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let ns = server.fresh_namespace(&client, "routes").await.unwrap();
    let class = format!("fairway-{ns}");
    ingress_class(&client, &class).await;
    // The API server refuses loopback EndpointSlice addresses: the upstream lives in a network
    // namespace at 198.51.100.250.
    let upstream = NetnsUpstream::start();
    let up = upstream.addr;

    let pp = PostParams::default();
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    services
        .create(&pp, &k8s_testenv::fixtures::http_service("web"))
        .await
        .unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    slices
        .create(&pp, &slice("web-1", &[("198.51.100.250", true)], up.port()))
        .await
        .unwrap();
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    ingresses
        .create(&pp, &ingress("app", &class, "a.example.com", "/app"))
        .await
        .unwrap();
    ingresses
        .create(&pp, &ingress("foreign", "nginx", "b.example.com", "/"))
        .await
        .unwrap();

    let vip: std::net::IpAddr = "198.51.100.10".parse().unwrap();
    let config = WatchConfig {
        namespace: Some(ns.clone()),
        status_ips: vec![vip],
        ..Default::default()
    };
    let watcher = IngressWatcher::start(client.clone(), config);
    let mut rx = watcher.subscribe();
    until(&mut rx, "first table", |p| p.table_generation > 0).await;

    // The route leads to the slice's address, and that address is the real upstream.
    assert_eq!(route(&watcher, "a.example.com", "/app/x"), Some(vec![up]));
    assert_eq!(route(&watcher, "A.Example.com:443", "/app"), Some(vec![up]));
    assert_eq!(route(&watcher, "a.example.com", "/other"), None);
    assert_eq!(
        route(&watcher, "b.example.com", "/"),
        None,
        "another class's Ingress is not ours"
    );
    assert_eq!(
        rx.borrow().tls_secrets,
        [(ns.clone(), "app-tls".to_string())].into(),
        "only our Ingresses' TLS Secrets"
    );
    // A request matched by the table goes to the endpoint it names: the real upstream answers.
    let endpoint = route(&watcher, "a.example.com", "/app/x").unwrap()[0];
    let answer = upstream.get(endpoint, "/app/x").await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("upstream /app/x"),
        "{answer}"
    );

    // Status: ours gets the VIP, the foreign one nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ip = ingresses
            .get("app")
            .await
            .unwrap()
            .status
            .and_then(|s| s.load_balancer?.ingress?.first()?.ip.clone());
        if ip.as_deref() == Some("198.51.100.10") {
            break;
        }
        assert!(Instant::now() < deadline, "status never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let foreign = ingresses.get("foreign").await.unwrap();
    assert!(
        foreign
            .status
            .and_then(|s| s.load_balancer?.ingress)
            .is_none_or(|i| i.is_empty())
    );

    // Endpoint changes apply in place: no table recompile.
    let before = rx.borrow().clone();
    slices
        .create(
            &pp,
            &slice(
                "web-2",
                &[("198.51.100.8", true), ("198.51.100.9", false)],
                up.port(),
            ),
        )
        .await
        .unwrap();
    // Endpoints are sorted: .8 before .250; .9 is not ready.
    let two: Vec<SocketAddr> = vec![
        SocketAddr::new("198.51.100.8".parse().unwrap(), up.port()),
        up,
    ];
    until_route(&watcher, "a.example.com", "/app", Some(two.clone())).await;
    let after = rx.borrow().clone();
    assert_eq!(
        after.table_generation, before.table_generation,
        "an endpoint change must not rebuild the table"
    );
    assert!(after.endpoints_generation > before.endpoints_generation);

    // One Ingress change becomes live (printed; the bench measures this properly).
    let mut changed = ingresses.get("app").await.unwrap();
    changed.spec.as_mut().unwrap().rules.as_mut().unwrap()[0]
        .http
        .as_mut()
        .unwrap()
        .paths[0]
        .path = Some("/v2".into());
    let start = Instant::now();
    ingresses.replace("app", &pp, &changed).await.unwrap();
    until_route(&watcher, "a.example.com", "/v2", Some(two)).await;
    println!(
        "one Ingress change live after {:?} (including the PUT)",
        start.elapsed()
    );
    assert_eq!(route(&watcher, "a.example.com", "/app"), None);

    // A change of `spec.tls` alone is published (the proxy serves what Ingresses name); a
    // change that leaves routes and TLS as they were (an annotation) recompiles nothing.
    let mut tls_only = ingresses.get("app").await.unwrap();
    tls_only.spec.as_mut().unwrap().tls =
        Some(vec![k8s_openapi::api::networking::v1::IngressTLS {
            hosts: Some(vec!["a.example.com".into()]),
            secret_name: Some("app-tls".into()),
        }]);
    ingresses.replace("app", &pp, &tls_only).await.unwrap();
    until(&mut rx, "the TLS Secret name", |p| {
        p.tls_secrets.contains(&(ns.clone(), "app-tls".to_string()))
    })
    .await;
    let p = rx.borrow().clone();
    let mut annotated = ingresses.get("app").await.unwrap();
    annotated
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("example.com/note".into(), "x".into());
    ingresses.replace("app", &pp, &annotated).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.borrow().table_generation,
        p.table_generation,
        "an Ingress event that changes no route or TLS name must not recompile"
    );

    // Deleting the Ingress removes the route: the proxy answers 404.
    ingresses
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    until_route(&watcher, "a.example.com", "/v2", None).await;
    until(&mut rx, "empty table", |p| p.ingresses == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_ingresses_sync_into_one_table() {
    const N: usize = 1000;
    let _serial = SERIAL.lock().await;
    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let ns = server.fresh_namespace(&client, "many").await.unwrap();
    let class = format!("fairway-{ns}");
    ingress_class(&client, &class).await;
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let created = Instant::now();
    futures_util::stream::iter(0..N)
        .for_each_concurrent(16, |i| {
            let ingresses = ingresses.clone();
            let ing = ingress(
                &format!("ing-{i}"),
                &class,
                &format!("h{i}.example.com"),
                "/",
            );
            async move {
                ingresses
                    .create(&PostParams::default(), &ing)
                    .await
                    .unwrap();
            }
        })
        .await;
    println!("created {N} Ingresses in {:?}", created.elapsed());

    let start = Instant::now();
    let watcher = IngressWatcher::start(
        client.clone(),
        WatchConfig {
            namespace: Some(ns.clone()),
            ..Default::default()
        },
    );
    let mut rx = watcher.subscribe();
    until(&mut rx, "1000 Ingresses", |p| p.ingresses == N).await;
    let synced = start.elapsed();
    println!("{N} Ingresses live after {synced:?} (list + compile)");
    assert_eq!(
        rx.borrow().table_generation,
        1,
        "the initial list compiles once"
    );
    assert!(route(&watcher, "h999.example.com", "/x").is_some());
    assert!(route(&watcher, "h1000.example.com", "/x").is_none());
}
