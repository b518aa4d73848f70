//! The admin dashboard in a real browser: `fairway-proxy` with several routes and an
//! `acme.json` of certificates (one expiring in 5 days), opened in headless Chromium through
//! `chromedriver` (WebDriver). Checks that routers and certificates appear, that the explain
//! box answers a typed URL, that the expiring certificate is flagged and that routers show
//! their requests and errors per second under live traffic; walks every admin endpoint for
//! private key material; saves screenshots under the test's output directory,
//! `$CARGO_TARGET_TMPDIR/dashboard/` (`dashboard.png`, `controller.png`, `speaker.png`), and
//! checks each is a PNG of the browser window's size.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use acme_store::{AcmeDocument, StoredCert};
use base64::Engine as _;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Kills the child process on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 exchange with `Connection: close`; returns (status, body).
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    request(port, &format!("127.0.0.1:{port}"), method, path, body)
}

fn request(port: u16, host: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if body.is_some() || method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    s.write_all(req.as_bytes()).unwrap();
    // Read until the body is complete (by Content-Length or the last chunk): some servers keep
    // the connection open despite `Connection: close`.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let body = &raw[split + 4..];
            let chunked = head.contains("transfer-encoding: chunked");
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let complete = match (chunked, length) {
                (true, _) => body.ends_with(b"0\r\n\r\n"),
                (false, Some(n)) => body.len() >= n,
                (false, None) => false,
            };
            if complete {
                let status: u16 = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap();
                let body = if chunked {
                    dechunk(body)
                } else {
                    body.to_vec()
                };
                return (status, String::from_utf8_lossy(&body).to_string());
            }
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no complete response"));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    (
        status,
        String::from_utf8_lossy(&raw[split + 4..]).to_string(),
    )
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}

