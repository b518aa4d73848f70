//! fairway-controller + fairway-proxy against a real Pebble: the proxy's plain entrypoint is
//! Pebble's `httpPort` and forwards `/.well-known/acme-challenge/*` to the controller, the
//! controller issues into `acme.json`, the proxy picks the certificate up and serves it, and a
//! client trusting only Pebble's root completes a verified handshake.

mod controller_common;

use std::process::{Command, Stdio};
use std::time::Duration;

use controller_common::pebble::{Pebble, PebbleOptions, free_port, install_crypto};
use controller_common::{
    KillOnDrop, http_get, metric, spawn_controller, verified_handshake, wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_issues_and_proxy_serves_verified_certificate() {
    install_crypto();
    let (web, websecure, challenge, admin) = (
        free_port(false),
        free_port(false),
        free_port(false),
        free_port(false),
    );
    let pebble = Pebble::start(PebbleOptions::new(web, free_port(false))).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fairway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[entrypoints.web]
address = "127.0.0.1:{web}"

[entrypoints.websecure]
address = "127.0.0.1:{websecure}"
tls = {{ alpn = ["http/1.1"] }}

[routers.app]
rule = "Host(`app.fairway.test`) || Host(`www.app.fairway.test`)"
service = "app"
tls = {{ cert_resolver = "pebble" }}

[services.app]
respond = {{ status = 200, body = "hello\n" }}

[tls]
store = "acme.json"

[acme_challenge]
forward_to = "http://127.0.0.1:{challenge}"

[acme]
challenge_address = "127.0.0.1:{challenge}"
admin_address = "127.0.0.1:{admin}"
leader_retry_ms = 100

[acme.resolvers.pebble]
directory = "{dir_url}"
email = "ops@fairway.test"
ca_bundle = "{ca}"
"#,
            dir_url = pebble.directory_url,
            ca = pebble.listener_ca_path.display(),
        ),
    )
    .unwrap();

    let check = Command::new(env!("CARGO_BIN_EXE_fairway-controller"))
        .args(["--check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("1 certificates"));

    let log = dir.path().join("controller.log");
    let _controller = KillOnDrop(spawn_controller(&config, &log));
    let proxy_log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
    let _proxy = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_fairway-proxy"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(proxy_log))
            .spawn()
            .expect("start fairway-proxy"),
    );

    let root = pebble.root_pem().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    loop {
        let last = match verified_handshake(websecure, "www.app.fairway.test", &root).await {
            Ok(()) => break,
            Err(e) => e,
        };
        if std::time::Instant::now() > deadline {
            panic!(
                "no verified handshake within 45 s (last error: {last})\ncontroller log:\n{}\nproxy log:\n{}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default(),
                std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default(),
                pebble.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    verified_handshake(websecure, "app.fairway.test", &root)
        .await
        .unwrap();

    let body = wait_until(Duration::from_secs(5), "admin /metrics", || {
        // The proxy may see the written acme.json a moment before the issuer's own status
        // records the order as done; wait for the expiry gauge, not just any scrape.
        http_get(admin, "/metrics")
            .filter(|b| b.contains("fairway_acme_certificate_expiry_seconds{"))
    });
    assert_eq!(metric(&body, "fairway_acme_is_leader"), Some(1.0), "{body}");
    assert_eq!(
        metric(&body, "fairway_acme_certificates_managed"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "fairway_acme_orders_total{outcome=\"issued\"}"),
        Some(1.0),
        "{body}"
    );
    let expiry = metric(
        &body,
        "fairway_acme_certificate_expiry_seconds{resolver=\"pebble\",domain=\"app.fairway.test\"}",
    );
    assert!(expiry.is_some_and(|s| s > 86_400.0), "{body}");
}
