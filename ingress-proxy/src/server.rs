//! Listeners and connections: accept, TLS, HTTP/1.1 + h2 serving, idle timeout, drain.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tls_acceptor::{Accepted, Acceptor};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::clock::now_ms;
use crate::config::Limits;
use crate::downstream::h1conn::{self, Control, Outcome};
use crate::downstream::rewind::Rewind;
use crate::forwarded::{ConnFacts, canonical_ip};
use crate::framing::FramingScanner;
use crate::handler::{ChallengeResponder, ConnCtx, handle};
use crate::metrics::{EntrypointMetrics, Metrics};
use crate::runtime::Runtime;

/// State shared by every connection of the process.
pub(crate) struct Shared {
    pub(crate) runtime: ArcSwap<Runtime>,
    pub(crate) challenges: Option<Arc<dyn ChallengeResponder>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    pub(crate) drain: watch::Sender<bool>,
    pub(crate) ready: AtomicBool,
    /// Admin dashboard bookkeeping (token, certificates, reload log).
    pub(crate) dashboard: crate::admin_api::DashboardState,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The HTTP/1.1 + h2 connection builder with Fairway's limits.
pub(crate) fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.h2_max_local_error_reset_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    b
}

/// One bound entrypoint.
pub(crate) struct EntrypointServer {
    pub(crate) index: usize,
    pub(crate) listener: TcpListener,
    pub(crate) acceptor: Acceptor,
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(crate) connections: Arc<Semaphore>,
    pub(crate) metrics: EntrypointMetrics,
}

impl EntrypointServer {
    /// Accepts until the drain signal.
    pub(crate) async fn run(self, shared: Arc<Shared>) {
        let mut drain = shared.drain.subscribe();
        loop {
            let accepted = tokio::select! {
                r = self.listener.accept() => r,
                _ = drain.changed() => break,
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "connection limit reached; closing");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let shared = shared.clone();
            let acceptor = self.acceptor.clone();
            let builder = self.builder.clone();
            let metrics = self.metrics.clone();
            let index = self.index;
            tokio::spawn(async move {
                let _permit = permit;
                serve_connection(shared, index, tcp, peer, acceptor, builder, metrics).await;
            });
        }
    }
}

