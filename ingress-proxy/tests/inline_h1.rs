//! End to end: the inline HTTP/1.1 path (bodiless requests served by the connection's own
//! task) and its hand-off to hyper's server in the middle of a keep-alive connection,
//! pipelining, HEAD, `Connection: close`, response bodies of every framing, the keep-alive
//! header timeout and drain.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn toml(app: &str, limits: &str) -> String {
    format!(
        "[entrypoints.web]\naddress = \"127.0.0.1:0\"\n[limits]\n{limits}\n\
         [routers.app]\nrule = \"PathPrefix(`/`)\"\nservice = \"app\"\n\
         [services.app]\n[[services.app.endpoints]]\nurl = \"{app}\"\n"
    )
}

/// One client connection, requests one after another on it.
async fn connection(addr: SocketAddr) -> http1::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (tx, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    tx
}

async fn send(
    tx: &mut http1::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> (StatusCode, http::HeaderMap, Bytes, Option<http::HeaderMap>) {
    tx.ready().await.expect("connection still open");
    let resp = tx.send_request(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.expect("body");
    let trailers = collected.trailers().cloned();
    (parts.status, parts.headers, collected.to_bytes(), trailers)
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "a.test")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn doc(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_moves_to_hyper_when_a_request_has_a_body() {
    let app = upstream("app").await;
    let proxy = start(&toml(&app.url(), "")).await;
    let mut tx = connection(proxy.local_addr("web").unwrap()).await;
    for i in 0..3 {
        let (status, headers, body, _) = send(&mut tx, get(&format!("/inline/{i}"))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers.contains_key("date"));
        assert!(!headers.contains_key("x-hop"), "hop-by-hop headers removed");
        assert_eq!(doc(&body)["path"], format!("/inline/{i}"));
    }
    // A body: hyper serves this one and every later request on the connection.
    let post = Request::post("/upload")
        .header("host", "a.test")
        .body(Full::new(Bytes::from_static(b"twelve bytes")))
        .unwrap();
    let (status, _, body, _) = send(&mut tx, post).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc(&body)["body_len"], 12);
    assert_eq!(doc(&body)["method"], "POST");
    let (status, _, body, _) = send(&mut tx, get("/after")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc(&body)["path"], "/after");
    assert_eq!(app.hits.load(std::sync::atomic::Ordering::Relaxed), 5);
    proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let app = upstream("app").await;
    let proxy = start(&toml(&app.url(), "")).await;
    let addr = proxy.local_addr("web").unwrap();
    let out = raw(
        addr,
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nHEAD /two HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let one = out.find("\"path\":\"/one\"").expect(&out);
    let three = out.find("\"path\":\"/three\"").expect(&out);
    assert!(one < three, "{out}");
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    assert!(!out.contains("/two\""), "HEAD has no body: {out}");
    assert!(
        !out.contains("/never"),
        "nothing after Connection: close: {out}"
    );
    let last_head = &out[out.rfind("HTTP/1.1 200").unwrap()..];
    assert!(last_head.contains("connection: close"), "{out}");
    proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_keeps_the_length_and_the_connection() {
    let app = upstream("app").await;
    let proxy = start(&toml(&app.url(), "")).await;
    let mut tx = connection(proxy.local_addr("web").unwrap()).await;
    let (_, _, get_body, _) = send(&mut tx, get("/same")).await;
    let head = Request::head("/same")
        .header("host", "a.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, body, _) = send(&mut tx, head).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    // The echo names the method: "HEAD" is one byte longer than "GET".
    assert_eq!(
        headers["content-length"].to_str().unwrap(),
        (get_body.len() + 1).to_string()
    );
    let (status, _, _, _) = send(&mut tx, get("/still-open")).await;
    assert_eq!(status, StatusCode::OK);
    proxy.shutdown(Duration::from_secs(2)).await;
}

/// An upstream written by hand: `/chunked` answers chunked with a trailer, `/eof` with a body
/// delimited by closing the connection, `/big` with 1 MiB of known length.
async fn framing_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut have = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => have.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&have[..end]).into_owned();
                    have.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    match path.as_str() {
                        "/chunked" => {
                            let _ = s
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                                      5\r\nhello\r\n",
                                )
                                .await;
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            let _ = s
                                .write_all(b"6\r\n world\r\n0\r\nx-checksum: 42\r\n\r\n")
                                .await;
                        }
                        "/eof" => {
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil close").await;
                            return;
                        }
                        _ => {
                            let mut r =
                                b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n".to_vec();
                            r.extend((0..1_048_576u32).map(|i| (i % 251) as u8));
                            let _ = s.write_all(&r).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_until_close_and_large_bodies_are_relayed() {
    let up = framing_upstream().await;
    let proxy = start(&toml(&format!("http://{up}"), "")).await;
    let mut tx = connection(proxy.local_addr("web").unwrap()).await;
    for _ in 0..2 {
        // Trailers only for a client that asked for them.
        let with_te = Request::get("/chunked")
            .header("host", "a.test")
            .header("te", "trailers")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, headers, body, trailers) = send(&mut tx, with_te).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["transfer-encoding"], "chunked");
        assert_eq!(&body[..], b"hello world");
        assert_eq!(trailers.expect("trailers")["x-checksum"], "42");
        let (_, _, body, trailers) = send(&mut tx, get("/chunked")).await;
        assert_eq!(&body[..], b"hello world");
        assert!(trailers.is_none());

        let (status, headers, body, _) = send(&mut tx, get("/big")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-length"], "1048576");
        assert_eq!(body.len(), 1_048_576);
        assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));

        // Until-close upstream: our client still gets a delimited body on a kept connection.
        let (status, headers, body, _) = send(&mut tx, get("/eof")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["transfer-encoding"], "chunked");
        assert_eq!(&body[..], b"until close");
    }
    proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_waits_are_bounded_by_the_header_timeout() {
    let app = upstream("app").await;
    let proxy = start(&toml(&app.url(), "header_read_timeout = \"1s\"")).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the idle keep-alive connection was closed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
    proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_idle_connections_and_finishes_busy_ones() {
    let app = upstream("app").await;
    let proxy = start(&toml(&app.url(), "")).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut idle = connection(addr).await;
    send(&mut idle, get("/")).await;
    let mut busy = connection(addr).await;
    send(&mut busy, get("/")).await;
    let slow = tokio::spawn(async move {
        let r = send(&mut busy, get("/sleep/400")).await;
        (r, busy)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    proxy.shutdown(Duration::from_secs(5)).await;
    let ((status, headers, _, _), mut busy) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK, "the request in flight completes");
    assert_eq!(headers["connection"], "close");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Both connections are gone.
    for tx in [&mut idle, &mut busy] {
        let closed = tokio::time::timeout(Duration::from_secs(2), async {
            while tx.ready().await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(closed.is_ok(), "connection closed by the drain");
    }
}

/// Reads until the proxy closes `s`; how long that took.
async fn closed_after(s: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the idle connection was closed");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_connections_on_both_paths() {
    let app = upstream("app").await;
    let limits = "header_read_timeout = \"10s\"\nidle_timeout = \"500ms\"";
    let proxy = start(&toml(&app.url(), limits)).await;
    let addr = proxy.local_addr("web").unwrap();
    // The inline path (a GET), and hyper's (a POST hands the connection over).
    let requests: [&[u8]; 2] = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
    ];
    for request in requests {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        let waited = closed_after(&mut s).await;
        // Well before the 10 s header timeout; no earlier than the idle timeout allows.
        assert!(
            waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
            "closed after {waited:?}"
        );
    }
    // Activity keeps a connection open past the idle timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..4 {
        s.write_all(requests[0]).await.unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    s.write_all(requests[0]).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "open after 1.2 s of activity"
    );
    proxy.shutdown(Duration::from_secs(2)).await;
}
