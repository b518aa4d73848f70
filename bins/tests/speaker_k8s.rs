//! `fairway-speaker` in Kubernetes mode, against a real kube-apiserver, announcing inside
//! network namespaces: two speaker nodes on a bridge (198.51.100.0/24) learn their members
//! from Node and speaker-Pod objects and their VIP from a LoadBalancer Service's
//! `status.loadBalancer` (as the controller writes it). The VIP lands on one node; the owner's
//! Node going NotReady moves it; a second Service's address is announced live; deleting a
//! Service withdraws its VIP everywhere. Needs root (CI runs as root).
//!
//! The API server listens on the host's 127.0.0.1: a veth from the host into the bridge
//! (198.51.100.230/32, routes to the nodes' 198.51.100.8/29 only) carries the speakers' API
//! connections to a relay in the test, and each node namespace resolves `kubernetes` (a name in
//! the server certificate) to that address through `/etc/netns/<ns>/hosts`.

mod netns_common;

use netns_common::{node_logs, require_root, run};

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use k8s_glue::lb::DEFAULT_LB_CLASS;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_testenv::ApiServer;
use k8s_testenv::fixtures::{lb_service, set_node_ready, speaker_node};
use kube::api::{Api, DeleteParams};

const VIP: &str = "198.51.100.50";
const VIP2: &str = "198.51.100.51";
const KEY: &str = "k8s-netns-test-shared-key-0123456";
const NODES: usize = 2;

/// Copies bytes both ways until either side closes.
fn splice(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let (mut a, mut b) = (a, b);
    thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(std::net::Shutdown::Write);
    });
    thread::spawn(move || {
        let _ = std::io::copy(&mut b, &mut a);
        let _ = a.shutdown(std::net::Shutdown::Write);
    });
}

/// Relays connections to `listen` (an address on our host-side link) to the API server on
/// 127.0.0.1:`api_port`. The thread ends with the test process.
fn relay(listen: &str, api_port: u16) -> u16 {
    let listener = TcpListener::bind((listen, 0)).expect("relay listener on the host link");
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { break };
            if let Ok(up) = TcpStream::connect(("127.0.0.1", api_port)) {
                splice(conn, up);
            }
        }
    });
    port
}

const HOST_LINK: &str = "198.51.100.230";

struct Topology {
    prefix: String,
    host_if: String,
    dir: tempfile::TempDir,
    speakers: Vec<Child>,
}

impl Topology {
    fn sw(&self) -> String {
        format!("{}sw", self.prefix)
    }
    fn node_ns(&self, i: usize) -> String {
        format!("{}n{}", self.prefix, i + 1)
    }

