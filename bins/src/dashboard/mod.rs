//! The admin dashboard of `fairway-controller` and `fairway-speaker`.
//!
//! Every Fairway binary serves the same embedded page ([`ingress_proxy::dashboard`]); the page
//! asks `/api/v1` which sections this binary has and shows only those. The proxy's part lives
//! in `ingress-proxy`; the controller's part (certificates with renewal facts, ACME leadership)
//! is [`controller`], the speaker's (VIPs, per-node state, failovers) is [`speaker`]. Documents
//! are built by pure functions of a status snapshot and `now`; the listener is
//! [`serve`]. Read-only: anything but `GET`/`HEAD` gets 405.

pub mod controller;
pub mod speaker;

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::TcpListener;

/// The response body type of the small admin listeners.
pub type Body = Full<Bytes>;

/// The version of the `/api/v1` documents.
pub const API_VERSION: u32 = 1;

/// A JSON response (`no-store`: it is live state).
pub fn json(status: StatusCode, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A plain-text response.
pub fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The embedded page's file at `path`, with the same security headers as the proxy's.
pub fn page(path: &str) -> Option<Response<Body>> {
    let asset = ingress_proxy::dashboard::asset(path)?;
    let mut r = Response::new(Full::new(Bytes::from_static(asset.body.as_bytes())));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(ingress_proxy::dashboard::CONTENT_SECURITY_POLICY),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Some(r)
}

/// `{"error": ...}` with `status`.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

/// Serves `handler(path)` on `listener` until the task is dropped; `GET`/`HEAD` only.
pub async fn serve<F>(listener: TcpListener, handler: F)
where
    F: Fn(&str) -> Response<Body> + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = if req.method() == Method::GET || req.method() == Method::HEAD {
                    handler(req.uri().path())
                } else {
                    error(StatusCode::METHOD_NOT_ALLOWED, "the admin API is read-only")
                };
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// One entry of `/api/v1/problems`.
pub fn problem(severity: &str, kind: &str, subject: String, message: String) -> Value {
    serde_json::json!({ "severity": severity, "kind": kind, "subject": subject, "message": message })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn listener_is_read_only() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, |path| match page(path) {
            Some(r) => r,
            None => error(StatusCode::NOT_FOUND, "not found"),
        }));
        let (get, post) = tokio::task::spawn_blocking(move || {
            (
                exchange(addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                exchange(
                    addr,
                    "POST /api/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            )
        })
        .await
        .unwrap();
        assert!(get.starts_with("HTTP/1.1 200"), "{get}");
        assert!(get.contains("content-security-policy"), "{get}");
        assert!(get.contains("/dashboard/app.js"));
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        task.abort();
    }
}
