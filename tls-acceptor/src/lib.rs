//! TLS termination for Fairway: rustls 0.23 (aws-lc-rs), TLS 1.2 and 1.3 with AEAD suites
//! only, certificates chosen by SNI from an [`acme_store`] snapshot, ACME `tls-alpn-01`
//! (RFC 8737) answered on `acme-tls/1`, and certificate rotation without a failed handshake.
//!
//! # Shape
//! - [`TlsContext`] is built once per process from [`TlsSettings`]. It owns the
//!   [`CertResolver`], the acme-tls/1 [`AlpnChallenges`], one session cache and uses the one
//!   process-wide ticketer ([`process_ticketer`]), so sessions resume across entrypoints,
//!   certificate rotations and configuration reloads.
//! - Snapshots from the store reach the resolver through [`TlsContext::watch`] (or
//!   [`TlsContext::apply_snapshot`]); certificates are parsed there, off the handshake path,
//!   and published with `arc-swap`.
//! - [`TlsContext::acceptor`] gives one [`Acceptor`] per TLS entrypoint (its own ALPN list);
//!   [`Acceptor::plain`] serves plain entrypoints through the same [`Connection`] type.
//!
//! ```no_run
//! # async fn demo(listener: tokio::net::TcpListener) -> Result<(), tls_acceptor::Error> {
//! use tls_acceptor::{Accepted, TlsContext, TlsSettings, ALPN_H2, ALPN_HTTP11};
//! let tls = TlsContext::new(TlsSettings::default())?;
//! let acceptor = tls.acceptor(&[ALPN_H2, ALPN_HTTP11])?;
//! let (tcp, _) = listener.accept().await.expect("accept");
//! if let Accepted::Connection(conn) = acceptor.accept(tcp).await? {
//!     println!("alpn={:?} sni={:?}", conn.info().alpn(), conn.info().sni());
//! }
//! # Ok(()) }
//! ```

mod acceptor;
mod challenge;
mod context;
mod error;
mod index;
mod provider;
mod resolver;
mod serving;
mod settings;
mod store;

pub use acceptor::{Accepted, Acceptor, Alpn, Connection, ConnectionInfo};
pub use challenge::{ACME_TLS_ALPN, AlpnChallenges};
pub use context::{TlsContext, process_ticketer};
pub use error::{Error, Result};
pub use provider::provider;
pub use resolver::{CertResolver, RebuildReport};
pub use serving::{CertOrigin, KeyFamily, ServingCert};
pub use settings::{ALPN_H2, ALPN_HTTP11, DefaultCertificate, TlsSettings};

#[cfg(test)]
mod testutil;