    /// Nodes whose interface holds `vip`.
    fn holders(&self, vip: &str) -> Vec<usize> {
        (0..NODES)
            .filter(|&i| {
                Command::new("ip")
                    .args(["-n", &self.node_ns(i), "-o", "addr", "show", "dev", "eth0"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {vip}/")))
            })
            .collect()
    }

    fn logs(&self) -> String {
        node_logs(self.dir.path(), NODES)
    }

    /// Waits until the holders of `vip` satisfy `want`; returns them.
    fn wait_holders(&self, vip: &str, what: &str, want: impl Fn(&[usize]) -> bool) -> Vec<usize> {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let h = self.holders(vip);
            if want(&h) {
                return h;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what} (holders of {vip}: {h:?})\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for c in &mut self.speakers {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        for ns in (0..NODES).map(|i| self.node_ns(i)).chain([self.sw()]) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_mode_announces_the_service_vip_and_follows_node_readiness() {
    require_root();
    let server = ApiServer::shared();
    let client = server.client().await.unwrap();
    let ns = server.fresh_namespace(&client, "speakerk8s").await.unwrap();
    let api_port: u16 = server
        .url()
        .strip_prefix("https://127.0.0.1:")
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("the API server on 127.0.0.1");

    // The topology: a bridge and two node namespaces.
    let id = std::process::id() % 100_000;
    let mut t = Topology {
        prefix: format!("fwk-{id}-"),
        host_if: format!("fwk{id}h"),
        dir: tempfile::tempdir().unwrap(),
        speakers: Vec::new(),
    };
    let sw = t.sw();
    run(&["ip", "netns", "add", &sw]);
    run(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]);
    run(&["ip", "-n", &sw, "link", "set", "br0", "up"]);
    // The host's link into the bridge, for the API relay only.
    run(&[
        "ip", "link", "add", &t.host_if, "type", "veth", "peer", "name", "host", "netns", &sw,
    ]);
    run(&[
        "ip", "-n", &sw, "link", "set", "host", "master", "br0", "up",
    ]);
    run(&[
        "ip",
        "addr",
        "add",
        &format!("{HOST_LINK}/32"),
        "dev",
        &t.host_if,
    ]);
    run(&["ip", "link", "set", &t.host_if, "up"]);
    run(&["ip", "route", "add", "198.51.100.8/29", "dev", &t.host_if]);
    let relay_port = relay(HOST_LINK, api_port);
    let mut kubeconfig = server.kubeconfig().unwrap();
    for c in &mut kubeconfig.clusters {
        if let Some(c) = c.cluster.as_mut() {
            c.server = Some(format!("https://kubernetes:{relay_port}"));
        }
    }
    let kubeconfig_path = t.dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig_path, serde_json::to_vec(&kubeconfig).unwrap()).unwrap();
    for i in 0..NODES {
        let node = t.node_ns(i);
        run(&["ip", "netns", "add", &node]);
        let port = format!("p{i}");
        run(&[
            "ip", "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &node,
        ]);
        run(&["ip", "-n", &sw, "link", "set", &port, "master", "br0", "up"]);
        run(&[
            "ip",
            "-n",
            &node,
            "addr",
            "add",
            &format!("198.51.100.{}/24", 11 + i),
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", &node, "link", "set", "eth0", "up"]);
        run(&["ip", "-n", &node, "link", "set", "lo", "up"]);
        run(&["ip", "-n", &node, "route", "add", HOST_LINK, "dev", "eth0"]);
        // `ip netns exec` mounts /etc/netns/<ns>/hosts over /etc/hosts.
        std::fs::create_dir_all(format!("/etc/netns/{node}")).unwrap();
        std::fs::write(
            format!("/etc/netns/{node}/hosts"),
            format!("127.0.0.1 localhost\n{HOST_LINK} kubernetes\n"),
        )
        .unwrap();
    }

    // The cluster's view: one Node and one ready speaker Pod (hostNetwork: the node's address)
    // per namespace, and a LoadBalancer Service with its VIP.
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let names: Vec<String> = (0..NODES).map(|i| format!("{ns}-n{}", i + 1)).collect();
    for (i, name) in names.iter().enumerate() {
        let ip = format!("198.51.100.{}", 11 + i);
        speaker_node(
            &nodes,
            &pods,
            name,
            None,
            &format!("speaker-{}", i + 1),
            Some(&ip),
        )
        .await;
    }
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    lb_service(&services, "web", DEFAULT_LB_CLASS, false, VIP).await;

    // The speakers, each in its namespace, in Kubernetes mode.
    let key = t.dir.path().join("key");
    std::fs::write(&key, KEY).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (i, name) in names.iter().enumerate() {
        let cfg: PathBuf = t.dir.path().join(format!("n{}.toml", i + 1));
        std::fs::write(
            &cfg,
            format!(
                "[speaker]\ninterface = \"eth0\"\nkey_file = {key:?}\n\
                 [speaker.kubernetes]\nkubeconfig = {kc:?}\npod_namespace = {ns:?}\n",
                key = key.display().to_string(),
                kc = kubeconfig_path.display().to_string(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(t.dir.path().join(format!("n{}.log", i + 1))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &t.node_ns(i)])
            .arg(env!("CARGO_BIN_EXE_fairway-speaker"))
            .arg("--config")
            .arg(&cfg)
            .env("NODE_NAME", name)
            .env("FAIRWAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn fairway-speaker");
        t.speakers.push(child);
    }

    // One owner.
    let owner = t.wait_holders(VIP, "one owner of the Service VIP", |h| h.len() == 1)[0];
    // The owner's Node goes NotReady: the other node takes the VIP, the owner withdraws it.
    set_node_ready(&nodes, &names[owner], None, false).await;
    let other = 1 - owner;
    t.wait_holders(VIP, "the VIP to move off the NotReady node", |h| {
        h == [other]
    });

    // A new Service's address is announced without a restart (by the only eligible node).
    lb_service(&services, "api", DEFAULT_LB_CLASS, false, VIP2).await;
    t.wait_holders(VIP2, "the new Service's VIP", |h| h == [other]);

    // Back to Ready: nothing moves (ownership is sticky).
    set_node_ready(&nodes, &names[owner], None, true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.holders(VIP), [other], "{}", t.logs());

    // Deleting a Service withdraws its VIP everywhere; the other stays.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    t.wait_holders(VIP, "the deleted Service's VIP to be withdrawn", |h| {
        h.is_empty()
    });
    assert_eq!(t.holders(VIP2), [other], "{}", t.logs());

    drop(t);
    for name in &names {
        let _ = nodes.delete(name, &DeleteParams::default()).await;
    }
}
