//! [`Acceptor`]: turns an accepted socket into a [`Connection`] for plain and TLS entrypoints.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::{HandshakeKind, ProtocolVersion, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::challenge::{ACME_TLS_ALPN, AlpnChallenges};
use crate::error::{Error, Result};
use crate::settings::{ALPN_H2, ALPN_HTTP11};

/// Everything a TLS entrypoint needs per connection.
pub(crate) struct TlsEndpoint {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) refuse_acme: Arc<ServerConfig>,
    pub(crate) challenge_config: Arc<ServerConfig>,
    pub(crate) challenges: AlpnChallenges,
}

#[derive(Clone)]
enum Mode {
    Plain,
    Tls(Arc<TlsEndpoint>),
}

/// Accepts connections for one entrypoint: plain ones pass through, TLS ones are
/// handshaken (with a timeout) using the configuration chosen from the ClientHello.
/// Cheap to clone.
#[derive(Clone)]
pub struct Acceptor {
    mode: Mode,
    handshake_timeout: Duration,
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acceptor")
            .field("tls", &self.is_tls())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

/// The result of [`Acceptor::accept`].
#[derive(Debug)]
pub enum Accepted<IO = TcpStream> {
    /// A connection ready for HTTP.
    Connection(Connection<IO>),
    /// An acme-tls/1 validation handshake was answered with the challenge certificate for
    /// `server_name` and the connection closed; there is nothing to serve.
    AcmeChallenge {
        /// The name that was validated.
        server_name: String,
    },
}

impl Acceptor {
    /// An acceptor for a plain (non-TLS) entrypoint.
    pub fn plain() -> Self {
        Self {
            mode: Mode::Plain,
            handshake_timeout: Duration::from_secs(10),
        }
    }

    pub(crate) fn tls(endpoint: TlsEndpoint, handshake_timeout: Duration) -> Self {
        Self {
            mode: Mode::Tls(Arc::new(endpoint)),
            handshake_timeout,
        }
    }

    /// Overrides the handshake timeout.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Whether this entrypoint terminates TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.mode, Mode::Tls(_))
    }

    /// The rustls configuration of a TLS entrypoint.
    pub fn server_config(&self) -> Option<&Arc<ServerConfig>> {
        match &self.mode {
            Mode::Plain => None,
            Mode::Tls(e) => Some(&e.config),
        }
    }

    /// Accepts a TCP connection (the peer address is kept for errors and [`ConnectionInfo`]).
    pub async fn accept(&self, tcp: TcpStream) -> Result<Accepted<TcpStream>> {
        let peer = tcp.peer_addr().ok();
        // Handshake flights are small and latency-bound.
        let _ = tcp.set_nodelay(true);
        self.accept_io(tcp, peer).await
    }

    /// Accepts any byte stream (in-memory pipes in tests and benches, Unix sockets).
    pub async fn accept_io<IO>(&self, io: IO, peer: Option<SocketAddr>) -> Result<Accepted<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let endpoint = match &self.mode {
            Mode::Plain => {
                return Ok(Accepted::Connection(Connection {
                    stream: Stream::Plain(io),
                    info: ConnectionInfo {
                        peer,
                        ..ConnectionInfo::default()
                    },
                }));
            }
            Mode::Tls(e) => e,
        };
        let peer_str = || peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        match tokio::time::timeout(self.handshake_timeout, handshake(endpoint, io, peer)).await {
            Ok(Ok(accepted)) => Ok(accepted),
            Ok(Err(source)) => Err(Error::Handshake {
                peer: peer_str(),
                source,
            }),
            Err(_) => Err(Error::HandshakeTimeout {
                peer: peer_str(),
                timeout: self.handshake_timeout,
            }),
        }
    }
}

async fn handshake<IO>(
    endpoint: &TlsEndpoint,
    io: IO,
    peer: Option<SocketAddr>,
) -> io::Result<Accepted<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
    let hello = start.client_hello();
    let offers_acme = hello
        .alpn()
        .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
    let mut config = &endpoint.config;
    if offers_acme {
        if let Some(name) = hello.server_name()
            && endpoint.challenges.contains(name)
        {
            let server_name = name.to_owned();
            let mut tls = start.into_stream(endpoint.challenge_config.clone()).await?;
            // RFC 8737 §3: the validation connection carries no application data.
            let _ = tls.shutdown().await;
            tracing::debug!(server_name, "answered acme-tls/1 challenge");
            return Ok(Accepted::AcmeChallenge { server_name });
        }
        config = &endpoint.refuse_acme;
    }
    let tls = start.into_stream(config.clone()).await?;
    let (_, conn) = tls.get_ref();
    let info = ConnectionInfo {
        alpn: conn.alpn_protocol().map(Alpn::from_bytes),
        sni: conn.server_name().map(Box::from),
        version: conn.protocol_version(),
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
        peer,
    };
    Ok(Accepted::Connection(Connection {
        stream: Stream::Tls(Box::new(tls)),
        info,
    }))
}

/// The negotiated application protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alpn {
    /// `h2`.
    H2,
    /// `http/1.1`.
    Http11,
    /// Anything else the entrypoint was configured to offer.
    Other(Box<[u8]>),
}

impl Alpn {
    fn from_bytes(b: &[u8]) -> Self {
        match b {
            ALPN_H2 => Self::H2,
            ALPN_HTTP11 => Self::Http11,
            other => Self::Other(other.into()),
        }
    }

    /// The protocol id as sent on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::H2 => ALPN_H2,
            Self::Http11 => ALPN_HTTP11,
            Self::Other(b) => b,
        }
    }
}

/// Facts about an accepted connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    alpn: Option<Alpn>,
    sni: Option<Box<str>>,
    version: Option<ProtocolVersion>,
    resumed: bool,
    peer: Option<SocketAddr>,
}

impl ConnectionInfo {
    /// Negotiated ALPN protocol (`None` for plain connections or when none was agreed).
    pub fn alpn(&self) -> Option<&Alpn> {
        self.alpn.as_ref()
    }
    /// Server name the client sent (lowercase), if any.
    pub fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }
    /// TLS version (`None` for plain connections).
    pub fn tls_version(&self) -> Option<ProtocolVersion> {
        self.version
    }
    /// Whether the handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.resumed
    }
    /// Remote address, when known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }
    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.version.is_some()
    }
}

enum Stream<IO> {
    Plain(IO),
    Tls(Box<TlsStream<IO>>),
}

/// An accepted connection, plain or TLS; implements `AsyncRead + AsyncWrite`.
pub struct Connection<IO = TcpStream> {
    stream: Stream<IO>,
    info: ConnectionInfo,
}

impl<IO> fmt::Debug for Connection<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl<IO> Connection<IO> {
    /// Facts about the connection (ALPN, SNI, version, resumption, peer).
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }
    /// The underlying transport.
    pub fn get_ref(&self) -> &IO {
        match &self.stream {
            Stream::Plain(io) => io,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Connection<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Connection<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(io) => io.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(io) => Pin::new(io).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }
}
