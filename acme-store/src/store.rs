//! The store abstraction shared by the file, memory and (later) Kubernetes Secret backends.

use std::sync::Arc;

use tokio::sync::watch;

use crate::document::AcmeDocument;
use crate::error::Error;
use crate::snapshot::Snapshot;

/// The change function passed to [`CertStore::update`]. It may run more than once (a backend
/// retries on a concurrent change), so it must only depend on the document it is given.
pub type UpdateFn<'a> = dyn FnMut(&mut AcmeDocument) -> Result<(), Error> + 'a;

/// A certificate store: a current snapshot, change notifications, and locked read-modify-write.
///
/// Readers on the TLS hot path call [`snapshot`](CertStore::snapshot) (an atomic pointer load)
/// or hold a [`subscribe`](CertStore::subscribe) receiver and rebuild their own structures when
/// it changes. Writers (the ACME issuer, `fairway acme import`) call [`update`](CertStore::update),
/// which applies the change to the *latest* stored document — re-read under the backend's
/// concurrency control — so two writers never lose each other's changes.
///
/// # Implementing a Kubernetes Secret backend
/// `k8s-glue` can implement this trait over a Secret holding `acme.json` under one data key:
/// - keep a `Publisher`-like pair of `ArcSwap<Snapshot>` + `watch::Sender` fed by a Secret
///   watch (`kube::runtime::watcher`), building snapshots with [`Snapshot::build`] from
///   [`AcmeDocument::parse`] of the data key (other replicas' writes arrive the same way);
/// - `update`: GET the Secret, parse, run `f`, serialise with [`AcmeDocument::to_json`], and
///   PUT with the `resourceVersion` read; on `409 Conflict` start again from the GET (this is why
///   `f` is `FnMut`). The call is blocking, like the file store's: async callers use
///   `spawn_blocking` or a blocking handle to their runtime.
pub trait CertStore: Send + Sync {
    /// The current snapshot (lock-free).
    fn snapshot(&self) -> Arc<Snapshot>;

    /// A receiver that sees every new snapshot (always holding the latest).
    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>>;

    /// Applies `f` to the latest document under the store's lock and persists the result. Returns
    /// the snapshot published for it. When `f` fails nothing is written. When `f` leaves the
    /// document unchanged nothing is written and the current snapshot is returned.
    fn update(&self, f: &mut UpdateFn<'_>) -> Result<Arc<Snapshot>, Error>;
}

/// Convenience for calling [`CertStore::update`] with a closure.
pub trait CertStoreExt: CertStore {
    /// Like [`CertStore::update`], taking the closure by value.
    fn modify<F>(&self, mut f: F) -> Result<Arc<Snapshot>, Error>
    where
        F: FnMut(&mut AcmeDocument) -> Result<(), Error>,
    {
        self.update(&mut f)
    }
}

impl<S: CertStore + ?Sized> CertStoreExt for S {}
