//! A minimal HTTPS responder on top of `tls-acceptor`: every request on every connection
//! (keep-alive, pipelining) gets a fixed small HTTP/1.1 response. It measures and shows TLS
//! termination only (no routing, no proxying); `benches/scripts/tls-vs-nginx.sh` runs it
//! against nginx.
//!
//! ```text
//! cargo run --release -p tls-acceptor --example tls_hello -- \
//!     --listen 127.0.0.1:8443 [--cert cert.pem --key key.pem] [--threads 1] [--tickets 1]
//! ```
//! `--tickets 0` turns TLS 1.3 resumption off (every handshake is a full one).
//! Without `--cert`/`--key` it serves the generated `FAIRWAY DEFAULT CERT`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tls_acceptor::{ALPN_HTTP11, Accepted, Acceptor, DefaultCertificate, TlsContext, TlsSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nserver: fairway\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nHello, world\n";
/// Handshake counters, printed to stderr once a second while they change, so a benchmark can
/// check what kind of handshakes it measured.
static FULL: AtomicU64 = AtomicU64::new(0);
static RESUMED: AtomicU64 = AtomicU64::new(0);

const RESPONSE_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nserver: fairway\r\ncontent-type: text/plain\r\ncontent-length: 13\r\nconnection: close\r\n\r\nHello, world\n";

struct Args {
    listen: SocketAddr,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    threads: usize,
    tickets: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
        cert: None,
        key: None,
        threads: 1,
        tickets: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--cert" => args.cert = Some(value()?.into()),
            "--key" => args.key = Some(value()?.into()),
            "--tickets" => {
                args.tickets = value()?.parse().map_err(|e| format!("--tickets: {e}"))?
            }
            "--threads" => {
                args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let default_certificate = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => Some(DefaultCertificate::from_pem_files(c, k)?),
        (None, None) => None,
        _ => return Err("--cert and --key go together".into()),
    };
    let tls = TlsContext::new(TlsSettings {
        default_certificate,
        tls13_tickets: args.tickets,
        ..TlsSettings::default()
    })?;
    let acceptor = tls.acceptor(&[ALPN_HTTP11])?;
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        let listener = TcpListener::bind(args.listen).await?;
        eprintln!("tls_hello listening on https://{}", listener.local_addr()?);
        tokio::spawn(report_handshakes());
        loop {
            let (tcp, _) = listener.accept().await?;
            let acceptor = acceptor.clone();
            tokio::spawn(serve(acceptor, tcp));
        }
    })
}

async fn serve(acceptor: Acceptor, tcp: tokio::net::TcpStream) {
    let Ok(Accepted::Connection(mut conn)) = acceptor.accept(tcp).await else {
        return;
    };
    if conn.info().resumed() {
        RESUMED.fetch_add(1, Ordering::Relaxed);
    } else {
        FULL.fetch_add(1, Ordering::Relaxed);
    }
    let mut buf = vec![0u8; 8192];
    let mut out = Vec::with_capacity(RESPONSE.len() * 4);
    let mut filled = 0;
    loop {
        match conn.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        // Answer every complete request head in the buffer (pipelining), keep the rest.
        let mut answered = 0;
        out.clear();
        let mut close = false;
        while let Some(end) = find_head_end(&buf[answered..filled]) {
            let head = &buf[answered..answered + end];
            answered += end;
            if wants_close(head) {
                out.extend_from_slice(RESPONSE_CLOSE);
                close = true;
                break;
            }
            out.extend_from_slice(RESPONSE);
        }
        if !out.is_empty() && conn.write_all(&out).await.is_err() {
            return;
        }
        if close {
            let _ = conn.shutdown().await;
            return;
        }
        buf.copy_within(answered..filled, 0);
        filled -= answered;
        if filled == buf.len() {
            return; // a request head larger than 8 KiB: not this example's business
        }
    }
}

async fn report_handshakes() {
    let mut last = (0, 0);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = (
            FULL.load(Ordering::Relaxed),
            RESUMED.load(Ordering::Relaxed),
        );
        if now != last {
            eprintln!("handshakes: {} full, {} resumed", now.0, now.1);
            last = now;
        }
    }
}

/// `Connection: close` in the request head (any case), without allocating.
fn wants_close(head: &[u8]) -> bool {
    const NAME: &[u8] = b"connection:";
    head.split(|&b| b == b'\n').any(|line| {
        line.len() > NAME.len()
            && line[..NAME.len()].eq_ignore_ascii_case(NAME)
            && line[NAME.len()..]
                .windows(5)
                .any(|w| w.eq_ignore_ascii_case(b"close"))
    })
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}
