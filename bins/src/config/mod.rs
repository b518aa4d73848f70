//! Fairway's one TOML configuration schema, shared by every binary.
//!
//! Each concern has its own top-level section and its own module: the proxy's entrypoints,
//! routers, services, TLS and admin sections (`proxy`), ACME resolvers and wanted certificates
//! (`acme`), and VIP failover (`speaker`). A binary reads the sections it needs; every section is
//! validated with errors that name the file and the field path.

pub mod acme;
pub mod speaker;
