//! The crate's one error type.

use std::io;
use std::time::Duration;

/// Everything that can go wrong while building TLS configurations or accepting connections.
///
/// Messages name the domain, file or peer they are about. They never contain key material:
/// key-parsing errors from rustls describe the *kind* of problem only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A certificate or key could not be turned into a serving certificate.
    #[error("certificate for {domain}: {reason}")]
    Certificate {
        /// The main domain of the certificate (or `default` for the default certificate).
        domain: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A PEM file given for the default certificate could not be read or parsed.
    #[error("default certificate {path}: {reason}")]
    DefaultCertificateFile {
        /// The file that failed.
        path: String,
        /// Why.
        reason: String,
    },
    /// Generating a self-signed certificate (default or acme-tls/1 challenge) failed.
    #[error("generating a self-signed certificate for {domain}: {reason}")]
    Generate {
        /// The name the certificate was for.
        domain: String,
        /// The rcgen error.
        reason: String,
    },
    /// A domain name given to the API is not a valid DNS name.
    #[error("invalid domain name {0:?}")]
    InvalidDomain(String),
    /// rustls refused a configuration (for example an empty protocol list).
    #[error("building the rustls configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The TLS handshake did not finish within the configured timeout.
    #[error("TLS handshake with {peer} did not finish within {timeout:?}")]
    HandshakeTimeout {
        /// The remote address, or `unknown`.
        peer: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The TLS handshake failed (bad ClientHello, unknown name with `sni_strict`, protocol
    /// version refused, I/O error).
    #[error("TLS handshake with {peer} failed: {source}")]
    Handshake {
        /// The remote address, or `unknown`.
        peer: String,
        /// The underlying error (rustls errors arrive wrapped in `io::Error`).
        #[source]
        source: io::Error,
    },
}

/// Short alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
