//! `fairway-speaker` on real ARP/NDP: a bridge, three speaker nodes and a client in network
//! namespaces (198.51.100.0/24, 2001:db8::/64). The client pings the VIP every 10 ms; each test
//! breaks the owner in one way and checks that the VIP moves and the client's neighbour entry
//! follows the new owner's MAC. Needs root (CI runs as root). Bounds are loose: precise failover
//! numbers come from `benches/scripts/vip-failover.sh`.

mod netns_common;

use netns_common::{node_logs, require_root, run, run_quiet};

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const VIP4: &str = "198.51.100.50";
const VIP6: &str = "2001:db8::50";
const PORT: u16 = 7946;
const KEY: &str = "netns-test-shared-key-0123456789";
static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Reply timestamps of a running `ping -D`.
struct Probe {
    child: Child,
    replies: Arc<Mutex<Vec<f64>>>,
}

impl Probe {
    /// Largest gap between consecutive replies received after `since` (Unix seconds).
    fn largest_gap_after(&self, since: f64) -> Option<f64> {
        let r = self.replies.lock().unwrap();
        let start = r.iter().rposition(|&t| t <= since)?;
        r[start..].windows(2).map(|w| w[1] - w[0]).reduce(f64::max)
    }
    fn count_after(&self, since: f64) -> usize {
        self.replies
            .lock()
            .unwrap()
            .iter()
            .filter(|&&t| t > since)
            .count()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Topology {
    prefix: String,
    dir: tempfile::TempDir,
    speakers: Vec<Option<Child>>,
    /// Each node's NIC name.
    nics: [&'static str; 3],
}

/// How the nodes are wired and what their configs say about the interface.
struct Layout {
    /// Each node's NIC name (the client's is `eth0`).
    nics: [&'static str; 3],
    /// Each node's `interface` (and `listen`) lines.
    lines: [&'static str; 3],
    /// A default route through its NIC in each node's namespace.
    default_route: bool,
}

/// Every node on `eth0`, named in its config.
const ETH0: Layout = Layout {
    nics: ["eth0"; 3],
    lines: ["interface = \"eth0\""; 3],
    default_route: false,
};

fn node_ns(t: &Topology, i: usize) -> String {
    format!("{}n{}", t.prefix, i + 1)
}

fn mac(i: usize) -> String {
    format!("02:00:00:00:00:{:02x}", 0x11 + i)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

impl Topology {
    /// Builds the topology and starts three speakers; `extra` is added to `[speaker]`.
    fn new(extra: &str) -> Topology {
        Self::build(extra, ETH0)
    }

    /// [`Topology::new`] with the nodes wired and configured per `layout`.
    fn build(extra: &str, layout: Layout) -> Topology {
        require_root();
        let prefix = format!(
            "fw-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let t = Topology {
            prefix: format!("{prefix}-"),
            dir: tempfile::tempdir().unwrap(),
            speakers: Vec::new(),
            nics: layout.nics,
        };
        let sw = t.sw();
        run(&["ip", "netns", "add", &sw]);
        run(&[
            "ip",
            "-n",
            &sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ]);
        run(&["ip", "-n", &sw, "link", "set", "br0", "up"]);
        let hosts: Vec<(String, String, String, String)> = (0..3)
            .map(|i| {
                (
                    node_ns(&t, i),
                    mac(i),
                    format!("198.51.100.{}", 11 + i),
                    format!("2001:db8::{}", 11 + i),
                )
            })
            .chain(std::iter::once((
                t.client(),
                "02:00:00:00:00:64".into(),
                "198.51.100.100".into(),
                "2001:db8::100".into(),
            )))
            .collect();
        for (k, (ns, mac, v4, v6)) in hosts.iter().enumerate() {
            let port = format!("p{k}");
            let nic = layout.nics.get(k).copied().unwrap_or("eth0");
            run(&["ip", "netns", "add", ns]);
            run(&[
                "ip", "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", nic,
                "netns", ns,
            ]);
            run(&["ip", "-n", &sw, "link", "set", &port, "master", "br0", "up"]);
            run(&["ip", "-n", ns, "link", "set", nic, "address", mac]);
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                nic,
            ]);
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                nic,
                "nodad",
            ]);
            run(&["ip", "-n", ns, "link", "set", nic, "up"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            if layout.default_route && k < 3 {
                // Only the isolated bridge is behind it: nothing leaves the namespaces.
                run(&["ip", "-n", ns, "route", "add", "default", "dev", nic]);
            }
        }
        let key = t.dir.path().join("key");
        std::fs::write(&key, KEY).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        for i in 0..3 {
            let cfg = format!(
                r#"[speaker]
node = "n{n}"
{lines}
key_file = "{key}"
{extra}
admin = "127.0.0.1:9901"
[speaker.nodes]
n1 = "198.51.100.11:{PORT}"
n2 = "198.51.100.12:{PORT}"
n3 = "198.51.100.13:{PORT}"
[[speaker.vips]]
address = "{VIP4}"
[[speaker.vips]]
address = "{VIP6}"
"#,
                n = i + 1,
                lines = layout.lines[i],
                key = key.display(),
            );
            std::fs::write(t.config(i), cfg).unwrap();
        }
        let mut t = t;
        for i in 0..3 {
            let child = t.spawn_speaker(i);
            t.speakers.push(Some(child));
        }
        t
    }

    fn sw(&self) -> String {
        format!("{}sw", self.prefix)
    }
    fn client(&self) -> String {
        format!("{}cl", self.prefix)
    }
    fn config(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}.toml", i + 1))
    }

    fn spawn_speaker(&self, i: usize) -> Child {
        let log = std::fs::File::create(self.dir.path().join(format!("n{}.log", i + 1))).unwrap();
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &node_ns(self, i),
                env!("CARGO_BIN_EXE_fairway-speaker"),
                "--config",
            ])
            .arg(self.config(i))
            .env("FAIRWAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn fairway-speaker")
    }

    fn logs(&self) -> String {
        node_logs(self.dir.path(), 3)
    }

    /// Nodes (still running) that have `vip` on their interface.
    fn holders(&self, vip: &str) -> Vec<usize> {
        (0..3)
            .filter(|&i| self.speakers[i].is_some())
            .filter(|&i| {
                run_quiet(&[
                    "ip",
                    "-n",
                    &node_ns(self, i),
                    "-o",
                    "addr",
                    "show",
                    "dev",
                    self.nics[i],
                ])
                .is_some_and(|s| s.contains(&format!(" {vip}/")))
            })
            .collect()
    }

    fn wait_single_owner(&self, vip: &str, limit: Duration) -> usize {
        let end = Instant::now() + limit;
        loop {
            let h = self.holders(vip);
            if h.len() == 1 {
                return h[0];
            }
            assert!(
                Instant::now() < end,
                "no single owner of {vip} (holders {h:?})\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until exactly one node other than `old` holds `vip` and the client's neighbour
    /// entry for it points at that node's MAC. (`old` itself may still hold it when it was cut
    /// off rather than stopped: it cannot know, and nobody can reach it.)
    fn wait_moved(&self, vip: &str, old: usize, limit: Duration) -> usize {
        let end = Instant::now() + limit;
        loop {
            let h: Vec<usize> = self
                .holders(vip)
                .into_iter()
                .filter(|&n| n != old)
                .collect();
            if let [new] = h[..]
                && self.client_neigh(vip).as_deref() == Some(mac(new).as_str())
            {
                return new;
            }
            assert!(
                Instant::now() < end,
                "{vip} did not move from n{} (holders {h:?}, client neigh {:?})\n{}",
                old + 1,
                self.client_neigh(vip),
                self.logs()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn client_neigh(&self, vip: &str) -> Option<String> {
        let out = run_quiet(&["ip", "-n", &self.client(), "neigh", "show", vip])?;
        let mut words = out.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_owned)
    }

    fn probe(&self, vip: &str) -> Probe {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client(),
                "ping",
                "-D",
                "-n",
                "-i",
                "0.01",
                "-W",
                "0.5",
                vip,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ping");
        let out = child.stdout.take().unwrap();
        let replies = Arc::new(Mutex::new(Vec::new()));
        let r = Arc::clone(&replies);
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if !line.contains("bytes from") {
                    continue;
                }
                if let Some(ts) = line.strip_prefix('[').and_then(|l| l.split(']').next())
                    && let Ok(t) = ts.parse::<f64>()
                {
                    r.lock().unwrap().push(t);
                }
            }
        });
        Probe { child, replies }
    }

    fn signal(&mut self, i: usize, sig: &str) {
        let child = self.speakers[i].as_mut().expect("running");
        run(&["kill", sig, &child.id().to_string()]);
        let _ = child.wait();
        self.speakers[i] = None;
    }

    fn try_status(&self, i: usize) -> Option<serde_json::Value> {
        let ns = node_ns(self, i);
        let out = run_quiet(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "curl",
            "-sf",
            "http://127.0.0.1:9901/status",
        ])?;
        serde_json::from_str(&out).ok()
    }

    fn status(&self, i: usize) -> serde_json::Value {
        self.try_status(i).expect("status JSON")
    }

    fn metrics(&self, i: usize) -> String {
        run(&[
            "ip",
            "netns",
            "exec",
            &node_ns(self, i),
            "curl",
            "-sf",
            "http://127.0.0.1:9901/metrics",
        ])
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for c in self.speakers.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in (0..3)
            .map(|i| node_ns(self, i))
            .chain([self.client(), self.sw()])
        {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

/// Waits until the probe has seen replies for a while, so the client's cache is populated.
fn warm(probe: &Probe) {
    let end = Instant::now() + Duration::from_secs(5);
    while probe.count_after(0.0) < 20 {
        assert!(Instant::now() < end, "client gets no replies from the VIP");
        thread::sleep(Duration::from_millis(20));
    }
}

fn check_outage(probe: &Probe, since: f64, limit: f64) {
    // Let replies resume for a moment so the gap is closed.
    thread::sleep(Duration::from_millis(300));
    let gap = probe
        .largest_gap_after(since)
        .expect("replies before and after the fault");
    assert!(
        gap < limit,
        "outage {gap:.3}s exceeds the loose bound {limit}s"
    );
}

#[test]
fn sigkill_of_the_owner_moves_the_vip_and_the_client_follows() {
    let mut t = Topology::new("");
    let owner = t.wait_single_owner(VIP4, Duration::from_secs(10));
    let owner6 = t.wait_single_owner(VIP6, Duration::from_secs(5));
    let p4 = t.probe(VIP4);
    let p6 = t.probe(VIP6);
    warm(&p4);
    warm(&p6);
    thread::sleep(Duration::from_millis(137));
    let t0 = unix_now();
    t.signal(owner, "-KILL");
    let new = t.wait_moved(VIP4, owner, Duration::from_secs(10));
    assert_ne!(new, owner);
    check_outage(&p4, t0, 3.0);
    if owner6 == owner {
        t.wait_moved(VIP6, owner, Duration::from_secs(10));
        check_outage(&p6, t0, 3.0);
    }
    let status = t.status(new);
    assert_eq!(status["vips"][0]["local"], true, "{status}");
}

#[test]
fn link_cut_moves_the_vip_and_heal_leaves_one_owner() {
    let t = Topology::new("");
    let owner = t.wait_single_owner(VIP4, Duration::from_secs(10));
    let probe = t.probe(VIP4);
    warm(&probe);
    thread::sleep(Duration::from_millis(211));
    let t0 = unix_now();
    // The owner's cable: its port on the bridge.
    run(&[
        "ip",
        "-n",
        &t.sw(),
        "link",
        "set",
        &format!("p{owner}"),
        "down",
    ]);
    let new = t.wait_moved(VIP4, owner, Duration::from_secs(10));
    check_outage(&probe, t0, 3.0);
    // Heal: the two claimants meet again; exactly one keeps the VIP and the client follows it.
    run(&[
        "ip",
        "-n",
        &t.sw(),
        "link",
        "set",
        &format!("p{owner}"),
        "up",
    ]);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let h = t.holders(VIP4);
        if h.len() == 1 && t.client_neigh(VIP4).as_deref() == Some(mac(h[0]).as_str()) {
            thread::sleep(Duration::from_millis(500));
            if t.holders(VIP4) == h {
                break;
            }
        }
        assert!(
            Instant::now() < end,
            "no single owner after heal: {h:?} (was n{} then n{})\n{}",
            owner + 1,
            new + 1,
            t.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let last = probe.count_after(unix_now() - 0.5);
    assert!(last > 10, "client reaches the VIP after heal");
}

#[test]
fn graceful_stop_hands_over_quickly() {
    let mut t = Topology::new("");
    let owner = t.wait_single_owner(VIP4, Duration::from_secs(10));
    let probe = t.probe(VIP4);
    warm(&probe);
    let t0 = unix_now();
    t.signal(owner, "-TERM");
    // The stopped node removed its address on the way out.
    assert!(
        !run(&["ip", "-n", &node_ns(&t, owner), "-o", "addr"]).contains(VIP4),
        "graceful stop withdraws the VIP"
    );
    t.wait_moved(VIP4, owner, Duration::from_secs(5));
    check_outage(&probe, t0, 1.0);
}

#[test]
fn quorum_partition_never_yields_two_owners() {
    let t = Topology::new("quorum = true");
    let owner = t.wait_single_owner(VIP4, Duration::from_secs(10));
    run(&[
        "ip",
        "-n",
        &t.sw(),
        "link",
        "set",
        &format!("p{owner}"),
        "down",
    ]);
    let end = Instant::now() + Duration::from_secs(3);
    let mut moved = false;
    while Instant::now() < end {
        let h = t.holders(VIP4);
        assert!(
            h.len() <= 1,
            "two owners in quorum mode: {h:?}\n{}",
            t.logs()
        );
        moved |= h.len() == 1 && h[0] != owner;
        thread::sleep(Duration::from_millis(10));
    }
    assert!(moved, "the majority side took over\n{}", t.logs());
    assert!(
        !t.holders(VIP4).contains(&owner),
        "the isolated owner withdrew"
    );
    run(&[
        "ip",
        "-n",
        &t.sw(),
        "link",
        "set",
        &format!("p{owner}"),
        "up",
    ]);
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        assert!(
            t.holders(VIP4).len() <= 1,
            "two owners after heal\n{}",
            t.logs()
        );
        thread::sleep(Duration::from_millis(10));
    }
    let metrics = t.metrics(owner);
    assert!(metrics.contains("fairway_speaker_quorum 1"), "{metrics}");
}

#[test]
fn forged_heartbeat_is_counted_and_ignored() {
    use vip_failover::wire::{Body, Message, MessageKind, SharedKey, encode};
    let t = Topology::new("");
    let owner = t.wait_single_owner(VIP4, Duration::from_secs(10));
    let victim = (owner + 1) % 3;
    // A "leaving" release from the owner, as an attacker without the key would forge it.
    let cluster = vip_failover::Cluster::new(&{
        let c = bins::config::speaker::load(&t.config(0)).unwrap();
        c.cluster()
    })
    .unwrap();
    let forged = Message {
        body: Arc::new(Body {
            kind: MessageKind::Release,
            fingerprint: cluster.fingerprint(),
            from: owner as u16,
            incarnation: u64::MAX,
            seq: u64::MAX,
            healthy: true,
            leaving: true,
            claims: vec![],
            released: vec![0, 1],
            ages_ms: vec![0; 3],
            vacant: vec![],
            intents: vec![],
            probe: false,
        }),
        echo: None,
    };
    let mut bytes = Vec::new();
    encode(
        &forged,
        &SharedKey::new(b"attacker-guessed-key-material").unwrap(),
        &mut bytes,
    );
    let file = t.dir.path().join("forged.bin");
    std::fs::write(&file, &bytes).unwrap();
    let target = format!("/dev/udp/198.51.100.{}/{PORT}", 11 + victim);
    for _ in 0..5 {
        run(&[
            "ip",
            "netns",
            "exec",
            &t.client(),
            "bash",
            "-c",
            &format!("cat {} > {target}", file.display()),
        ]);
    }
    thread::sleep(Duration::from_secs(1));
    assert_eq!(t.holders(VIP4), vec![owner], "ownership unchanged");
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let s = t.status(victim);
        if s["io"]["unauthenticated"].as_u64() == Some(5) {
            assert_eq!(s["vips"][0]["owner"], format!("n{}", owner + 1), "{s}");
            break;
        }
        assert!(Instant::now() < end, "forged datagrams not counted: {s}");
        thread::sleep(Duration::from_millis(100));
    }
    let m = t.metrics(victim);
    assert!(
        m.contains("fairway_speaker_datagrams_dropped_total{reason=\"unauthenticated\"} 5"),
        "{m}"
    );
}

#[test]
fn arp_only_mode_answers_arp_from_user_space_and_moves() {
    let mut t = Topology::new("mode = \"arp-only\"");
    // In ARP-only mode nobody adds the VIP to an interface; find the owner from /status.
    let end = Instant::now() + Duration::from_secs(10);
    let owner = loop {
        let owners: Vec<usize> = (0..3)
            .filter(|&i| {
                t.try_status(i)
                    .is_some_and(|s| s["vips"][0]["local"] == true)
            })
            .collect();
        if let [o] = owners[..] {
            break o;
        }
        assert!(
            Instant::now() < end,
            "no single owner: {owners:?}\n{}",
            t.logs()
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert!(t.holders(VIP4).is_empty(), "ARP-only mode adds no address");
    // The client resolves the VIP: our AF_PACKET responder answers its ARP request.
    let _ = run_quiet(&[
        "ip",
        "netns",
        "exec",
        &t.client(),
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        VIP4,
    ]);
    assert_eq!(t.client_neigh(VIP4).as_deref(), Some(mac(owner).as_str()));
    assert!(t.status(owner)["io"]["arp_replies"].as_u64() >= Some(1));
    // Graceful stop: the successor's gratuitous ARP moves the client's entry.
    t.signal(owner, "-TERM");
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let n = t.client_neigh(VIP4);
        if n.is_some() && n.as_deref() != Some(mac(owner).as_str()) {
            let new = (0..3).find(|&i| Some(mac(i)) == n).expect("a node's MAC");
            let end = Instant::now() + Duration::from_secs(2);
            while t.status(new)["vips"][0]["local"] != true {
                assert!(
                    Instant::now() < end,
                    "n{} answers but does not own\n{}",
                    new + 1,
                    t.logs()
                );
                thread::sleep(Duration::from_millis(20));
            }
            break;
        }
        assert!(
            Instant::now() < end,
            "client entry still {n:?}\n{}",
            t.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_applies_a_new_vip_and_rejects_a_restart_only_change() {
    let t = Topology::new("");
    t.wait_single_owner(VIP4, Duration::from_secs(10));
    let extra_vip = "198.51.100.60";
    let hup_all = |t: &Topology| {
        for child in t.speakers.iter().flatten() {
            // `ip netns exec` execs the speaker, so the child's pid is the speaker's.
            run(&["kill", "-HUP", &child.id().to_string()]);
        }
    };
    // A restart-only change (the interface) is rejected whole: the new VIP in the same file
    // is not taken either, and the old ones stay where they are.
    for i in 0..3 {
        let text = std::fs::read_to_string(t.config(i)).unwrap();
        let text = text.replace("interface = \"eth0\"", "interface = \"eth9\"")
            + &format!("[[speaker.vips]]\naddress = \"{extra_vip}\"\n");
        std::fs::write(t.config(i), text).unwrap();
    }
    let owner = t.wait_single_owner(VIP4, Duration::from_secs(5));
    hup_all(&t);
    let end = Instant::now() + Duration::from_secs(10);
    while !t.logs().contains("speaker.interface changed") {
        assert!(Instant::now() < end, "no rejection logged\n{}", t.logs());
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(500));
    assert!(t.holders(extra_vip).is_empty(), "{}", t.logs());
    assert_eq!(t.wait_single_owner(VIP4, Duration::from_secs(5)), owner);

    // The same VIP with the interface restored: applied live, no restart, one owner, and the
    // existing VIP does not move.
    for i in 0..3 {
        let text = std::fs::read_to_string(t.config(i)).unwrap();
        std::fs::write(t.config(i), text.replace("eth9", "eth0")).unwrap();
    }
    hup_all(&t);
    t.wait_single_owner(extra_vip, Duration::from_secs(10));
    assert_eq!(t.wait_single_owner(VIP4, Duration::from_secs(5)), owner);
    assert!(t.logs().contains("configuration reloaded"), "{}", t.logs());
}

/// `interface = "auto"` on nodes whose NICs are not called `eth0` (a DaemonSet across
/// machines with different NIC names): n1 finds its NIC by its heartbeat address, n2 (listening
/// on 0.0.0.0) by its default route; n3 names its NIC. Each reports the NIC it chose, and the
/// VIP works and moves between them.
#[test]
fn interface_auto_finds_each_nodes_nic() {
    let mut t = Topology::build(
        "",
        Layout {
            nics: ["ens3", "enp0s8", "eth0"],
            lines: [
                "interface = \"auto\"",
                "interface = \"auto\"\nlisten = \"0.0.0.0:7946\"",
                "interface = \"eth0\"",
            ],
            default_route: true,
        },
    );
    let owner = t.wait_single_owner(VIP4, Duration::from_secs(10));
    for (i, nic) in t.nics.iter().enumerate() {
        assert_eq!(t.status(i)["interface"], *nic, "{}", t.logs());
    }
    // The owner stops; another node (whatever its NIC) takes the VIP over.
    let mut child = t.speakers[owner].take().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let next = t.wait_single_owner(VIP4, Duration::from_secs(10));
    assert_ne!(next, owner);
}
