//! HA: three fairway-controller processes share one `acme.json` under the file-lock elector with
//! ten wanted domains; the leader is SIGKILLed ten times at random points of issuance. Afterwards
//! every domain holds a certificate that verifies against Pebble's root, the file parsed every
//! time it was read meanwhile, and Pebble saw at most one extra order per kill.

mod controller_common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use controller_common::pebble::{Pebble, PebbleOptions, free_port, install_crypto};
use controller_common::{
    http_get, metric, now_nanos, spawn_controller, valid_cert_in_store, wait_until,
};

const DOMAINS: usize = 10;
const KILLS: usize = 10;
const REPLICAS: usize = 3;

struct Replica {
    config: PathBuf,
    log: PathBuf,
    admin: u16,
    child: Option<Child>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn write_config(path: &Path, admin: u16, challenge: u16, pebble: &Pebble) {
    let mut text = format!(
        r#"
[tls]
store = "acme.json"

[acme]
challenge_address = "127.0.0.1:{challenge}"
admin_address = "127.0.0.1:{admin}"
leader_retry_ms = 100
max_in_flight = 2
call_timeout_secs = 10
backoff = {{ initial_secs = 1, cap_secs = 4 }}
# One new order per second per replica: issuance lasts through the kill schedule.
budget = {{ orders = 1, window_secs = 1 }}

[acme.resolvers.pebble]
directory = "{dir}"
email = "ops@fairway.test"
ca_bundle = "{ca}"
"#,
        dir = pebble.directory_url,
        ca = pebble.listener_ca_path.display(),
    );
    for i in 0..DOMAINS {
        text.push_str(&format!(
            "\n[[acme.certificates]]\nresolver = \"pebble\"\nmain = \"d{i}.ha.fairway.test\"\n"
        ));
    }
    std::fs::write(path, text).unwrap();
}

/// xorshift64*, seeded from the clock; the seed is printed for reproduction.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_ten_times_every_domain_issued_file_always_parsed() {
    install_crypto();
    let challenge = free_port(false);
    let pebble = Pebble::start(PebbleOptions::new(challenge, free_port(false))).await;
    let root = pebble.root_pem().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("acme.json");

    let mut replicas: Vec<Replica> = (0..REPLICAS)
        .map(|i| {
            let admin = free_port(false);
            let config = dir.path().join(format!("fairway-{i}.toml"));
            write_config(&config, admin, challenge, &pebble);
            let log = dir.path().join(format!("controller-{i}.log"));
            Replica {
                child: Some(spawn_controller(&config, &log)),
                config,
                log,
                admin,
            }
        })
        .collect();

    // Read the file continuously: it must parse every single time.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let checker = {
        let (stop, reads, store) = (stop.clone(), reads.clone(), store.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(bytes) = std::fs::read(&store)
                    && !bytes.is_empty()
                {
                    reads.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = acme_store::AcmeDocument::parse(&bytes) {
                        failures.push(format!("{e}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(3));
            }
            failures
        })
    };

    let seed = now_nanos() | 1;
    println!("kill schedule seed: {seed}");
    let mut rng = Rng(seed);
    let logs = |replicas: &[Replica]| {
        replicas
            .iter()
            .map(|r| std::fs::read_to_string(&r.log).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    for kill in 0..KILLS {
        let leader = wait_until(
            Duration::from_secs(15),
            "a leader among the replicas",
            || {
                replicas.iter().position(|r| {
                    http_get(r.admin, "/metrics").and_then(|b| metric(&b, "fairway_acme_is_leader"))
                        == Some(1.0)
                })
            },
        );
        let delay = rng.below(1200);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let r = &mut replicas[leader];
        let mut child = r.child.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        println!("kill {kill}: replica {leader} after {delay} ms");
        r.child = Some(spawn_controller(&r.config, &r.log));
    }

    let all_valid = || {
        (0..DOMAINS)
            .all(|i| valid_cert_in_store(&store, "pebble", &format!("d{i}.ha.fairway.test"), &root))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !all_valid() {
        assert!(
            std::time::Instant::now() < deadline,
            "not every domain issued within 60 s after the kills (Pebble stopped answering?)\n{}\n{}",
            logs(&replicas),
            pebble.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let failures = checker.join().unwrap();
    assert!(
        failures.is_empty(),
        "acme.json failed to parse {} times: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        reads.load(Ordering::Relaxed) > 100,
        "the checker actually read the file"
    );

    let pebble_log = std::fs::read_to_string(pebble.dir.path().join("pebble.log")).unwrap();
    let orders = pebble_log.matches("Added order").count();
    println!("orders at Pebble: {orders} for {DOMAINS} domains and {KILLS} kills");
    assert!(orders >= DOMAINS);
    assert!(
        orders <= DOMAINS + KILLS,
        "{orders} orders for {DOMAINS} domains: more than one duplicate per kill\n{}",
        logs(&replicas)
    );
    let resumed = logs(&replicas).matches("resuming persisted order").count();
    println!("orders resumed by a new leader: {resumed}");
}
