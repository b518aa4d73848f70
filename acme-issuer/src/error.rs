//! The crate's one error type. Every variant names what failed: the file, the domain and the
//! ACME step, and for CA errors the problem document (RFC 7807) as the CA sent it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// A step of the ACME flow, named in errors and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Fetching the directory, creating or loading the account.
    Account,
    /// `newOrder`.
    NewOrder,
    /// Re-attaching to a persisted order after a restart or leader change.
    ResumeOrder,
    /// Fetching an authorization.
    Authorization,
    /// Presenting a challenge response (publishing a token, registering a certificate).
    Present,
    /// Telling the CA the challenge is ready and waiting for validation.
    Validation,
    /// Sending the CSR.
    Finalize,
    /// Downloading the certificate chain.
    Certificate,
    /// Reading or writing the certificate store.
    Store,
}

impl Step {
    /// A short lower-case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::NewOrder => "new-order",
            Self::ResumeOrder => "resume-order",
            Self::Authorization => "authorization",
            Self::Present => "present-challenge",
            Self::Validation => "validation",
            Self::Finalize => "finalize",
            Self::Certificate => "certificate",
            Self::Store => "store",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the ACME issuer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The CA (or the way to it) failed a step of an order.
    #[error("ACME {step} for {domain} failed: {detail}")]
    Acme {
        /// Main domain of the certificate (or the resolver name for account steps).
        domain: String,
        /// The step that failed.
        step: Step,
        /// The problem document (type, detail, subproblems) or transport error.
        detail: String,
        /// The ACME problem type URN, if the CA sent a problem document.
        problem_type: Option<String>,
        /// `Retry-After` sent with the failing response, if any.
        retry_after: Option<SystemTime>,
    },
    /// An ACME call did not answer in time: the CA is down or wedged.
    #[error("ACME server stopped answering: {step} for {domain} took longer than {}s", timeout.as_secs())]
    Timeout {
        /// Main domain of the certificate.
        domain: String,
        /// The step that hung.
        step: Step,
        /// The bound that was exceeded.
        timeout: Duration,
    },
    /// The CA offered no challenge this issuer can solve.
    #[error("no usable challenge for {domain}: wanted {wanted}, the CA offered [{offered}]")]
    NoChallenge {
        /// The identifier.
        domain: String,
        /// The configured challenge type.
        wanted: String,
        /// The challenge types on offer.
        offered: String,
    },
    /// A challenge solver failed to present or the challenge was rejected.
    #[error("challenge for {domain} failed: {reason}")]
    Challenge {
        /// The identifier.
        domain: String,
        /// Why.
        reason: String,
    },
    /// A private key or CSR could not be generated or parsed.
    #[error("key for {domain}: {reason}")]
    Key {
        /// Main domain of the certificate (or `account <resolver>`).
        domain: String,
        /// Why (never the key itself).
        reason: String,
    },
    /// The certificate store failed.
    #[error("store: {0}")]
    Store(String),
    /// Invalid issuer configuration.
    #[error("configuration {field}: {reason}")]
    Config {
        /// Field path, e.g. `acme.resolvers.le.directory`.
        field: String,
        /// Why.
        reason: String,
    },
    /// Leadership was lost; the order stopped before its next ACME call.
    #[error("leadership lost while issuing {domain}")]
    LostLeadership {
        /// Main domain of the interrupted certificate.
        domain: String,
    },
}

impl Error {
    /// The `Retry-After` instant the CA sent with this failure, if any.
    pub fn retry_after(&self) -> Option<SystemTime> {
        match self {
            Self::Acme { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the CA rejected the nonce (retried transparently).
    pub fn is_bad_nonce(&self) -> bool {
        matches!(self, Self::Acme { problem_type: Some(t), .. } if t.ends_with(":badNonce"))
    }
}
