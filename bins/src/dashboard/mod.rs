//! The admin dashboard of `fairway-controller` and `fairway-speaker`.
//!
//! Every Fairway binary serves the same embedded page ([`ingress_proxy::dashboard`]); the page
//! asks `/api/v1` which sections this binary has and shows only those. The proxy's part lives
//! in `ingress-proxy`; the controller's part (certificates with renewal facts, ACME leadership)
//! is [`controller`], the speaker's (VIPs, per-node state, failovers) is [`speaker`]. Documents
//! are built by pure functions of a status snapshot and `now`; the listener is
//! [`serve`]. Read-only: anything but `GET`/`HEAD` gets 405. With a bearer token configured,
//! every path but the probes and the static page needs `Authorization: Bearer`, checked by the
//! proxy's own [`ingress_proxy::dashboard::authorized`] so all binaries gate the same way.

pub mod controller;
pub mod speaker;

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
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

/// The 401 for a request to a non-public path without the right bearer token, or `None` when
/// it may be answered. Without a token everything may.
pub fn gate(token: Option<&str>, path: &str, headers: &HeaderMap) -> Option<Response<Body>> {
    use ingress_proxy::dashboard::{authorized, is_public};
    if is_public(path) || authorized(token, headers) {
        return None;
    }
    let mut r = error(StatusCode::UNAUTHORIZED, "a bearer token is required");
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"fairway-admin\""),
    );
    Some(r)
}

/// Reads the admin token file named by config field `field`, if any; the error names the
/// field and the file but never the token.
pub fn load_token(field: &str, path: Option<&std::path::Path>) -> Result<Option<Arc<str>>, String> {
    path.map(|p| {
        ingress_proxy::dashboard::read_token_file(p)
            .map(Arc::from)
            .map_err(|e| format!("{field}: {e}"))
    })
    .transpose()
}

/// Serves `handler(path)` on `listener` until the task is dropped; `GET`/`HEAD` only, and
/// behind [`gate`] when `token` is set.
pub async fn serve<F>(listener: TcpListener, token: Option<Arc<str>>, handler: F)
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
        let token = token.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let path = req.uri().path();
                let resp = if req.method() != Method::GET && req.method() != Method::HEAD {
                    error(StatusCode::METHOD_NOT_ALLOWED, "the admin API is read-only")
                } else if let Some(denied) = gate(token.as_deref(), path, req.headers()) {
                    denied
                } else {
                    handler(path)
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
        let task = tokio::spawn(serve(listener, None, |path| match page(path) {
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

    fn token_server_answer(path: &str) -> Response<Body> {
        match (page(path), path) {
            (Some(r), _) => r,
            (None, "/healthz" | "/readyz") => text(StatusCode::OK, "text/plain", "ok\n".into()),
            (None, "/api/v1") => json(StatusCode::OK, &serde_json::json!({ "api_version": 1 })),
            _ => error(StatusCode::NOT_FOUND, "not found"),
        }
    }

    fn get(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> String {
        let auth = auth
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        exchange(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
        )
    }

    const TOKEN: &str = "0123456789abcdef-admin";

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn token_is_required_accepted_and_probes_stay_open() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, Some(TOKEN.into()), token_server_answer));
        let r = tokio::task::spawn_blocking(move || {
            [
                get(addr, "/api/v1", None),
                get(addr, "/api/v1", Some("0123456789abcdef-wrong")),
                get(addr, "/api/v1", Some(TOKEN)),
                get(addr, "/healthz", None),
                get(addr, "/readyz", None),
                get(addr, "/", None),
                get(addr, "/metrics", None),
            ]
        })
        .await
        .unwrap();
        assert!(r[0].starts_with("HTTP/1.1 401"), "{}", r[0]);
        assert!(
            r[0].to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{}",
            r[0]
        );
        assert!(!r[0].contains(TOKEN));
        assert!(r[1].starts_with("HTTP/1.1 401"), "{}", r[1]);
        assert!(r[2].starts_with("HTTP/1.1 200"), "{}", r[2]);
        assert!(r[2].contains("\"api_version\": 1"), "{}", r[2]);
        assert!(r[3].starts_with("HTTP/1.1 200"), "{}", r[3]);
        assert!(r[4].starts_with("HTTP/1.1 200"), "{}", r[4]);
        assert!(r[5].starts_with("HTTP/1.1 200"), "{}", r[5]);
        assert!(r[6].starts_with("HTTP/1.1 401"), "{}", r[6]);
        task.abort();
    }

    #[test]
    fn gate_is_open_without_a_token() {
        let headers = HeaderMap::new();
        assert!(gate(None, "/api/v1", &headers).is_none());
        assert!(gate(None, "/metrics", &headers).is_none());
        let denied = gate(Some(TOKEN), "/metrics", &headers).unwrap();
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
        assert!(gate(Some(TOKEN), "/healthz", &headers).is_none());
    }

    #[test]
    fn token_file_errors_name_field_and_file_not_token() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "tooshort\n").unwrap();
        let e = load_token("speaker.admin_token_file", Some(&short)).unwrap_err();
        assert!(e.starts_with("speaker.admin_token_file: "), "{e}");
        assert!(e.contains(&short.display().to_string()), "{e}");
        assert!(!e.contains("tooshort"), "{e}");
        let good = dir.path().join("good");
        std::fs::write(&good, format!("{TOKEN}\n")).unwrap();
        let t = load_token("acme.admin_token_file", Some(&good))
            .unwrap()
            .unwrap();
        assert_eq!(&*t, TOKEN);
        assert!(load_token("x", None).unwrap().is_none());
    }
}
