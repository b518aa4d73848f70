//! Challenge solvers: how this issuer proves control of a name to the CA.
//!
//! The order flow only sees the [`ChallengeSolver`] trait. HTTP-01 publishes the key
//! authorization in the shared `acme_store::challenge::Http01Registry` that every proxy replica (or the
//! controller's own challenge endpoint) serves under `/.well-known/acme-challenge/`. TLS-ALPN-01
//! registers the key authorization digest with `tls-acceptor`'s `tls_acceptor::AlpnChallenges`, which answers
//! `acme-tls/1` handshakes with a self-signed challenge certificate. DNS-01 is left to
//! implementors of the trait (a DNS provider API), who publish [`ChallengeData::dns_value`] at
//! `_acme-challenge.<domain>`.

use std::future::Future;
use std::pin::Pin;

/// A boxed future, as returned by the object-safe solver methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The challenge types of RFC 8555 and RFC 8737.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// `http-01`: a token served over plain HTTP on port 80.
    Http01,
    /// `tls-alpn-01`: a challenge certificate served for ALPN `acme-tls/1` on port 443.
    TlsAlpn01,
    /// `dns-01`: a TXT record at `_acme-challenge.<domain>`.
    Dns01,
}

impl ChallengeKind {
    /// The ACME name of the challenge type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::TlsAlpn01 => "tls-alpn-01",
            Self::Dns01 => "dns-01",
        }
    }

    /// The matching instant-acme challenge type.
    pub fn to_acme(self) -> instant_acme::ChallengeType {
        match self {
            Self::Http01 => instant_acme::ChallengeType::Http01,
            Self::TlsAlpn01 => instant_acme::ChallengeType::TlsAlpn01,
            Self::Dns01 => instant_acme::ChallengeType::Dns01,
        }
    }
}

impl std::str::FromStr for ChallengeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "http-01" | "http01" | "http" => Ok(Self::Http01),
            "tls-alpn-01" | "tlsalpn01" | "tls-alpn" => Ok(Self::TlsAlpn01),
            "dns-01" | "dns01" | "dns" => Ok(Self::Dns01),
            other => Err(format!(
                "unknown challenge type `{other}` (expected http-01, tls-alpn-01 or dns-01)"
            )),
        }
    }
}

/// Everything a solver needs for one challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeData {
    /// The identifier being validated (without any `*.` wildcard prefix).
    pub domain: String,
    /// The challenge token (HTTP-01 path component).
    pub token: String,
    /// `token.thumbprint`: the HTTP-01 response body.
    pub key_authorization: String,
    /// SHA-256 of the key authorization: the TLS-ALPN-01 `acmeIdentifier` extension value.
    pub digest: [u8; 32],
    /// base64url(SHA-256(key authorization)): the DNS-01 TXT record value.
    pub dns_value: String,
}

/// Proves control of a name for one challenge type.
pub trait ChallengeSolver: Send + Sync + 'static {
    /// The challenge type this solver answers.
    fn kind(&self) -> ChallengeKind;

    /// Make the response visible to the CA; resolves once it is served.
    fn present<'a>(&'a self, challenge: &'a ChallengeData) -> BoxFuture<'a, Result<(), String>>;

    /// Withdraw the response (after validation, success or failure).
    fn cleanup<'a>(&'a self, challenge: &'a ChallengeData) -> BoxFuture<'a, ()>;
}
