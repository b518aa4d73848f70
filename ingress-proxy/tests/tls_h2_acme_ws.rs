//! End to end: h2 and HTTP/1.1 over TLS chosen by ALPN, HTTP→HTTPS redirect, ACME HTTP-01,
//! WebSocket tunnelling.

#[path = "support/accept_any.rs"]
mod accept_any;
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use accept_any::AcceptAny;
use bytes::Bytes;
use common::*;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ingress_proxy::Proxy;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn tls_connect(
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let provider = tls_acceptor::provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("app.test").unwrap(), tcp)
        .await
        .expect("TLS handshake with the default certificate")
}

async fn start_tls(
    toml_text: &str,
    registry: Option<acme_store::challenge::Http01Registry>,
) -> Proxy {
    let tls = tls_acceptor::TlsContext::new(tls_acceptor::TlsSettings::default()).unwrap();
    let mut b = Proxy::builder(config(toml_text)).tls(Arc::new(tls));
    if let Some(r) = registry {
        b = b.challenges(Arc::new(r));
    }
    b.start().await.expect("proxy starts")
}

fn toml(app: &str, extra: &str) -> String {
    format!(
        r#"
[entrypoints.web]
address = "127.0.0.1:0"
redirect_to = "websecure"
[entrypoints.websecure]
address = "127.0.0.1:0"
tls = {{ alpn = ["h2", "http/1.1"] }}
[entrypoints.plain]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[routers.app]
rule = "Host(`app.test`)"
service = "app"
entrypoints = ["websecure", "plain"]
[services.app]
[[services.app.endpoints]]
url = "{app}"
{extra}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_and_http11_over_tls_by_alpn() {
    let app = upstream("app").await;
    let proxy = start_tls(&toml(&app.url(), ""), None).await;
    let addr = proxy.local_addr("websecure").unwrap();

    // h2 via ALPN: several concurrent streams on one connection.
    let tls = tls_connect(addr, &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut streams = Vec::new();
    for i in 0..10 {
        let mut sender = sender.clone();
        streams.push(tokio::spawn(async move {
            let req = Request::get(format!("https://app.test/h2/{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.version(), Version::HTTP_2);
            assert_eq!(resp.status(), StatusCode::OK);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        }));
    }
    for s in streams {
        let doc = s.await.unwrap();
        // h2 downstream, HTTP/1.1 upstream; Host from :authority; proto https.
        assert_eq!(doc["version"], "HTTP/1.1");
        assert_eq!(doc["headers"]["host"], "app.test");
        assert_eq!(doc["headers"]["x-forwarded-proto"], "https");
    }

    // HTTP/1.1 via ALPN on the same entrypoint.
    let tls = tls_connect(addr, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/h1")
        .header("host", "app.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_11);
    assert_eq!(resp.status(), StatusCode::OK);

    let c = client();
    let (_, _, metrics) = get(&c, proxy.admin_addr().unwrap(), "a", "/metrics").await;
    assert!(
        metrics.contains(r#"fairway_tls_handshakes_total{entrypoint="websecure",result="ok"} 2"#),
        "{metrics}"
    );
    proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_and_http01_challenges() {
    let app = upstream("app").await;
    let controller = upstream("controller").await;
    let registry = acme_store::challenge::Http01Registry::new();
    registry.publish("tok-123_ABC", "tok-123_ABC.thumbprint");
    let extra = format!("[acme_challenge]\nforward_to = \"{}\"", controller.url());
    let proxy = start_tls(&toml(&app.url(), &extra), Some(registry.clone())).await;
    let web = proxy.local_addr("web").unwrap();
    let secure_port = proxy.local_addr("websecure").unwrap().port();

    let resp = raw(
        web,
        b"GET /a/b?c=d HTTP/1.1\r\nHost: app.test:80\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 301"), "{resp}");
    assert!(
        resp.contains(&format!("location: https://app.test:{secure_port}/a/b?c=d")),
        "{resp}"
    );
    let resp = raw(
        web,
        b"POST /form HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 308"), "{resp}");

    // The token is answered before the redirect, from the registry.
    let c = client();
    let (s, _, body) = get(
        &c,
        web,
        "app.test",
        "/.well-known/acme-challenge/tok-123_ABC",
    )
    .await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::OK, "tok-123_ABC.thumbprint")
    );
    // Unknown token: forwarded to the controller's challenge endpoint.
    let (s, up, body) = get(&c, web, "app.test", "/.well-known/acme-challenge/other").await;
    assert_eq!((s, up.as_str()), (StatusCode::OK, "controller"));
    assert!(body.contains("/.well-known/acme-challenge/other"));
    // Withdrawn tokens go away immediately.
    registry.withdraw("tok-123_ABC");
    let (_, up, _) = get(
        &c,
        web,
        "app.test",
        "/.well-known/acme-challenge/tok-123_ABC",
    )
    .await;
    assert_eq!(up, "controller");
    // Malformed tokens are not forwarded.
    let (s, _, _) = get(&c, web, "app.test", "/.well-known/acme-challenge/a.b").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    proxy.shutdown(Duration::from_secs(2)).await;
}

async fn websocket_roundtrip<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    for i in 0..20 {
        // A masked WebSocket text frame is just bytes to the tunnel.
        let msg = format!("frame {i} \u{1F600}");
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg.as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy() {
    let app = upstream("app").await;
    let proxy = start_tls(&toml(&app.url(), ""), None).await;
    let plain = proxy.local_addr("plain").unwrap();
    websocket_roundtrip(TcpStream::connect(plain).await.unwrap()).await;
    let secure = proxy.local_addr("websecure").unwrap();
    websocket_roundtrip(tls_connect(secure, &[b"http/1.1"]).await).await;
    proxy.shutdown(Duration::from_secs(2)).await;
}
