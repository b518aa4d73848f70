//! The HTTP/1.1 upstream connection pool: one per endpoint, holding inline connections
//! ([`super::h1conn`], requests without a body) and `hyper::client::conn::http1` connections
//! (requests with a body, upgrades).
//!
//! Why not hyper-util's legacy `Client` for HTTP/1.1: per request it hashes a pool key built
//! from an absolute URI, races a checkout against a lazy connect, and, once the response head
//! arrives, spawns one more task that waits for the connection to become ready again before it
//! goes back to the pool. Here the pool lives in the [`Endpoint`](super::Endpoint) (no key, no
//! lookup), a connection is taken with one uncontended lock and goes back when the response
//! body ends ([`ResponseGuard`]), without any extra task. The connection task itself is still
//! spawned once per connection (hyper's `Connection` future), not per request.
//!
//! The legacy client is kept for h2c upstreams (shared, multiplexed connections) and for active
//! health checks.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::endpoint::InflightGuard;
use super::h1codec::{OutgoingRequest, ResponseHead};
use super::h1conn::InlineConn;
use crate::body::ProxyBody;
use crate::clock::coarse_now;

/// Idle connections kept per endpoint at most (as the legacy client's `pool_max_idle_per_host`).
const MAX_IDLE: usize = 1024;

/// Why sending to an endpoint failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No TCP connection could be made (or the HTTP/1.1 handshake failed): safe to retry.
    Connect(std::io::Error),
    /// The request was (maybe partly) sent, or the response was bad.
    Http(hyper::Error),
    /// From the legacy client (h2c upstreams).
    Legacy(hyper_util::client::legacy::Error),
    /// An inline connection ([`super::h1conn`]) failed after it was made.
    Io(std::io::Error),
    /// No response head within the response timeout.
    Timeout,
}

impl SendError {
    /// An inline connection's error once the connection is made: a missed deadline (and a
    /// socket's own `ETIMEDOUT`, which means the same to the client: no answer in time) is
    /// [`SendError::Timeout`], answered with 504; anything else [`SendError::Io`].
    fn after_connect(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::TimedOut {
            SendError::Timeout
        } else {
            SendError::Io(e)
        }
    }

    /// Whether the request never left (the connection could not be made).
    pub(crate) fn is_connect(&self) -> bool {
        match self {
            SendError::Connect(_) => true,
            SendError::Http(_) => false,
            SendError::Legacy(e) => e.is_connect(),
            SendError::Io(_) | SendError::Timeout => false,
        }
    }

    /// The underlying error, for cause inspection.
    pub(crate) fn as_error(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Connect(e) => Some(e),
            SendError::Http(e) => Some(e),
            SendError::Legacy(e) => Some(e),
            SendError::Io(e) => Some(e),
            SendError::Timeout => None,
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::Http(e) => write!(f, "{e}"),
            SendError::Legacy(e) => write!(f, "{e}"),
            SendError::Timeout => f.write_str("no response head within the response timeout"),
            SendError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// A connection that can wait in a pool.
pub(crate) trait Pooled: Send + 'static {
    /// Whether it is known to be unusable.
    fn is_closed(&self) -> bool;
}

impl Pooled for SendRequest<ProxyBody> {
    fn is_closed(&self) -> bool {
        SendRequest::is_closed(self)
    }
}

impl Pooled for InlineConn {
    fn is_closed(&self) -> bool {
        // Checked when taken ([`InlineConn::looks_alive`]); the reaper only enforces expiry.
        false
    }
}

struct IdleConn<C> {
    conn: C,
    expires: Instant,
}

struct PoolState<C> {
    /// Most recently returned last (taken LIFO: the warmest connection first).
    idle: Vec<IdleConn<C>>,
    /// Whether a reaper task is closing expired idle connections.
    reaping: bool,
}

impl<C> Default for PoolState<C> {
    fn default() -> Self {
        Self {
            idle: Vec::new(),
            reaping: false,
        }
    }
}

/// Idle connections of one kind, with their expiry.
struct IdlePool<C> {
    state: Arc<Mutex<PoolState<C>>>,
}

impl<C> Default for IdlePool<C> {
    fn default() -> Self {
        Self {
            state: Arc::default(),
        }
    }
}

impl<C: Pooled> IdlePool<C> {
    fn len(&self) -> usize {
        lock(&self.state).idle.len()
    }

