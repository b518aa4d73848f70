//! The seam to `acme-store`: snapshots in, certificate inputs out.

use std::sync::Arc;

use acme_store::{CertEntry, Snapshot};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::context::TlsContext;
use crate::resolver::{Problem, RebuildReport};
use crate::serving::{CertInput, CertOrigin};

fn input(entry: &CertEntry) -> CertInput<'_> {
    CertInput {
        origin: CertOrigin {
            resolver: entry.resolver().to_owned(),
            main: entry.main().to_owned(),
        },
        names: entry.names().to_vec(),
        chain: entry.chain(),
        key: entry.key().der(),
        not_before: entry.not_before(),
        not_after: entry.not_after(),
        serial_hex: entry.serial_hex().to_owned(),
    }
}

impl TlsContext {
    /// Rebuilds the resolver from `snapshot` (synchronously; parses only new or changed
    /// certificates). Entries the store reports as problems, and entries rustls cannot use,
    /// keep serving their last good certificate.
    pub fn apply_snapshot(&self, snapshot: &Snapshot) -> RebuildReport {
        let inputs = snapshot.entries().iter().map(|e| input(e)).collect();
        let problems = snapshot
            .problems()
            .iter()
            .map(|p| Problem {
                resolver: p.resolver.clone(),
                domain: p.domain.clone(),
                reason: p.kind.to_string(),
            })
            .collect();
        self.resolver()
            .apply_inputs(inputs, problems, snapshot.generation())
    }

    /// Applies the receiver's current snapshot now, then every new one as the store publishes
    /// it, on a blocking thread (key parsing stays off the runtime's workers). The task ends
    /// when the store is dropped. Must be called inside a tokio runtime.
    pub fn watch(&self, mut snapshots: watch::Receiver<Arc<Snapshot>>) -> JoinHandle<()> {
        let current = snapshots.borrow_and_update().clone();
        self.apply_snapshot(&current);
        let this = self.clone();
        tokio::spawn(async move {
            while snapshots.changed().await.is_ok() {
                let snapshot = snapshots.borrow_and_update().clone();
                let ctx = this.clone();
                if tokio::task::spawn_blocking(move || ctx.apply_snapshot(&snapshot))
                    .await
                    .is_err()
                {
                    tracing::error!("certificate rebuild panicked; keeping the previous index");
                }
            }
        })
    }
}
