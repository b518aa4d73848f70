//! End to end: request smuggling attempts written raw to the socket, header limits, and
//! slowloris connections that must not stop normal requests.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn toml(app: &str, limits: &str) -> String {
    format!(
        "[entrypoints.web]\naddress = \"127.0.0.1:0\"\n[limits]\n{limits}\n\
         [routers.app]\nrule = \"PathPrefix(`/`)\"\nservice = \"app\"\n\
         [services.app]\n[[services.app.endpoints]]\nurl = \"{app}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_get_400() {
    let app = upstream("app").await;
    let proxy = start(&toml(&app.url(), "")).await;
    let addr = proxy.local_addr("web").unwrap();
    let cases: &[(&str, &[u8])] = &[
        (
            "CL.TE",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        ),
        (
            "TE.CL",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        ),
        (
            "conflicting Content-Length",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        (
            "Content-Length list",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 5\r\n\r\nabcde",
        ),
        (
            "TE not ending in chunked",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        ),
        (
            "obfuscated TE",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "space before colon",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE in HTTP/1.0",
            b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "negative Content-Length",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        ),
        (
            "invalid chunk size",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        ),
    ];
    for (name, bytes) in cases.iter() {
        let resp = raw(addr, bytes, Duration::from_secs(5)).await;
        assert!(
            resp.starts_with("HTTP/1.1 400"),
            "{name}: expected 400, got {resp:?}"
        );
        assert!(
            !resp.contains("x-upstream"),
            "{name}: reached the upstream: {resp}"
        );
    }
    // Behind a request the inline loop serves, on the same connection: the first gets its
    // answer, the smuggling attempt still gets 400 and never reaches the upstream.
    let pipelined = raw(
        addr,
        b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n\
          POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        Duration::from_secs(5),
    )
    .await;
    assert!(pipelined.starts_with("HTTP/1.1 200"), "{pipelined}");
    assert_eq!(pipelined.matches("HTTP/1.1 ").count(), 2, "{pipelined}");
    assert!(pipelined.contains("HTTP/1.1 400"), "{pipelined}");
    assert_eq!(pipelined.matches("x-upstream").count(), 1, "{pipelined}");
    // A correct chunked request still works.
    let ok = raw(
        addr,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("\"body_len\":3"), "{ok}");
    proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_limits() {
    let app = upstream("app").await;
    let proxy = start(&toml(
        &app.url(),
        "max_headers = 20\nmax_header_bytes = 8192",
    ))
    .await;
    let addr = proxy.local_addr("web").unwrap();
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..40 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let resp = raw(addr, many.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let resp = raw(addr, big.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_do_not_stop_normal_requests() {
    const SLOW: usize = 1000;
    // Each slow connection costs two descriptors in this process (client and proxy side).
    let soft = raise_nofile(4 * SLOW as u64 + 512);
    assert!(
        soft >= 2 * SLOW as u64 + 256,
        "open-files limit {soft} is too low for this test"
    );
    let app = upstream("app").await;
    let proxy = start(&toml(&app.url(), "header_read_timeout = \"2s\"")).await;
    let addr = proxy.local_addr("web").unwrap();

    // 1000 connections that send a partial request head and then trickle.
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    let c = client();
    let started = Instant::now();
    for _ in 0..20 {
        let t = Instant::now();
        let (status, up, _) = get(&c, addr, "a", "/").await;
        assert_eq!((status, up.as_str()), (StatusCode::OK, "app"));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a normal request took {:?}",
            t.elapsed()
        );
    }
    // Trickling does not extend the deadline: the header-read timeout closes them all.
    for s in slow.iter_mut().take(100) {
        let _ = s.write_all(b"a").await;
    }
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed())).await;
    let mut closed = 0;
    for s in &mut slow {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(
            Duration::from_millis(500),
            tokio::io::AsyncReadExt::read(s, &mut buf),
        )
        .await
        {
            Ok(Ok(_)) | Ok(Err(_)) => closed += 1,
            Err(_) => {}
        }
    }
    assert_eq!(
        closed, SLOW,
        "every slowloris connection is closed by the header-read timeout"
    );
    let (status, _, _) = get(&c, addr, "a", "/").await;
    assert_eq!(status, StatusCode::OK);
    proxy.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rapid_reset_is_cut_off() {
    let app = upstream("app").await;
    let proxy = start(&toml(&app.url(), "")).await;
    let addr = proxy.local_addr("web").unwrap();
    // h2 with prior knowledge on the plain entrypoint: open a stream and reset it at once,
    // over and over (CVE-2023-44487).
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut h2, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut sent = 0;
    for _ in 0..1000 {
        let req = http::Request::get(format!("http://{addr}/sleep/100"))
            .body(())
            .unwrap();
        let ready = match tokio::time::timeout(Duration::from_secs(2), h2.clone().ready()).await {
            Ok(Ok(r)) => r,
            _ => break,
        };
        h2 = ready;
        match h2.send_request(req, false) {
            Ok((_, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                sent += 1;
            }
            Err(_) => break,
        }
        tokio::task::yield_now().await;
    }
    // The server ends the connection (GOAWAY) long before 1000 resets.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    let Ok(Ok(result)) = ended else {
        panic!("the connection survived {sent} rapid resets")
    };
    let err = result.expect_err("the server closed the connection with an error");
    // Either the GOAWAY is read, or the client's next write hits the closed socket first.
    assert!(
        err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || err.is_io(),
        "unexpected end of the connection: {err}"
    );
    let hits = app.hits.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        hits < 200,
        "{hits} of {sent} reset streams reached the upstream"
    );
    // Everyone else is still served.
    let (status, up, _) = get(&client(), addr, "a", "/").await;
    assert_eq!((status, up.as_str()), (StatusCode::OK, "app"));
    proxy.shutdown(Duration::from_secs(2)).await;
}
