//! Fairway's one TOML configuration schema, shared by every binary.
//!
//! Each concern has its own top-level section and its own module: the proxy's entrypoints,
//! routers, services, limits, TLS and admin sections ([`proxy`], [`tls`]; the section types
//! themselves live in [`ingress_proxy::config`]), ACME resolvers and wanted certificates
//! (`acme`), and VIP failover (`speaker`). A binary reads the sections it needs; every error
//! names the file and the field path.

pub mod acme;
pub mod kubernetes;
pub mod proxy;
pub mod speaker;
pub mod tls;

pub use proxy::{ConfigFile, ConfigFileError, load};
