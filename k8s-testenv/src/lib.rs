//! A real etcd + kube-apiserver for tests, on free loopback ports.
//!
//! The binaries are built from pinned Go modules by `scripts/build-kube-testbin.sh` into
//! `${FAIRWAY_KUBE_BIN:-$HOME/.cache/fairway-kube/bin}` (keyed by version). A missing binary is an
//! error with a message naming that script: tests must fail, never skip silently.
//!
//! [`ApiServer::shared`] starts one control plane per test binary (the start costs ~5–15 s) and hands
//! it to every test; each test builds its own [`kube::Client`] (a client belongs to the tokio
//! runtime that first used it) and works in a fresh namespace from [`ApiServer::fresh_namespace`],
//! because there is no controller-manager to finalize deleted namespaces.
//!
//! The children are started through `setpriv --pdeathsig KILL` from a thread that lives as long as
//! the process, so they die with the test binary even though a `static` is never dropped.

mod binaries;
mod certs;
mod error;
pub mod fixtures;
mod server;

pub use binaries::{ETCD_VERSION, KUBE_VERSION, KubeBinaries};
pub use error::Error;
pub use server::ApiServer;
