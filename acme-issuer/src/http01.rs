//! The controller's HTTP-01 challenge endpoint.
//!
//! Proxies forward `/.well-known/acme-challenge/*` to this listener when the issuer runs in a
//! separate controller process (or the CA's `httpPort` points here directly). It answers from the
//! same [`Http01Registry`] the [`Http01Solver`](crate::Http01Solver) publishes into: `200` with
//! the key authorization for a published token, `404` otherwise. Nothing else is served.

use std::convert::Infallible;

use acme_store::challenge::Http01Registry;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// The path prefix of HTTP-01 challenges (RFC 8555 §8.3).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Answer one request from `registry` (pure; used by the server and by embedding proxies).
pub fn respond(
    registry: &Http01Registry,
    method: &Method,
    path: &str,
) -> (StatusCode, Option<Bytes>) {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, None);
    }
    let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) else {
        return (StatusCode::NOT_FOUND, None);
    };
    if token.is_empty() || token.contains('/') {
        return (StatusCode::NOT_FOUND, None);
    }
    match registry.get(token) {
        Some(key_auth) => (
            StatusCode::OK,
            Some(Bytes::copy_from_slice(key_auth.as_bytes())),
        ),
        None => (StatusCode::NOT_FOUND, None),
    }
}

/// Serve HTTP-01 challenges on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, registry: Http01Registry) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(error = %e, "challenge listener accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (status, body) = respond(&registry, req.method(), req.uri().path());
                let body = if req.method() == Method::HEAD {
                    Bytes::new()
                } else {
                    body.unwrap_or_default()
                };
                let response = Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, "text/plain")
                    .body(Full::new(body))
                    .unwrap_or_default();
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Serve HTTP-01 challenges on `addr` only while `leadership` says this replica leads.
///
/// For replicas on one host sharing one challenge address: the standbys do not listen, the
/// leader binds the address when it wins (retrying while a deposed or dying leader still holds
/// it) and releases it when it loses. The kernel closes a killed leader's socket, so the next
/// leader takes the address over at once. Runs until dropped.
pub async fn serve_while_leader(
    addr: std::net::SocketAddr,
    registry: Http01Registry,
    mut leadership: tokio::sync::watch::Receiver<crate::Leadership>,
) {
    loop {
        if leadership.wait_for(|l| l.is_leader).await.is_err() {
            return;
        }
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break Some(l),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "challenge address busy; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    if !leadership.borrow().is_leader {
                        break None;
                    }
                }
            }
        };
        let Some(listener) = listener else { continue };
        tracing::info!(%addr, "serving HTTP-01 challenges while leading");
        tokio::select! {
            () = serve(listener, registry.clone()) => {}
            lost = leadership.wait_for(|l| !l.is_leader) => {
                if lost.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_published_tokens() {
        let r = Http01Registry::new();
        r.publish("tok", "tok.thumb");
        let get = Method::GET;
        assert_eq!(
            respond(&r, &get, "/.well-known/acme-challenge/tok"),
            (StatusCode::OK, Some(Bytes::from_static(b"tok.thumb")))
        );
        assert_eq!(
            respond(&r, &get, "/.well-known/acme-challenge/other").0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&r, &get, "/.well-known/acme-challenge/tok/x").0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(respond(&r, &get, "/tok").0, StatusCode::NOT_FOUND);
        assert_eq!(
            respond(&r, &Method::POST, "/.well-known/acme-challenge/tok").0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        r.withdraw("tok");
        assert_eq!(
            respond(&r, &get, "/.well-known/acme-challenge/tok").0,
            StatusCode::NOT_FOUND
        );
    }
}