fn get_json(port: u16, path: &str) -> Value {
    let (status, body) = http(port, "GET", path, None);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn proxy_signal(proxy: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(proxy.0.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed certificate for `names` valid until `now + days_left`, as a store entry, and
/// its private key (PEM).
fn certificate(names: &[&str], days_left: i64) -> (StoredCert, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_after = now + time::Duration::days(days_left) + time::Duration::hours(1);
    params.not_before = params.not_after - time::Duration::days(90);
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, names[0]);
    params.distinguished_name = dn;
    let cert = params.self_signed(&key).unwrap();
    let sans: Vec<String> = names[1..].iter().map(|s| s.to_string()).collect();
    let key_pem = key.serialize_pem();
    (
        StoredCert::from_pem(names[0], &sans, &cert.pem(), &key_pem),
        key_pem,
    )
}

/// The proxy's configuration and `acme.json` in `dir`; returns the configuration file and the
/// private keys (PEM) of the certificates in the store.
fn write_fixture(dir: &Path, admin_extra: &str) -> (PathBuf, Vec<String>) {
    let mut doc = AcmeDocument::default();
    let le = doc.resolvers.entry("le".into()).or_default();
    let mut keys = Vec::new();
    for (names, days) in [
        (&["app.example.com", "www.example.com"][..], 62),
        (&["soon.example.com"][..], 5),
        (&["api.example.com"][..], 80),
    ] {
        let (cert, key) = certificate(names, days);
        le.certificates.push(cert);
        keys.push(key);
    }
    let store = dir.join("acme.json");
    std::fs::write(&store, doc.to_json().unwrap()).unwrap();
    // The store refuses key files others could read.
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("fairway.toml");
    std::fs::write(
        &config,
        r#"
[entrypoints.web]
address = "127.0.0.1:0"
redirect_to = "websecure"
[entrypoints.websecure]
address = "127.0.0.1:0"
tls = { alpn = ["h2", "http/1.1"] }
[entrypoints.internal]
address = "127.0.0.1:0"

[routers.app]
rule = "Host(`app.example.com`) || Host(`www.example.com`)"
service = "app"
tls = { cert_resolver = "le" }
[routers.api]
rule = "Host(`api.example.com`) && PathPrefix(`/v1`)"
service = "api"
entrypoints = ["websecure"]
tls = { cert_resolver = "le" }
[routers.soon]
rule = "Host(`soon.example.com`)"
service = "app"
entrypoints = ["websecure"]
[routers.shadow]
rule = "Host(`soon.example.com`)"
service = "api"
entrypoints = ["websecure"]
[routers.legacy]
rule = "Host(`legacy.example.com`)"
service = "legacy"
entrypoints = ["internal"]
[routers.status]
rule = "Host(`status.example.com`)"
service = "api"
entrypoints = ["internal"]

[services.app]
load_balancer = "round_robin"
[[services.app.endpoints]]
url = "http://127.0.0.1:9"
[services.api]
respond = { body = "api" }
[services.legacy]
passive_health = { max_failures = 2, cooldown = "300s" }
[[services.legacy.endpoints]]
url = "http://127.0.0.1:9"

[tls]
store = "acme.json"

[admin]
address = "127.0.0.1:0"
"#
        .to_owned()
            + admin_extra,
    )
    .unwrap();
    (config, keys)
}

/// The base64 body of a PEM block, as one line (how it would appear in JSON or text).
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// Asserts that none of `keys` (PEM), nor a long slice of one, is in `body`.
fn assert_no_key_material(what: &str, body: &str, keys: &[String]) {
    assert!(!body.contains("PRIVATE KEY"), "{what} carries a PEM key");
    for key in keys {
        let b64 = pem_body(key);
        assert!(!body.contains(&b64), "{what} carries a private key");
        for start in (0..b64.len().saturating_sub(40)).step_by(40) {
            assert!(
                !body.contains(&b64[start..start + 40]),
                "{what} carries private key bytes"
            );
        }
    }
}

/// Checks that `path` holds a PNG (signature and `IHDR`) of at least `min_w` x `min_h` pixels.
fn assert_png(path: &Path, min_w: u32, min_h: u32) {
    let png = std::fs::read(path)
        .unwrap_or_else(|e| panic!("screenshot {} not saved: {e}", path.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&png[12..16], b"IHDR", "{}", path.display());
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert!(
        w >= min_w && h >= min_h,
        "{}: {w}x{h}, want at least {min_w}x{min_h}",
        path.display()
    );
}

/// Where the screenshots go: the test's output directory (Cargo's per-package scratch
/// directory for integration tests, under the target directory).
fn screenshot_dir() -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&out).unwrap();
    out
}

/// Sends requests for `host` to `port` from a thread until dropped: live traffic, so the
/// routers' per-second rates are not zero while the page is open.
struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Traffic {
    fn start(port: u16, host: &'static str) -> Traffic {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut sent = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, _) = request(port, host, "GET", "/", None);
                assert_eq!(status, 200, "traffic to {host}");
                sent += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            sent
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts `fairway-proxy` and returns it with its admin port and entrypoint ports (from the
/// printed URLs).
fn start_proxy(config: &Path) -> (Proc, u16, HashMap<String, u16>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fairway-proxy"))
        .arg("--config")
        .arg(config)
        .arg("--watch-interval")
        .arg("200ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn fairway-proxy");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let proc = Proc(child);
    let mut entrypoints = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let line = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let port = |line: &str| -> u16 {
            let url = &line[line.find("://").unwrap() + 3..];
            let port = url.split('/').next().unwrap().rsplit(':').next().unwrap();
            port.parse().unwrap()
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"entrypoint") {
            entrypoints.insert(words[1].to_owned(), port(&line));
        }
        if line.contains("/metrics") {
            return (proc, port(&line), entrypoints);
        }
    }
    panic!("fairway-proxy printed no admin URL");
}

/// A minimal W3C WebDriver session against `chromedriver`.
struct Browser {
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
    port: u16,
    session: String,
    _driver: Proc,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        // One Chromium at a time: the machine is small and the tests run in parallel.
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for (bin, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: install the Debian `{package}` package"
            );
        }
        let port = free_port();
        let driver = Proc(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn chromedriver"),
        );
        wait_for("chromedriver", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok()?;
            let (_, body) = http(port, "GET", "/status", None);
            let v: Value = serde_json::from_str(&body).ok()?;
            (v["value"]["ready"] == true).then_some(())
        });
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--window-size=1400,1500",
                        format!("--user-data-dir={}", profile.path().display()),
                    ]
                }
            }}
        });
        let (status, body) = http(port, "POST", "/session", Some(&caps));
        assert_eq!(status, 200, "new session: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let session = v["value"]["sessionId"].as_str().unwrap().to_owned();
        Browser {
            _one_at_a_time: guard,
            port,
            session,
            _driver: driver,
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        let (status, text) = http(self.port, method, &full, body.as_ref());
        assert_eq!(status, 200, "{method} {path}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn script(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        v["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("find {css}: {v}"))
            .to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.cmd("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

#[test]
fn dashboard_shows_routes_certificates_explain_and_problems() {
    let dir = tempfile::tempdir().unwrap();
    let (config, keys) = write_fixture(dir.path(), "");
    let (proxy, admin, entrypoints) = start_proxy(&config);
    // Live traffic to `status` (a fixed 200) for the routers' per-second rates.
    let traffic = Traffic::start(entrypoints["internal"], "status.example.com");

    // Two refused connections eject the `legacy` endpoint (max_failures = 2).
    for _ in 0..2 {
        let (status, _) = request(
            entrypoints["internal"],
            "legacy.example.com",
            "GET",
            "/",
            None,
        );
        assert_eq!(status, 502);
    }
    // A broken file is rejected (the previous configuration keeps serving) and reported.
    std::fs::write(&config, "[routers.broken\n").unwrap();
    proxy_signal(&proxy, "HUP");
    wait_for("the failed reload", Duration::from_secs(20), || {
        let v = get_json(admin, "/api/v1/problems");
        v["problems"]
            .as_array()?
            .iter()
            .any(|p| p["kind"] == "reload_failed")
            .then_some(())
    });

    // The API first: the certificates are loaded from the store.
    let certs = wait_for("certificates in the API", Duration::from_secs(20), || {
        let v = get_json(admin, "/api/v1/certificates");
        (v["certificates"].as_array()?.len() == 3).then_some(v)
    });
    assert_eq!(certs["certificates"][0]["domain"], "soon.example.com");
    assert_eq!(certs["certificates"][0]["status"], "expiring");
    // The paths the issue names, unversioned, are the current version's documents.
    let routes = get_json(admin, "/api/routes");
    assert_eq!(routes["api_version"], 1);
    assert_eq!(routes["routers"].as_array().unwrap().len(), 6);
    // The same routers as `/api/v1/routes` (the rates move between the two requests).
    let shape = |doc: &Value| -> Vec<Value> {
        doc["routers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                json!([
                    r["name"],
                    r["rule"],
                    r["source"],
                    r["service"],
                    r["entrypoints"],
                    r["tls"]
                ])
            })
            .collect()
    };
    assert_eq!(shape(&routes), shape(&get_json(admin, "/api/v1/routes")));
    for path in ["/api/services", "/api/certificates", "/api/vips"] {
        let v = get_json(admin, path);
        assert_eq!(v["api_version"], 1, "{path}");
    }
    assert_eq!(
        get_json(admin, "/api/certificates")["certificates"],
        get_json(admin, "/api/v1/certificates")["certificates"]
    );
    let explained = get_json(
        admin,
        "/api/explain?url=status.example.com%2F&entrypoint=internal",
    );
    assert_eq!(explained["results"][0]["matched"]["router"], "status");

    // Requests and errors per second, sampled by the proxy: the `status` router under live
    // traffic has a request rate and no error rate.
    let status_rate = wait_for(
        "a request rate for `status`",
        Duration::from_secs(20),
        || {
            let v = get_json(admin, "/api/v1/routes");
            let r = v["routers"]
                .as_array()?
                .iter()
                .find(|r| r["name"] == "status")?
                .clone();
            (r["requests_per_second"].as_f64()? > 1.0).then_some(r)
        },
    );
    assert_eq!(status_rate["errors_per_second"], 0.0, "{status_rate}");
    assert!(status_rate["rate_window_seconds"].as_f64().unwrap() > 0.0);

    // No private key anywhere: every endpoint of the admin listener, with the real store.
    let mut endpoints: Vec<String> = [
        "/",
        "/dashboard/",
        "/dashboard/app.js",
        "/dashboard/app.css",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api",
        "/api/v1",
    ]
    .map(String::from)
    .to_vec();
    for doc in [
        "problems",
        "routes",
        "services",
        "certificates",
        "vips",
        "explain?url=https%3A%2F%2Fsoon.example.com%2F",
    ] {
        endpoints.push(format!("/api/v1/{doc}"));
        endpoints.push(format!("/api/{doc}"));
    }
    for path in &endpoints {
        let (status, body) = http(admin, "GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        assert_no_key_material(path, &body, &keys);
    }

    let browser = Browser::start();
    browser.goto(&format!("http://127.0.0.1:{admin}/"));
    wait_for("the page to load its data", Duration::from_secs(20), || {
        (browser.script("return document.body.dataset.loaded || ''") == "true").then_some(())
    });

    // Problems come first on the page, and flag the expiring certificate.
    let first_section = browser.script(
        "return Array.from(document.querySelectorAll('main > section')).find(s => !s.hidden).id",
    );
    assert_eq!(first_section, "problems");
    let problems = browser.text("#problem-list");
    assert!(
        problems.contains("soon.example.com") && problems.contains("expires in 5 days"),
        "{problems}"
    );
    let kinds = browser.script(
        "return Array.from(document.querySelectorAll('#problem-list li')).map(l => l.dataset.kind)",
    );
    for kind in [
        "certificate_expiring",
        "endpoint_ejected",
        "route_collision",
        "reload_failed",
    ] {
        assert!(kinds.as_array().unwrap().contains(&json!(kind)), "{kinds}");
    }

    // Routers.
    let routers = browser.text("#routes tbody");
    for name in ["app", "api", "soon", "shadow", "legacy", "status"] {
        assert!(
            routers.contains(name),
            "router {name} missing from: {routers}"
        );
    }
    assert!(routers.contains("Host(`api.example.com`) && PathPrefix(`/v1`)"));
    // Each router's rule, source, entrypoints, TLS and target service are in its row.
    let api_row = browser.text("#routes tr[data-router=\"api\"]");
    for want in ["websecure", "yes (le)", "file"] {
        assert!(api_row.contains(want), "{want} missing from: {api_row}");
    }
    // Requests per second of the router under traffic, as the page shows it (a rate with a
    // decimal, not a counter), and an error rate for the refused `legacy` endpoint's router.
    let rps = wait_for(
        "the page to show a request rate",
        Duration::from_secs(20),
        || {
            let t = browser.script(
            "return document.querySelector('#routes tr[data-router=\"status\"] td.rps').textContent",
        );
            let v: f64 = t.as_str()?.parse().ok()?;
            (v > 1.0).then_some(t)
        },
    );
    assert!(rps.as_str().unwrap().contains('.'), "{rps}");
    let legacy_errors = browser.script(
        "return document.querySelector('#routes tr[data-router=\"legacy\"] td.eps').textContent",
    );
    assert!(
        legacy_errors.as_str().unwrap().parse::<f64>().is_ok(),
        "{legacy_errors}"
    );

    // Certificates, with the expiring one marked.
    let certs = browser.text("#certificates tbody");
    for d in [
        "app.example.com",
        "www.example.com",
        "api.example.com",
        "soon.example.com",
    ] {
        assert!(certs.contains(d), "{d} missing from: {certs}");
    }
    assert!(certs.contains("5 days"), "{certs}");
    let soon_class = browser.script(
        "return document.querySelector('#certificates tr[data-domain=\"soon.example.com\"]').className",
    );
    assert_eq!(soon_class, "expiring");
    // The proxy only serves certificates: it points to the issuer for renewal facts.
    let soon_row = browser.text("#certificates tr[data-domain=\"soon.example.com\"]");
    assert!(soon_row.contains("see controller"), "{soon_row}");
    let bar_class = browser.script(
        "return document.querySelector('#certificates tr[data-domain=\"soon.example.com\"] .fill').className",
    );
    assert!(
        bar_class.as_str().unwrap().contains("critical"),
        "{bar_class}"
    );

    // Services.
    let services = browser.text("#services tbody");
    assert!(services.contains("http://127.0.0.1:9") && services.contains("round_robin"));
    let legacy_state = browser.script(
        "return document.querySelector('#services tr[data-service=\"legacy\"] td:nth-child(4)').textContent",
    );
    assert_eq!(legacy_state, "ejected");

    // The explain box: type a URL, read the answer.
    browser.type_into("#explain-url", "https://api.example.com/v1/users?page=2");
    browser.click("#explain-go");
    let answer = wait_for("the explain answer", Duration::from_secs(10), || {
        let t = browser.text("#explain-result");
        t.contains("router api").then_some(t)
    });
    assert!(answer.contains("websecure"), "{answer}");
    assert!(answer.contains("service api"), "{answer}");
    // On `web` the api router is not attached: nothing matches there.
    assert!(answer.contains("no route matches"), "{answer}");

    let shot = screenshot_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    browser.screenshot(&shot);
    assert_png(&shot, 800, 600);
    eprintln!("screenshot: {}", shot.display());
    drop(browser);
    drop(traffic);
}

#[test]
fn dashboard_asks_for_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = "dashboard-e2e-token-0123456789";
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let (config, _) = write_fixture(
        dir.path(),
        &format!("token_file = {:?}\n", token_file.display().to_string()),
    );
    let (_proxy, admin, _) = start_proxy(&config);
    // Probes and the page are open; data is not.
    assert_eq!(http(admin, "GET", "/healthz", None).0, 200);
    assert_eq!(http(admin, "GET", "/", None).0, 200);
    for path in [
        "/api/v1",
        "/api/v1/certificates",
        "/api/routes",
        "/api/certificates",
        "/api/explain?url=x",
        "/metrics",
    ] {
        assert_eq!(http(admin, "GET", path, None).0, 401, "{path}");
    }

    let browser = Browser::start();
    browser.goto(&format!("http://127.0.0.1:{admin}/"));
    wait_for("the token prompt", Duration::from_secs(20), || {
        (browser.script("return !document.getElementById('token-form').hidden") == true)
            .then_some(())
    });
    assert_eq!(
        browser.script("return document.body.dataset.loaded || ''"),
        "",
        "no data without the token"
    );
    browser.type_into("#token-input", token);
    browser.click("#token-form button");
    wait_for(
        "the page to load with the token",
        Duration::from_secs(20),
        || (browser.script("return document.body.dataset.loaded || ''") == "true").then_some(()),
    );
    assert!(browser.text("#routes tbody").contains("legacy"));
    assert!(
        browser
            .text("#certificates tbody")
            .contains("soon.example.com")
    );
}

