//! Shared helpers for the end-to-end tests: spawned upstreams, a proxy from TOML, clients.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ingress_proxy::{Proxy, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A test upstream: answers with a JSON echo of the request, `/sleep/<ms>` first sleeps,
/// `/ws` upgrades and echoes raw bytes.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and closes the listener (connections in flight are dropped too).
    pub fn stop(&self) {
        self.task.abort();
    }
}

pub async fn upstream(name: &str) -> Upstream {
    upstream_on(name, "127.0.0.1:0".parse().unwrap()).await
}

pub async fn upstream_on(name: &str, addr: SocketAddr) -> Upstream {
    let listener = TcpListener::bind(addr).await.expect("bind upstream");
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let (n, h) = (name.to_owned(), hits.clone());
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (n, h) = (n.clone(), h.clone());
            conns.spawn(async move {
                let svc = service_fn(move |req| {
                    let (n, h) = (n.clone(), h.clone());
                    async move { Ok::<_, Infallible>(answer(&n, &h, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Upstream {
        name: name.to_owned(),
        addr,
        hits,
        task,
    }
}

async fn answer(
    name: &str,
    hits: &AtomicUsize,
    mut req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    hits.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_owned();
    if let Some(ms) = path.strip_prefix("/sleep/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path == "/ws" {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    let mut headers = BTreeMap::new();
    for (k, v) in req.headers() {
        headers.insert(k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned());
    }
    let method = req.method().to_string();
    let version = format!("{:?}", req.version());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let doc = serde_json::json!({
        "upstream": name,
        "method": method,
        "path": path,
        "version": version,
        "headers": headers,
        "body_len": body.len(),
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("x-upstream", name)
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "should be removed")
        .body(Full::new(Bytes::from(doc.to_string())))
        .unwrap()
}

pub fn config(toml_text: &str) -> ProxyConfig {
    toml::from_str(toml_text).expect("test config parses")
}

pub async fn start(toml_text: &str) -> Proxy {
    Proxy::builder(config(toml_text))
        .start()
        .await
        .expect("proxy starts")
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Status, `x-upstream` and body of one GET.
pub async fn get(
    client: &TestClient,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> (StatusCode, String, String) {
    let req = Request::get(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("request");
    let status = resp.status();
    let up = resp
        .headers()
        .get("x-upstream")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, up, String::from_utf8_lossy(&body).into_owned())
}

/// Writes raw bytes and reads until the peer closes or `timeout`; returns what was read.
pub async fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The admin `/api/routes` document.
pub async fn routes_doc(client: &TestClient, admin: SocketAddr) -> serde_json::Value {
    let (status, _, body) = get(client, admin, "admin", "/api/routes").await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_str(&body).unwrap()
}

/// The soft and hard open-files limits of this process.
pub fn nofile() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    for line in limits.lines() {
        if let Some(rest) = line.strip_prefix("Max open files") {
            let mut it = rest.split_whitespace();
            let soft = it.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
            let hard = it.next().and_then(|s| s.parse().ok()).unwrap_or(soft);
            return (soft, hard);
        }
    }
    (1024, 1024)
}

/// Raises the soft open-files limit towards `want` (with `prlimit`, which needs no `unsafe`);
/// returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> u64 {
    let (soft, hard) = nofile();
    if soft >= want {
        return soft;
    }
    let target = want.min(hard);
    let _ = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={target}:{hard}"))
        .status();
    nofile().0
}
