//! `ingress-proxy`: Fairway's HTTP data plane.
//!
//! HTTP/1.1 and h2 entrypoints (plain or TLS through [`tls_acceptor`]) on hyper, routing through
//! an [`ingress_router::Table`] per entrypoint, pooled upstream connections, load balancing
//! (round robin, weighted, least requests), passive and active health, limits on by default,
//! ACME HTTP-01 answers, Prometheus metrics and an admin API.
//!
//! # Shape
//! - [`ProxyConfig`] is the proxy's part of Fairway's TOML schema (`Deserialize`), validated by
//!   [`ProxyConfig::validate`] with errors naming the field path.
//! - [`Proxy::builder`] binds the listeners; [`Proxy::reload`] swaps in a new compiled snapshot
//!   atomically (or rejects it whole); [`Proxy::shutdown`] drains with a deadline.
//! - The request path reads one `arc-swap` snapshot per request; routes and services hold their
//!   metric handles, per-connection facts (client IP, scheme, port) are rendered once per
//!   connection, so a request takes no lock and few allocations.
//!
//! The library never reads the environment, installs signal handlers or prints; the
//! `fairway-proxy` binary does that.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ingress_proxy::ProxyError> {
//! let config: ingress_proxy::ProxyConfig = toml_like_config();
//! let proxy = ingress_proxy::Proxy::builder(config).start().await?;
//! println!("{:?}", proxy.local_addr("web"));
//! proxy.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! # fn toml_like_config() -> ingress_proxy::ProxyConfig { Default::default() }
//! ```

mod admin;
mod admin_api;
mod batching;
mod body;
mod clock;
pub mod config;
pub mod dashboard;
mod downstream;
mod error;
pub mod external;
mod forwarded;
mod framing;
mod handler;
mod metrics;
mod proxy;
pub mod reload;
mod respond;
mod runtime;
mod server;
pub mod upstream;

pub use body::{BoxError, ProxyBody};
pub use config::ProxyConfig;
pub use error::{ConfigError, ProxyError};
pub use external::ExternalRoutes;
pub use handler::ChallengeResponder;
pub use metrics::Metrics;
pub use proxy::{Proxy, ProxyBuilder};

/// Fuzzing hooks over private parsers, for the `fuzz/` targets only (non-default `fuzzing`
/// feature); not part of the supported API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzz_hooks.rs"]
pub mod __fuzz;
