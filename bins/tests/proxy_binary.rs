//! The `fairway-proxy` binary: prints its URLs, serves the standalone example over HTTPS,
//! reloads on file change and SIGHUP (rejecting broken files while serving), drains on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Running {
    child: Child,
    urls: Vec<String>,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(config: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fairway-proxy"))
        .arg("--config")
        .arg(config)
        .arg("--watch-interval")
        .arg("100ms")
        .arg("--drain-timeout")
        .arg("5s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fairway-proxy");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = etx.send(line);
        }
    });
    let mut urls = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(i) = line.find("http") {
                    urls.push(line[i..].trim().to_owned());
                }
                if line.contains("/healthz") {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    assert!(!urls.is_empty(), "fairway-proxy printed no URLs");
    Running {
        child,
        urls,
        stderr: erx,
    }
}

fn port_of(url: &str) -> u16 {
    let after = url.split("://").nth(1).unwrap();
    let hostport = after.split('/').next().unwrap();
    hostport.rsplit(':').next().unwrap().parse().unwrap()
}

/// One plain HTTP/1.1 request; returns the raw response.
fn http_get(port: u16, host: &str, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

const CONFIG: &str = r#"
[entrypoints.web]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[routers.one]
rule = "Host(`one.test`)"
service = "one"
[services.one]
respond = { body = "one" }
"#;

#[test]
fn reloads_on_change_and_sighup_rejects_broken_files_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fairway.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let mut run = spawn(&path);
    let web = port_of(&run.urls[0]);
    assert!(http_get(web, "one.test", "/").ends_with("one"));
    assert!(http_get(web, "two.test", "/").starts_with("HTTP/1.1 404"));

    // File change: a new route appears.
    let two = format!(
        "{CONFIG}\n[routers.two]\nrule = \"Host(`two.test`)\"\nservice = \"two\"\n[services.two]\nrespond = {{ body = \"two\" }}\n"
    );
    std::fs::write(&path, &two).unwrap();
    wait_until("the reload", || {
        http_get(web, "two.test", "/").ends_with("two")
    });

    // A broken file is rejected with the file and field named; the old config keeps serving.
    std::fs::write(
        &path,
        two.replace("service = \"two\"", "service = \"three\""),
    )
    .unwrap();
    let mut rejected = String::new();
    wait_until("the rejection", || {
        while let Ok(line) = run.stderr.try_recv() {
            if line.contains("configuration rejected") {
                rejected = line;
                return true;
            }
        }
        false
    });
    assert!(rejected.contains("fairway.toml"), "{rejected}");
    assert!(rejected.contains("routers.two.service"), "{rejected}");
    assert!(http_get(web, "two.test", "/").ends_with("two"));

    // SIGHUP reloads too (write without waiting for the poller: SIGHUP is immediate).
    std::fs::write(&path, CONFIG).unwrap();
    signal(&run.child, "HUP");
    wait_until("the SIGHUP reload", || {
        http_get(web, "two.test", "/").starts_with("HTTP/1.1 404")
    });

    // SIGTERM: drains and exits 0.
    signal(&run.child, "TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = run.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "fairway-proxy did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn standalone_example_serves_https_and_admin() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/standalone.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    // Same file on free ports, so the test never collides with a running proxy.
    let text = text
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:8443", "127.0.0.1:0")
        .replace("127.0.0.1:9900", "127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("standalone.toml");
    std::fs::write(&path, text).unwrap();
    let run = spawn(&path);
    let https = run
        .urls
        .iter()
        .find(|u| u.starts_with("https://"))
        .expect("an https URL");
    let admin = run
        .urls
        .iter()
        .find(|u| u.ends_with("/metrics"))
        .expect("the metrics URL");
    // curl is the simplest TLS client here; the certificate is the generated self-signed one.
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "5", https])
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("Hello from Fairway"), "{body}");
    let metrics = http_get(port_of(admin), "127.0.0.1", "/metrics");
    assert!(metrics.contains("fairway_requests_total"), "{metrics}");
    let web = run
        .urls
        .iter()
        .find(|u| u.starts_with("http://localhost"))
        .unwrap();
    let redirect = http_get(port_of(web), "localhost", "/");
    assert!(redirect.starts_with("HTTP/1.1 301"), "{redirect}");
}
