//! `acme-issuer`: ACME issuance that is safe with many replicas.
//!
//! Exactly one replica issues at a time (a [`LeaderElector`] gates the [`Issuer`] loop); any
//! proxy replica answers the challenges (HTTP-01 tokens go into the shared
//! `acme_store::challenge::Http01Registry`, TLS-ALPN-01 certificates into `tls-acceptor`'s
//! `AlpnChallenges`); a new leader resumes an interrupted order from the store instead of starting
//! over. The ACME protocol is instant-acme 0.8.5, pinned behind this crate.
//!
//! Layout: [`policy`] holds the pure rules (renewal, backoff, order budget) with time as a
//! parameter; [`order`] runs one order; [`issuer`] is the loop; [`store`] is the storage seam
//! (implemented for `acme.json` by [`AcmeJsonStore`]); [`elector`] and [`challenge`] are the
//! leadership and challenge seams; [`client`] bounds every ACME call and captures `Retry-After`.
//!
//! Binaries must install one process-wide rustls `CryptoProvider` (aws-lc-rs) before using the
//! platform-roots client: kube and instant-acme both pull rustls 0.23.

pub mod account;
mod acme_json;
pub mod challenge;
pub mod client;
pub mod elector;
mod error;
pub mod http01;
pub mod issuer;
pub mod key;
pub mod metrics;
pub mod order;
pub mod policy;
pub mod solvers;
pub mod store;

pub use account::Eab;
pub use acme_json::AcmeJsonStore;
pub use challenge::{ChallengeData, ChallengeKind, ChallengeSolver};
pub use client::AcmeHttp;
pub use elector::{AlwaysLeader, FileLockElector, LeaderElector, Leadership};
pub use error::{Error, Step};
pub use issuer::{
    CertStatus, Issuer, IssuerOptions, IssuerParts, IssuerStatus, ResolverSettings, WantedCert,
};
pub use key::{CertKeyType, SecretPem};
pub use solvers::{Http01Solver, TlsAlpn01Solver};
pub use store::{IssuerStore, MemoryIssuerStore};
