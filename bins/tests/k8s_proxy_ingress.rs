//! `fairway-proxy` with the Kubernetes provider against a real kube-apiserver: an Ingress, its
//! Service and an EndpointSlice pointing at a real upstream (nginx in a network namespace; the
//! API server refuses loopback slice addresses) become a route the proxy serves (in each of two
//! watched namespaces); changing the EndpointSlice moves the traffic; rotating the Ingress's TLS Secret changes the certificate served for its
//! host; a TLS Secret no Ingress names is not served until an Ingress names it; deleting the
//! Ingress makes the host 404. (The deployed config's `--check`: `deployed_config.rs`.)

#[path = "../../ingress-proxy/tests/support/accept_any.rs"]
mod accept_any;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accept_any::AcceptAny;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_testenv::ApiServer;
use kube::api::{Api, DeleteParams, PostParams};
use rustls::pki_types::ServerName;

const HOST: &str = "a.example.com";
/// Our own /30, apart from the k8s-glue routes test's (they may run at the same time).
const HOST_IP: &str = "198.51.100.245";
const UPSTREAM_IP: &str = "198.51.100.246";
const UPSTREAM_PORT: u16 = 8080;
/// A second server of the same upstream, for an endpoint change.
const SECOND_PORT: u16 = 8081;

/// nginx inside a network namespace we create, reachable over a veth pair on
/// 198.51.100.244/30. Needs root, iproute2 and nginx (scripts/test.sh installs them).
struct NetnsUpstream {
    ns: String,
    host_if: String,
    nginx: Child,
    _dir: tempfile::TempDir,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
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

impl NetnsUpstream {
    fn start() -> Self {
        let id = std::process::id() % 100_000;
        let (ns, host_if, peer_if) = (
            format!("fwkp-{id}"),
            format!("fwkp{id}a"),
            format!("fwkp{id}b"),
        );
        ip(&["netns", "add", &ns]);
        let mut up = NetnsUpstream {
            ns: ns.clone(),
            host_if: host_if.clone(),
            nginx: Command::new("true").spawn().unwrap(),
            _dir: tempfile::tempdir().unwrap(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ]);
        ip(&["link", "set", &peer_if, "netns", &ns]);
        ip(&["addr", "add", &format!("{HOST_IP}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{UPSTREAM_IP}/30"),
            "dev",
            &peer_if,
        ]);
        ip(&["-n", &ns, "link", "set", &peer_if, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let d = up._dir.path().display().to_string();
        let conf = format!("{d}/nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;\n\
                 events {{}}\n\
                 http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
                   fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
                   server {{ listen {UPSTREAM_IP}:{UPSTREAM_PORT}; location / {{ return 200 \"upstream $request_uri\"; }} }}\n\
                   server {{ listen {UPSTREAM_IP}:{SECOND_PORT}; location / {{ return 200 \"second $request_uri\"; }} }} }}\n"
            ),
        )
        .unwrap();
        up.nginx = Command::new("ip")
            .args(["netns", "exec", &ns, "nginx", "-p", &d, "-c", &conf])
            .args(["-e", &format!("{d}/error.log")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx in the namespace");
        up
    }
}

impl Drop for NetnsUpstream {
    fn drop(&mut self) {
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// A running `fairway-proxy`, killed on drop.
struct Proxy {
    child: Child,
    web: u16,
    websecure: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_proxy(config: &std::path::Path, log: &std::path::Path) -> Proxy {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fairway-proxy"))
        .arg("--config")
        .arg(config)
        .env("FAIRWAY_LOG", "info,k8s_glue=debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn fairway-proxy");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut web, mut websecure) = (0, 0);
    for line in stdout.lines().map_while(Result::ok) {
        let port = || -> u16 {
            line.rsplit(':')
                .next()
                .unwrap()
                .trim_end_matches('/')
                .parse()
                .unwrap()
        };
        if line.contains("entrypoint web ") {
            web = port();
        } else if line.contains("entrypoint websecure ") {
            websecure = port();
        }
        if web != 0 && websecure != 0 {
            break;
        }
    }
    let proxy = Proxy {
        child,
        web,
        websecure,
    };
    assert!(
        proxy.web != 0 && proxy.websecure != 0,
        "fairway-proxy printed no entrypoints: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    proxy
}

/// Status line and body of one plain request through the proxy.
fn http_get(port: u16, host: &str, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The leaf certificate the proxy serves for `HOST` (None: no handshake).
async fn served_leaf(port: u16) -> Option<Vec<u8>> {
    served_leaf_for(port, HOST).await
}

/// The leaf certificate the proxy serves for SNI `host` (None: no handshake).
async fn served_leaf_for(port: u16, host: &str) -> Option<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let tls = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from(host.to_string()).unwrap(), tcp),
    )
    .await
    .ok()?
    .ok()?;
    let (_, conn) = tls.get_ref();
    Some(conn.peer_certificates()?.first()?.to_vec())
}

/// A self-signed certificate for `HOST`: (PEM, key PEM, DER).
fn certificate() -> (String, String, Vec<u8>) {
    certificate_for(HOST)
}

/// A self-signed certificate for `host`: (PEM, key PEM, DER).
fn certificate_for(host: &str) -> (String, String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

fn tls_secret(name: &str, crt: &str, key: &str) -> Secret {
    Secret {
        metadata: k8s_testenv::fixtures::meta(name),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(crt.as_bytes().to_vec())),
            ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
        ])),
        ..Default::default()
    }
}

async fn eventually<F, Fut>(what: &str, log: &std::path::Path, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; proxy log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Service `web` (port `http`) and its EndpointSlice pointing at the netns upstream, in `ns`.
async fn backend(client: &kube::Client, ns: &str) {
    let pp = PostParams::default();
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    services
        .create(&pp, &k8s_testenv::fixtures::http_service("web"))
        .await
        .unwrap();
    let slice = k8s_testenv::fixtures::endpoint_slice(
        "web-1",
        "web",
        &[(UPSTREAM_IP, true)],
        UPSTREAM_PORT,
    );
    Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .create(&pp, &slice)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_routes_from_ingresses_serves_their_secrets_and_404s_after_delete() {
    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let ns = server.fresh_namespace(&client, "k8sproxy").await.unwrap();
    let class = format!("fairway-{ns}");
    k8s_testenv::fixtures::create_ingress_class(&client, &class, k8s_glue::routes::CONTROLLER_NAME)
        .await;
    let _upstream = NetnsUpstream::start();

    let pp = PostParams::default();
    backend(&client, &ns).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let (crt_a, key_a, der_a) = certificate();
    secrets
        .create(&pp, &tls_secret("app-tls", &crt_a, &key_a))
        .await
        .unwrap();
    // A TLS Secret in the same namespace that no Ingress names (yet).
    const OTHER: &str = "c.example.com";
    let (crt_c, key_c, der_c) = certificate_for(OTHER);
    secrets
        .create(&pp, &tls_secret("other-tls", &crt_c, &key_c))
        .await
        .unwrap();
    let ingress: Ingress = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "app"},
        "spec": {"ingressClassName": class, "rules": [{"host": HOST, "http": {"paths": [
            {"path": "/app", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http"}}}}
        ]}}], "tls": [{"hosts": [HOST], "secretName": "app-tls"}]}
    }))
    .unwrap();
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    ingresses.create(&pp, &ingress).await.unwrap();
    // A second watched namespace: its own Service, slice and Ingress (another host).
    let ns2 = server.fresh_namespace(&client, "k8sproxy2").await.unwrap();
    backend(&client, &ns2).await;
    let second: Ingress = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "second"},
        "spec": {"ingressClassName": class, "rules": [{"host": "b.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http"}}}}
        ]}}]}
    }))
    .unwrap();
    Api::<Ingress>::namespaced(client.clone(), &ns2)
        .create(&pp, &second)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fairway.toml");
    std::fs::write(
        &config,
        format!(
            "[entrypoints.web]\naddress = \"127.0.0.1:0\"\n\
             [entrypoints.websecure]\naddress = \"127.0.0.1:0\"\ntls = {{ alpn = [\"http/1.1\"] }}\n\
             [kubernetes]\nkubeconfig = {:?}\nnamespaces = [{ns:?}, {ns2:?}]\n",
            server.kubeconfig_path().display().to_string()
        ),
    )
    .unwrap();
    let log = dir.path().join("proxy.log");
    let proxy = spawn_proxy(&config, &log);

    // The Ingress path routes to the upstream; a path outside it does not.
    let web = proxy.web;
    eventually("the Ingress route to the upstream", &log, || async move {
        tokio::task::spawn_blocking(move || http_get(web, HOST, "/app/x"))
            .await
            .unwrap()
            .contains("upstream /app/x")
    })
    .await;
    eventually("the second namespace's route", &log, || async move {
        tokio::task::spawn_blocking(move || http_get(web, "b.example.com", "/b"))
            .await
            .unwrap()
            .contains("upstream /b")
    })
    .await;
    let other = tokio::task::spawn_blocking(move || http_get(web, HOST, "/other"))
        .await
        .unwrap();
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");

    // An EndpointSlice change (the endpoint moves to the second server) reaches the proxy as
    // an endpoint-only update, swapped into the running service.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let mut slice = slices.get("web-1").await.unwrap();
    slice.ports = k8s_testenv::fixtures::endpoint_slice("web-1", "web", &[], SECOND_PORT).ports;
    slices.replace("web-1", &pp, &slice).await.unwrap();
    eventually("the moved endpoint", &log, || async move {
        tokio::task::spawn_blocking(move || http_get(web, HOST, "/app/x"))
            .await
            .unwrap()
            .contains("second /app/x")
    })
    .await;

    // The certificate comes from the Secret; rotating the Secret changes it.
    let tls = proxy.websecure;
    eventually("the Secret's certificate", &log, || {
        let want = der_a.clone();
        async move { served_leaf(tls).await == Some(want) }
    })
    .await;
    let (crt_b, key_b, der_b) = certificate();
    let mut current = secrets.get("app-tls").await.unwrap();
    current.data = tls_secret("app-tls", &crt_b, &key_b).data;
    secrets.replace("app-tls", &pp, &current).await.unwrap();
    eventually("the rotated certificate", &log, || {
        let want = der_b.clone();
        async move { served_leaf(tls).await == Some(want) }
    })
    .await;

    // The unreferenced Secret is not served (its store has listed: app-tls is served): its
    // name gets the default certificate. Naming it in an Ingress's `tls` serves it.
    let unreferenced = served_leaf_for(tls, OTHER).await;
    assert!(
        unreferenced.is_some() && unreferenced != Some(der_c.clone()),
        "an unreferenced TLS Secret must not be served"
    );
    let third: Ingress = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "third"},
        "spec": {"ingressClassName": class, "rules": [{"host": OTHER, "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http"}}}}
        ]}}], "tls": [{"hosts": [OTHER], "secretName": "other-tls"}]}
    }))
    .unwrap();
    ingresses.create(&pp, &third).await.unwrap();
    eventually("the newly referenced Secret's certificate", &log, || {
        let want = der_c.clone();
        async move { served_leaf_for(tls, OTHER).await == Some(want) }
    })
    .await;
    // Dereferenced again: back to the default certificate.
    ingresses
        .delete("third", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the dereferenced Secret to stop being served", &log, || {
        let was = der_c.clone();
        async move { served_leaf_for(tls, OTHER).await.is_some_and(|l| l != was) }
    })
    .await;

    // Deleting the Ingress removes the route.
    ingresses
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    eventually("404 after deleting the Ingress", &log, || async move {
        tokio::task::spawn_blocking(move || http_get(web, HOST, "/app/x"))
            .await
            .unwrap()
            .starts_with("HTTP/1.1 404")
    })
    .await;
    drop(proxy);
}
