//! The crate's one error type.

use std::path::PathBuf;

/// Why the test control plane could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary is not built yet.
    #[error(
        "{what} not found at {path}: run scripts/build-kube-testbin.sh (builds kube-apiserver and etcd \
         from Go modules into $FAIRWAY_KUBE_BIN or ~/.cache/fairway-kube/bin)"
    )]
    MissingBinary {
        /// Which binary.
        what: &'static str,
        /// Where it was expected.
        path: PathBuf,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Certificate or key generation failed.
    #[error("generating {what}: {source}")]
    Cert {
        /// Which certificate or key.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },
    /// A process did not become ready in time or exited early.
    #[error("{what} not ready: {reason}; last log lines:\n{log_tail}")]
    NotReady {
        /// Which process.
        what: &'static str,
        /// Why we gave up.
        reason: String,
        /// The end of its log, for diagnosis.
        log_tail: String,
    },
    /// The kube client could not be configured or a request failed.
    #[error("kube client: {0}")]
    Kube(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
