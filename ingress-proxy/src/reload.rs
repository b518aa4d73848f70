//! Noticing that the configuration file changed.
//!
//! Polls the file's metadata and content hash: this survives editors that replace the file,
//! and Kubernetes ConfigMap volumes that swap a symlink, where inotify watches go stale.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

fn fingerprint(path: &std::path::Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// Sends `()` on the returned channel each time the content of `path` changes (checked every
/// `interval`). The task stops when the receiver is dropped.
pub fn watch_file(path: PathBuf, interval: Duration) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    // The first fingerprint is taken now, not when the task first runs, so a change made right
    // after this call returns is seen.
    let mut last = fingerprint(&path);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if tx.is_closed() {
                break;
            }
            let path2 = path.clone();
            let now = tokio::task::spawn_blocking(move || fingerprint(&path2))
                .await
                .ok()
                .flatten();
            if now.is_some() && now != last {
                last = now;
                // A full channel already holds a pending notification.
                let _ = tx.try_send(());
            }
        }
    });
    rx
}