    fn take(&self) -> Option<C> {
        let now = coarse_now();
        let mut state = lock(&self.state);
        while let Some(c) = state.idle.pop() {
            if c.expires > now && !c.conn.is_closed() {
                return Some(c.conn);
            }
        }
        None
    }

    fn put(&self, conn: C, idle_timeout: Duration) {
        if conn.is_closed() {
            return;
        }
        let expires = coarse_now() + idle_timeout;
        let start_reaper = {
            let mut state = lock(&self.state);
            if state.idle.len() >= MAX_IDLE {
                return;
            }
            state.idle.push(IdleConn { conn, expires });
            !std::mem::replace(&mut state.reaping, true)
        };
        if start_reaper {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(reap(Arc::downgrade(&self.state)));
                }
                Err(_) => lock(&self.state).reaping = false,
            }
        }
    }
}

/// Idle HTTP/1.1 connections to one endpoint: hyper client connections (requests with a
/// body, upgrades) and inline ones (everything else).
#[derive(Default)]
pub(crate) struct H1Pool {
    hyper: IdlePool<SendRequest<ProxyBody>>,
    inline: IdlePool<InlineConn>,
}

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Pool")
            .field("idle", &self.idle_count())
            .finish()
    }
}

impl H1Pool {
    /// Idle connections currently held (both kinds).
    pub(crate) fn idle_count(&self) -> usize {
        self.hyper.len() + self.inline.len()
    }

    fn take(&self) -> Option<SendRequest<ProxyBody>> {
        self.hyper.take()
    }

    /// Returns a connection whose last response has been read completely.
    pub(crate) fn put(&self, tx: SendRequest<ProxyBody>, idle_timeout: Duration) {
        self.hyper.put(tx, idle_timeout);
    }

    /// Returns an inline connection whose last response has been read completely.
    pub(crate) fn put_inline(&self, conn: InlineConn, idle_timeout: Duration) {
        self.inline.put(conn, idle_timeout);
    }

    /// Sends a request without a body on an idle inline connection, or on a new one to
    /// `authority`, and reads the response head. A reused connection that turns out stale
    /// (closed by the upstream while idle: nothing at all came back) is skipped and the request
    /// sent again on the next one, but only for an idempotent method; a fresh connection's
    /// failure is reported.
    pub(crate) async fn send_inline(
        &self,
        authority: &Authority,
        connect_timeout: Duration,
        deadline: tokio::time::Instant,
        req: &OutgoingRequest<'_>,
    ) -> Result<(ResponseHead, InlineConn), SendError> {
        let idempotent = super::service::is_idempotent(req.method);
        while let Some(mut conn) = self.inline.take() {
            if !conn.looks_alive() {
                continue;
            }
            match conn.request(req, deadline).await {
                Ok(head) => return Ok((head, conn)),
                Err(e) if e.nothing_received && idempotent => {
                    tracing::debug!(error = %e.error, "stale pooled upstream connection; retrying");
                }
                Err(e) => return Err(SendError::after_connect(e.error)),
            }
        }
        // Boxed: connecting is the rare case, and its state would size every request's future.
        let connect = Box::pin(InlineConn::connect(authority, connect_timeout));
        let mut conn = match tokio::time::timeout_at(deadline, connect).await {
            Ok(conn) => conn?,
            Err(_) => return Err(SendError::Timeout),
        };
        match conn.request(req, deadline).await {
            Ok(head) => Ok((head, conn)),
            Err(e) => Err(SendError::after_connect(e.error)),
        }
    }

    /// Sends `req` (origin-form URI) on an idle connection, or on a new one to `authority`.
    /// A pooled connection that turns out closed before the request was written is skipped
    /// (the stale keep-alive race), so only a fresh connection's failure is reported.
    /// Returns the response and the connection, to be given back with [`H1Pool::put`] once the
    /// response body has ended.
    pub(crate) async fn send(
        &self,
        authority: &Authority,
        connect_timeout: Duration,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, SendRequest<ProxyBody>), SendError> {
        while let Some(mut tx) = self.take() {
            // A connection given back at the end of a body may still be finishing that
            // response inside its task.
            if !tx.is_ready() && tx.ready().await.is_err() {
                continue;
            }
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok((resp, tx)),
                Err(mut e) => match e.take_message() {
                    Some(r) => req = r,
                    None => return Err(SendError::Http(e.into_error())),
                },
            }
        }
        let mut tx = connect(authority, connect_timeout).await?;
        match tx.send_request(req).await {
            Ok(resp) => Ok((resp, tx)),
            Err(e) => Err(SendError::Http(e)),
        }
    }
}