#[test]
fn controller_dashboard_shows_leadership_and_renewal_windows() {
    let dir = tempfile::tempdir().unwrap();
    let (_, keys) = write_fixture(dir.path(), "");
    let admin = free_port();
    // Nothing listens here: every ACME call fails fast, which the page must show.
    let closed = free_port();
    let config = dir.path().join("controller.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[tls]
store = "acme.json"

[acme]
admin_address = "127.0.0.1:{admin}"
backoff = {{ initial_secs = 1, cap_secs = 2 }}

[acme.resolvers.le]
directory = "http://127.0.0.1:{closed}/dir"
email = "ops@example.com"

[[acme.certificates]]
resolver = "le"
main = "app.example.com"
sans = ["www.example.com"]

[[acme.certificates]]
resolver = "le"
main = "soon.example.com"
"#
        ),
    )
    .unwrap();
    let _controller = Proc(
        Command::new(env!("CARGO_BIN_EXE_fairway-controller"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fairway-controller"),
    );
    let acme = wait_for("the controller to lead", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", admin)).ok()?;
        let v = get_json(admin, "/api/v1/acme");
        (v["is_leader"] == true && !v["last_error"].is_null()).then_some(v)
    });
    assert_eq!(acme["managed_certificates"], 2);
    // The leader names itself (file mode: the lock names no holder to standbys).
    let identity = acme["identity"].as_str().unwrap().to_owned();
    assert!(identity.contains(':'), "host:pid, got {identity}");
    assert_eq!(acme["leader"], identity.as_str());
    assert!(
        acme["election"].as_str().unwrap().starts_with("lock file "),
        "{acme}"
    );
    let index = get_json(admin, "/api/v1");
    assert_eq!(index["component"], "controller");
    let certs = get_json(admin, "/api/v1/certificates");
    let app = certs["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["domain"] == "app.example.com")
        .unwrap()
        .clone();
    assert!(app["next_renewal"]["earliest"].is_string(), "{app}");
    assert!(app["last_renewal"]["outcome"].is_string(), "{app}");
    for path in [
        "/",
        "/dashboard/app.js",
        "/healthz",
        "/metrics",
        "/api",
        "/api/v1",
        "/api/v1/certificates",
        "/api/certificates",
        "/api/v1/acme",
        "/api/acme",
        "/api/v1/problems",
        "/api/problems",
    ] {
        let (status, body) = http(admin, "GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        assert_no_key_material(path, &body, &keys);
    }

    let browser = Browser::start();
    browser.goto(&format!("http://127.0.0.1:{admin}/"));
    wait_for("the page to load its data", Duration::from_secs(20), || {
        (browser.script("return document.body.dataset.loaded || ''") == "true").then_some(())
    });
    assert_eq!(browser.text("#component"), "controller");
    assert!(browser.text("#acme-leadership").contains("ACME leader"));
    assert_eq!(browser.text("#acme-leader-name"), identity);
    assert!(browser.text("#acme-error").contains("last error"));
    // The proxy-only sections are hidden.
    assert_eq!(
        browser.script("return document.getElementById('routes').hidden"),
        true
    );
    let problems = browser.text("#problem-list");
    assert!(problems.contains("soon.example.com"), "{problems}");
    let app_row = browser.text("#certificates tr[data-domain=\"app.example.com\"]");
    assert!(app_row.contains("between"), "{app_row}");

    let shot = screenshot_dir().join("controller.png");
    let _ = std::fs::remove_file(&shot);
    browser.screenshot(&shot);
    assert_png(&shot, 800, 600);
    eprintln!("screenshot: {}", shot.display());
}

/// The speaker's part of the page, rendered from a synthetic status (a real speaker needs
/// network namespaces; `speaker_netns.rs` covers that): VIP owners, per-node state, the last
/// failover and its duration, problems first.
#[test]
fn speaker_dashboard_shows_vips_nodes_and_failovers() {
    use std::sync::{Arc, Mutex};
    use std::time::{SystemTime, UNIX_EPOCH};

    use bins::dashboard::speaker::{VipHistory, answer};
    use vip_failover::linux::{AddressMode, IoCounters, SpeakerStatus};
    use vip_failover::machine::{PeerStatus, VipStatus};
    use vip_failover::{MachineStats, NodeId, Status};

    let peer = |name: &str, alive: bool| PeerStatus {
        node: NodeId::new(name),
        alive,
        healthy: alive,
        hears_us: alive,
        last_heard_ms: alive.then_some(120),
        rtt_us: alive.then_some(250),
        received: 10,
        lost: 0,
    };
    let status = |owner: Option<&str>, b_alive: bool| Status {
        node: NodeId::new("node-a"),
        healthy: true,
        quorum: true,
        vips: vec![
            VipStatus {
                addr: "198.51.100.10".parse().unwrap(),
                owner: owner.map(NodeId::new),
                local: owner == Some("node-a"),
            },
            VipStatus {
                addr: "2001:db8::10".parse().unwrap(),
                owner: Some(NodeId::new("node-c")),
                local: false,
            },
        ],
        peers: vec![peer("node-b", b_alive), peer("node-c", true)],
        stats: MachineStats::default(),
    };
    let t0 = UNIX_EPOCH + Duration::from_secs(1_893_456_000);
    let mut history = VipHistory::default();
    history.observe(&status(Some("node-b"), true), t0);
    history.observe(&status(None, false), t0 + Duration::from_millis(900));
    history.observe(
        &status(Some("node-a"), false),
        t0 + Duration::from_millis(2_150),
    );
    let history = Arc::new(Mutex::new(history));
    let now = Arc::new(SpeakerStatus {
        machine: status(Some("node-a"), false),
        interface: "eth0".into(),
        mac: "02:00:00:00:00:0a".into(),
        address_mode: AddressMode::Kernel,
        io: IoCounters::default(),
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let admin = listener.local_addr().unwrap().port();
    rt.spawn(bins::dashboard::serve(listener, None, move |path| {
        answer(path, &now, &history, SystemTime::now())
            .unwrap_or_else(|| bins::dashboard::error(hyper::StatusCode::NOT_FOUND, "not found"))
    }));

    let vips = get_json(admin, "/api/v1/vips");
    assert_eq!(vips["vips"][0]["last_failover"]["duration_ms"], 2_150);
    assert_eq!(get_json(admin, "/api/vips"), vips);

    let browser = Browser::start();
    browser.goto(&format!("http://127.0.0.1:{admin}/"));
    wait_for("the page to load its data", Duration::from_secs(20), || {
        (browser.script("return document.body.dataset.loaded || ''") == "true").then_some(())
    });
    assert_eq!(browser.text("#component"), "speaker");
    let problems = browser.text("#problem-list");
    assert!(problems.contains("node-b"), "{problems}");
    let row = browser.text("#vips tr[data-vip=\"198.51.100.10\"]");
    for want in [
        "node-a: owner",
        "node-b: down",
        "node-c: standby",
        "node-b → node-a",
        "2150 ms",
    ] {
        assert!(row.contains(want), "{want} missing from: {row}");
    }
    assert_eq!(
        browser.script("return document.getElementById('certificates').hidden"),
        true
    );
    let shot = screenshot_dir().join("speaker.png");
    let _ = std::fs::remove_file(&shot);
    browser.screenshot(&shot);
    assert_png(&shot, 800, 600);
    eprintln!("screenshot: {}", shot.display());
    drop(browser);
    rt.shutdown_background();
}
