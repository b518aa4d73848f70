//! The crate's one error type.

use std::net::SocketAddr;

/// A configuration value that cannot be used, with the field path it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// Dotted field path, e.g. `services.api.endpoints[0].url`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// A new error about `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Errors of the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} (entrypoint `{entrypoint}`): {source}")]
    Bind {
        /// Entrypoint name (`admin` for the admin listener).
        entrypoint: String,
        /// Address we tried.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A reload tried to change something that needs a restart.
    #[error("{field}: {reason}")]
    NeedsRestart {
        /// Field path.
        field: String,
        /// Why.
        reason: String,
    },
    /// TLS set-up failed.
    #[error("TLS for entrypoint `{entrypoint}`: {reason}")]
    Tls {
        /// Entrypoint name.
        entrypoint: String,
        /// What failed.
        reason: String,
    },
}