fn lock<C>(state: &Mutex<PoolState<C>>) -> std::sync::MutexGuard<'_, PoolState<C>> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Closes expired idle connections until the pool is empty (then a later `put` starts a new
/// reaper), so the idle timeout holds even when traffic stops.
async fn reap<C: Pooled>(state: Weak<Mutex<PoolState<C>>>) {
    loop {
        let next = {
            let Some(state) = state.upgrade() else { return };
            let now = coarse_now();
            let mut s = lock(&state);
            s.idle.retain(|c| c.expires > now && !c.conn.is_closed());
            match s.idle.iter().map(|c| c.expires).min() {
                Some(next) => next,
                None => {
                    s.reaping = false;
                    return;
                }
            }
        };
        // Batch expiries a little: one wake-up per 50 ms at most.
        tokio::time::sleep_until(next.max(Instant::now() + Duration::from_millis(50))).await;
    }
}

/// Dials `authority` with `TCP_NODELAY` on, within `timeout`.
pub(crate) async fn dial(authority: &Authority, timeout: Duration) -> Result<TcpStream, SendError> {
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = authority.port_u16().unwrap_or(80);
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(SendError::Connect(e)),
        Err(_) => {
            return Err(SendError::Connect(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connect to {authority} timed out after {timeout:?}"),
            )));
        }
    };
    tcp.set_nodelay(true).map_err(SendError::Connect)?;
    Ok(tcp)
}

/// Dials `authority` and starts hyper's connection task.
async fn connect(
    authority: &Authority,
    timeout: Duration,
) -> Result<SendRequest<ProxyBody>, SendError> {
    let tcp = dial(authority, timeout).await?;
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| SendError::Connect(std::io::Error::other(e)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(tx)
}

/// Keeps a response counted as in flight at its endpoint and holds its HTTP/1.1 connection
/// until the body ends: then the connection goes back to the endpoint's pool. Dropped before
/// the end (client gone, error), the connection is closed, never reused mid-response.
#[derive(Debug)]
pub(crate) struct ResponseGuard {
    inflight: InflightGuard,
    conn: Option<(SendRequest<ProxyBody>, Duration)>,
}

impl ResponseGuard {
    pub(crate) fn new(
        inflight: InflightGuard,
        conn: Option<(SendRequest<ProxyBody>, Duration)>,
    ) -> Self {
        Self { inflight, conn }
    }

    /// The response body ended cleanly: the connection can serve the next request.
    pub(crate) fn body_done(&mut self) {
        if let Some((tx, idle)) = self.conn.take() {
            self.inflight.endpoint().h1_pool().put(tx, idle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A minimal keep-alive upstream that counts the connections it accepted.
    async fn upstream() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut have = Vec::new();
                    loop {
                        let Ok(n) = s.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        have.extend_from_slice(&buf[..n]);
                        while let Some(i) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                            have.drain(..i + 4);
                            let r = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(r).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get() -> Request<ProxyBody> {
        Request::get("/").body(ProxyBody::empty()).unwrap()
    }

    #[tokio::test]
    async fn reuses_a_connection_after_the_body_ends() {
        use http_body_util::BodyExt;
        let (addr, accepted) = upstream().await;
        let authority: Authority = addr.to_string().parse().unwrap();
        let pool = H1Pool::default();
        for _ in 0..5 {
            let (resp, tx) = pool
                .send(&authority, Duration::from_secs(5), get())
                .await
                .unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
            pool.put(tx, Duration::from_secs(30));
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn expired_idle_connections_are_closed() {
        let (addr, accepted) = upstream().await;
        let authority: Authority = addr.to_string().parse().unwrap();
        let pool = H1Pool::default();
        let (resp, tx) = pool
            .send(&authority, Duration::from_secs(5), get())
            .await
            .unwrap();
        drop(resp);
        pool.put(tx, Duration::from_millis(1));
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.idle_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            pool.idle_count(),
            0,
            "the reaper closes expired connections"
        );
        let (_resp, _tx) = pool
            .send(&authority, Duration::from_secs(5), get())
            .await
            .unwrap();
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connect_failure_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let authority: Authority = addr.to_string().parse().unwrap();
        let err = H1Pool::default()
            .send(&authority, Duration::from_secs(5), get())
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err}");
    }
}