struct OpenGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    index: usize,
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Acceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    metrics: EntrypointMetrics,
) {
    metrics.open_connections.inc();
    let _open = OpenGuard(metrics.open_connections.clone());
    let local_port = tcp.local_addr().map_or(0, |a| a.port());
    let conn = match acceptor.accept(tcp).await {
        Ok(Accepted::Connection(c)) => {
            if acceptor.is_tls() {
                metrics.tls_ok.inc();
            }
            c
        }
        Ok(Accepted::AcmeChallenge { .. }) => {
            metrics.tls_ok.inc();
            return;
        }
        Err(e) => {
            metrics.tls_failed.inc();
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
    };
    let facts = {
        let rt = shared.runtime.load();
        ConnFacts::new(peer, local_port, acceptor.is_tls(), &rt.trusted_proxies)
    };
    let ctx = Arc::new(ConnCtx {
        entrypoint: index,
        client_ip: canonical_ip(peer.ip()),
        facts,
        smuggling: AtomicBool::new(false),
    });
    let activity = Arc::new(AtomicU64::new(now_ms()));
    let mut io = Tracked {
        io: conn,
        activity: activity.clone(),
        // The inline loop parses every request head itself and hands anything with a body to
        // hyper, so the scanner starts only at a hand-off (see `follow_framing_from`).
        scanner: None,
        ctx: ctx.clone(),
    };
    let mut drain = shared.drain.subscribe();
    let idle_ms = shared.limits.idle_timeout.as_millis() as u64;
    let idle = tokio::time::sleep(shared.limits.idle_timeout);
    tokio::pin!(idle);
    let mut watch = Supervisor {
        drain: &mut drain,
        idle: idle.as_mut(),
        activity: &activity,
        idle_ms,
    };
    // HTTP/1.1 requests without a body are served inline, until one needs hyper.
    let control = Control::default();
    let inline = h1conn::serve(&mut io, &shared, &ctx, &control);
    let prefix = match watch.run(inline, |_| control.close_soon()).await {
        None | Some(Outcome::Closed) => return,
        Some(Outcome::Handoff(prefix)) => prefix,
    };
    io.follow_framing_from(&prefix);
    let io = TokioIo::new(Rewind::new(prefix, io));
    let svc_shared = shared.clone();
    let svc = service_fn(move |req| {
        // Mapped rather than awaited in an `async` block, which would hold the request again.
        handle(svc_shared.clone(), ctx.clone(), req).map(Ok::<_, Infallible>)
    });
    let conn = builder.serve_connection_with_upgrades(io, svc);
    let ended = watch
        .run(conn, |conn| {
            conn.graceful_shutdown();
            false
        })
        .await;
    if let Some(Err(e)) = ended {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Watches one connection's drain signal and idle timeout while its serving future runs.
struct Supervisor<'a> {
    drain: &'a mut watch::Receiver<bool>,
    idle: Pin<&'a mut tokio::time::Sleep>,
    activity: &'a AtomicU64,
    idle_ms: u64,
}

impl Supervisor<'_> {
    /// Polls `fut` to its end. On a drain or the idle timeout, `shut` is called once: it starts
    /// a graceful close and returns whether the future may be dropped at once (nothing in
    /// flight), in which case the result is `None`.
    ///
    /// The drain signal and the idle timer are polled with their own waker ([`Watchers`]) and
    /// only after it fired: the connection's task is woken several times per request (socket
    /// readiness, the write batching of [`crate::batching`]), and polling both watchers on each
    /// wake-up cost more than the request's routing.
    ///
    /// Returns its future rather than being an `async fn`, which would hold `fut` twice in its
    /// state (rust-lang/rust#62958): this state is most of every connection's task.
    #[allow(clippy::manual_async_fn)] // `fut` once in the state, not twice
    fn run<F: Future>(
        &mut self,
        fut: F,
        mut shut: impl FnMut(Pin<&mut F>) -> bool,
    ) -> impl Future<Output = Option<F::Output>> {
        async move {
            tokio::pin!(fut);
            let mut closing = *self.drain.borrow();
            if closing && shut(fut.as_mut()) {
                return None;
            }
            let Supervisor {
                drain,
                idle,
                activity,
                idle_ms,
            } = self;
            let idle_ms = *idle_ms;
            // Kept across polls: dropping it would drop its registration with the sender.
            let changed = drain.changed();
            tokio::pin!(changed);
            let watchers = Arc::new(Watchers::default());
            let watchers_waker = std::task::Waker::from(watchers.clone());
            // Set: poll the watchers on the next wake-up (the first one registers them).
            watchers.fired.store(true, Ordering::Relaxed);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                    return Poll::Ready(Some(out));
                }
                if closing {
                    return Poll::Pending;
                }
                watchers.task.register(cx.waker());
                if !watchers.fired.swap(false, Ordering::AcqRel) {
                    return Poll::Pending;
                }
                let mut wcx = Context::from_waker(&watchers_waker);
                // A closed sender (the server is gone) counts as a drain.
                let mut stop = changed.as_mut().poll(&mut wcx).is_ready();
                while !stop && idle.as_mut().poll(&mut wcx).is_ready() {
                    let elapsed = now_ms().saturating_sub(activity.load(Ordering::Relaxed));
                    if elapsed >= idle_ms {
                        stop = true;
                    } else {
                        idle.as_mut().reset(
                            tokio::time::Instant::now() + Duration::from_millis(idle_ms - elapsed),
                        );
                    }
                }
                if stop {
                    closing = true;
                    if shut(fut.as_mut()) {
                        return Poll::Ready(None);
                    }
                    // The future finishes on its own now; poll it again at once in case the
                    // close made progress possible.
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            })
            .await
        }
    }
}

/// The waker of a connection's drain signal and idle timer: notes that one of them fired and
/// wakes the connection's task.
#[derive(Default)]
struct Watchers {
    fired: AtomicBool,
    task: futures_util::task::AtomicWaker,
}

impl std::task::Wake for Watchers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Records the time of the last read or write, for the idle timeout (one relaxed store), and,
/// once the inline loop has handed the connection to hyper, runs the HTTP/1.1 framing scanner
/// over what the client sends (the inline loop refuses to serve `Transfer-Encoding` itself, so
/// every request the scanner must judge reaches hyper).
struct Tracked<IO> {
    io: IO,
    activity: Arc<AtomicU64>,
    scanner: Option<FramingScanner>,
    ctx: Arc<ConnCtx>,
}

impl<IO> Tracked<IO> {
    fn touch(&self) {
        self.activity.store(now_ms(), Ordering::Relaxed);
    }

    /// Starts the framing scanner for hyper's part of the connection: `prefix` is what the
    /// inline loop read but did not serve (it starts at a request head), and everything read
    /// from here on follows it.
    fn follow_framing_from(&mut self, prefix: &[u8]) {
        let mut scanner = FramingScanner::new();
        scanner.feed(prefix);
        self.note(scanner);
    }

    fn note(&mut self, scanner: FramingScanner) {
        if scanner.flagged() {
            self.ctx.smuggling.store(true, Ordering::Relaxed);
        }
        self.scanner = scanner.active().then_some(scanner);
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
            if let Some(mut scanner) = this.scanner.take() {
                scanner.feed(&buf.filled()[before..]);
                this.note(scanner);
            }
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
