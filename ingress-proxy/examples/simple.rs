//! A proxy in front of a tiny upstream, on free ports; makes one request through it and
//! prints the answer and the admin metrics for the route.
//!
//! `cargo run -p ingress-proxy --example simple`

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The upstream: answers with the Host and X-Forwarded-For it received.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let h = req.headers();
                    let text = format!(
                        "upstream saw host={:?} x-forwarded-for={:?}\n",
                        h.get("host"),
                        h.get("x-forwarded-for")
                    );
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });

    let config: ingress_proxy::ProxyConfig = toml::from_str(&format!(
        r#"
        [entrypoints.web]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        [routers.app]
        rule = "Host(`app.example`)"
        service = "app"
        [services.app]
        [[services.app.endpoints]]
        url = "http://{upstream_addr}"
        "#
    ))?;
    let proxy = ingress_proxy::Proxy::builder(config).start().await?;
    let web = proxy.local_addr("web").expect("bound");
    println!(
        "proxy listening on {web}, admin on {:?}",
        proxy.admin_addr()
    );

    let mut s = tokio::net::TcpStream::connect(web).await?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).await?;
    println!("{answer}");

    let metrics = proxy.metrics().render();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("fairway_requests_total") && !l.ends_with(" 0"))
    {
        println!("{line}");
    }
    proxy.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
