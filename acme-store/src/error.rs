//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Why an `acme.json` document could not be read or written (no file attached yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not JSON; the position is 1-based.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column (characters).
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// Valid JSON of the wrong shape, e.g. a string where Go expects an object.
    #[error("field `{field}`: {message}")]
    Schema {
        /// The JSON path of the offending field, e.g. `le.Certificates[2].domain.main`.
        field: String,
        /// What was wrong.
        message: String,
    },
    /// The document cannot be written in the requested generation.
    #[error("cannot write this document: {0}")]
    Unwritable(String),
}

/// Errors of the certificate stores.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file holds something that is not a readable `acme.json`. The file is left untouched.
    #[error("{}: {source}", path.display())]
    Format {
        /// The store file.
        path: PathBuf,
        /// The problem and its position.
        #[source]
        source: FormatError,
    },
    /// The store file is group- or world-accessible, which Traefik refuses too (#6743).
    #[error(
        "{}: permissions {mode:o} are too open (group/others may read the private keys); fix with `chmod 600 {}` or opt in to insecure permissions",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        /// The store file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file-system operation failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was being done ("read", "lock", "rename", ...).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A Traefik <= 1.5 file: Fairway reads it but only writes it through a migration.
    #[error("{}: legacy (Traefik <= 1.5) files are read-only; run `fairway acme migrate --file {}`", path.display(), path.display())]
    ReadOnlyLegacy {
        /// The store file.
        path: PathBuf,
    },
    /// The update closure refused the change.
    #[error("update rejected: {0}")]
    Rejected(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }
}
