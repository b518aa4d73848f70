//! Background tasks that live exactly as long as the handle that owns them.

use std::future::Future;

use tokio::task::JoinHandle;

/// A spawned watch or relay, aborted when dropped.
///
/// Tokio detaches a task whose `JoinHandle` is dropped; a watcher here must instead stop with
/// its owner (a proxy that drops its provider must not keep watching the API server), so every
/// handle type of this crate holds its tasks through this.
#[derive(Debug)]
pub(crate) struct OwnedTask(JoinHandle<()>);

impl OwnedTask {
    /// Spawns `future` on the current runtime.
    pub(crate) fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Self {
        OwnedTask(tokio::spawn(future))
    }

    /// Stops the task now (dropping does the same).
    pub(crate) fn abort(&self) {
        self.0.abort();
    }
}

impl Drop for OwnedTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
