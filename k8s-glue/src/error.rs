//! The crate's one error type.

/// Errors of the Kubernetes glue. Each names the object or configuration field concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is invalid.
    #[error("{field}: {message}")]
    Config {
        /// The field or section.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An API request failed.
    #[error("{what}: {source}")]
    Kube {
        /// The object and operation, e.g. `Lease fairway/acme: update`.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// An object's content is unusable (e.g. a TLS Secret without `tls.crt`).
    #[error("{object}: {message}")]
    Object {
        /// `Kind namespace/name`.
        object: String,
        /// What is wrong.
        message: String,
    },
}
