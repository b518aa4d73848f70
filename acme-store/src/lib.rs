//! A certificate store compatible with Traefik's `acme.json`.
//!
//! - [`format`](mod@format) reads every generation (legacy <= 1.5, 1.6-1.7, 2.x/3.x), detects it by value
//!   shape, keeps unknown fields, and writes byte-identical Go `MarshalIndent` output.
//! - [`AcmeDocument`] is the typed document; [`CertEntry`] a decoded, serving-ready certificate;
//!   [`Problem`] a stored entry that cannot be served (kept untouched on write).
//! - [`Snapshot`] is an immutable view with an [`SniIndex`]; stores publish new snapshots.
//! - [`CertStore`] is the store trait, implemented by [`FileStore`] (locked, atomic, watched file)
//!   and [`MemoryStore`], and later by a Kubernetes Secret store.
//! - [`challenge::Http01Registry`] holds pending HTTP-01 answers.
//!
//! ```
//! use acme_store::{CertStore, CertStoreExt, MemoryStore, StoredCert};
//! let store = MemoryStore::default();
//! store.modify(|doc| {
//!     let le = doc.resolvers.entry("le".into()).or_default();
//!     le.upsert(StoredCert::from_pem("example.com", &[], "not a pem", "not a key"));
//!     Ok(())
//! }).unwrap();
//! let snap = store.snapshot();
//! assert_eq!(snap.problems().len(), 1); // undecodable, reported with resolver and domain
//! assert!(snap.lookup("example.com", std::time::SystemTime::now()).is_none());
//! ```

pub mod challenge;
mod document;
mod entry;
mod error;
mod file_store;
pub mod format;
mod index;
mod memory_store;
mod snapshot;
mod store;

pub use document::{
    Account, AcmeDocument, DEFAULT_STORE, Domain, Fields, Format, ResolverData, StoredCert,
    V1_RESOLVER, V1Extras, decode_base64,
};
pub use entry::{CertEntry, KeyType, PrivateKey, Problem, ProblemKind, pem_encode};
pub use error::{Error, FormatError};
pub use file_store::{FileStore, FileStoreOptions, Migration, check_permissions, write_atomic};
pub use format::json::Value;
pub use index::{SniIndex, SniIndexBuilder};
pub use memory_store::MemoryStore;
pub use snapshot::Snapshot;
pub use store::{CertStore, CertStoreExt, UpdateFn};
