//! Leader election: exactly one controller replica issues at a time.
//!
//! Issuance runs only while a [`LeaderElector`] reports leadership. Every won term carries a
//! fencing `epoch` that strictly increases across terms, so anything a leader writes can be
//! attributed to a term. The [`FileLockElector`] serves replicas on one host (or sharing one
//! POSIX filesystem with working `flock`): the kernel drops the lock when the holder dies, even by
//! SIGKILL, so a standby takes over within one retry interval. The Kubernetes Lease elector lives
//! in `k8s-glue`; [`AlwaysLeader`] is for single-node setups that embed the issuer.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Error;

/// The elector's view of this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leadership {
    /// Whether this replica may issue now.
    pub is_leader: bool,
    /// Fencing epoch of the current term (0 while never leader).
    pub epoch: u64,
}

/// Something that says whether this replica is the leader, and tells when that changes.
pub trait LeaderElector: Send + Sync + 'static {
    /// The current leadership state.
    fn current(&self) -> Leadership {
        *self.subscribe().borrow()
    }

    /// A receiver that changes whenever leadership is won or lost.
    fn subscribe(&self) -> watch::Receiver<Leadership>;
}

/// An elector that is always leader (epoch 1): for a single issuer per store.
#[derive(Debug)]
pub struct AlwaysLeader {
    tx: watch::Sender<Leadership>,
}

impl Default for AlwaysLeader {
    fn default() -> Self {
        Self {
            tx: watch::Sender::new(Leadership {
                is_leader: true,
                epoch: 1,
            }),
        }
    }
}

impl LeaderElector for AlwaysLeader {
    fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.tx.subscribe()
    }
}

/// Leader election by an exclusive `flock` on a lock file.
///
/// The lock file also holds the last epoch (decimal text), rewritten by each new leader while it
/// holds the lock. Leadership is kept until this value is dropped or the process exits.
#[derive(Debug)]
pub struct FileLockElector {
    tx: watch::Sender<Leadership>,
    task: JoinHandle<()>,
    path: PathBuf,
}

impl FileLockElector {
    /// Start contending for `path`, retrying every `retry` while another replica holds it.
    /// Must be called inside a Tokio runtime.
    pub fn spawn(path: impl Into<PathBuf>, retry: Duration) -> Result<Self, Error> {
        let path = path.into();
        // Fail early on an unusable path instead of contending silently forever.
        open_lock_file(&path)?;
        let tx = watch::Sender::new(Leadership::default());
        let task = tokio::spawn(contend(path.clone(), retry, tx.clone()));
        Ok(Self { tx, task, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLockElector {
    fn drop(&mut self) {
        self.task.abort();
        self.tx.send_replace(Leadership::default());
    }
}

impl LeaderElector for FileLockElector {
    fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.tx.subscribe()
    }
}

fn open_lock_file(path: &Path) -> Result<File, Error> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        action: "open lock file",
        source,
    })
}

/// Bump the epoch stored in the (locked) file and return the new value.
fn bump_epoch(file: &mut File, path: &Path) -> Result<u64, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        action: "update epoch in lock file",
        source,
    };
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.read_to_string(&mut text).map_err(io)?;
    let epoch = text.trim().parse::<u64>().unwrap_or(0) + 1;
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(format!("{epoch}\n").as_bytes())
        .map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(epoch)
}

async fn contend(path: PathBuf, retry: Duration, tx: watch::Sender<Leadership>) {
    loop {
        let attempt = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || -> Result<Option<(File, u64)>, Error> {
                let mut file = open_lock_file(&path)?;
                match file.try_lock() {
                    Ok(()) => {
                        let epoch = bump_epoch(&mut file, &path)?;
                        Ok(Some((file, epoch)))
                    }
                    Err(TryLockError::WouldBlock) => Ok(None),
                    Err(TryLockError::Error(source)) => Err(Error::Io {
                        path,
                        action: "lock",
                        source,
                    }),
                }
            })
            .await
        };
        match attempt {
            Ok(Ok(Some((file, epoch)))) => {
                tracing::info!(path = %path.display(), epoch, "won leadership");
                tx.send_replace(Leadership {
                    is_leader: true,
                    epoch,
                });
                // Hold the lock (the open file) until this task is aborted.
                let _held = file;
                std::future::pending::<()>().await;
            }
            Ok(Ok(None)) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "leader election attempt failed"),
            Err(join) => tracing::warn!(error = %join, "leader election attempt panicked"),
        }
        tokio::time::sleep(retry).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_then_takeover_with_higher_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leader.lock");
        let a = FileLockElector::spawn(&path, Duration::from_millis(20)).unwrap();
        let mut a_rx = a.subscribe();
        tokio::time::timeout(Duration::from_secs(5), a_rx.wait_for(|l| l.is_leader))
            .await
            .unwrap()
            .unwrap();
        let first = a.current();
        assert_eq!(first.epoch, 1);

        let b = FileLockElector::spawn(&path, Duration::from_millis(20)).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!b.current().is_leader, "two leaders at once");

        drop(a);
        let mut b_rx = b.subscribe();
        let won = tokio::time::timeout(Duration::from_secs(5), b_rx.wait_for(|l| l.is_leader))
            .await
            .unwrap()
            .unwrap()
            .epoch;
        assert!(won > first.epoch);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            won.to_string()
        );
    }

    #[test]
    fn unusable_path_is_an_error_naming_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let err = FileLockElector::spawn("/nonexistent-dir/x.lock", Duration::from_secs(1))
                .unwrap_err();
            assert!(err.to_string().contains("/nonexistent-dir/x.lock"), "{err}");
        });
    }
}
