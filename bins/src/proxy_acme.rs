//! The ACME issuer embedded in `fairway-proxy`, for single-node setups without a controller.
//!
//! When the proxy's configuration has an `[acme]` section, [`spawn`] starts an
//! [`acme_issuer::Issuer`] inside the proxy process:
//!
//! * it writes into the proxy's *own* [`FileStore`], so an issued certificate is in the proxy's
//!   snapshot (and served) as soon as it is saved, without waiting for the file watcher;
//! * HTTP-01 tokens go into the same [`Http01Registry`] the proxy answers
//!   `/.well-known/acme-challenge/*` from on its plain entrypoints, and TLS-ALPN-01 certificates
//!   into the proxy's own `acme-tls/1` responder, so no extra listener is needed;
//! * it issues only while it holds the [`FileLockElector`] lock (`[acme].lock_file`, default
//!   `<store>.leader`), the same lock `fairway-controller` takes: a proxy and a controller, or
//!   two proxies, on one host never both issue.
//!
//! A configuration that also sets `[acme_challenge].forward_to` belongs to a proxy deployed with
//! `fairway-controller` (the proxy forwards challenges instead of answering them from its own
//! registry, so tokens published in-process would never be served): there the proxy does not
//! embed the issuer, and the controller alone issues.
//!
//! The controller-only keys `challenge_address`, `tls_challenge_address` and `admin_address` are
//! ignored here (the proxy's entrypoints and admin listener play those roles).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use acme_issuer::{
    AcmeJsonStore, ChallengeSolver, FileLockElector, Http01Solver, Issuer, IssuerParts,
    TlsAlpn01Solver,
};
use acme_store::challenge::Http01Registry;
use acme_store::{CertStore, FileStore, FileStoreOptions};
use tls_acceptor::AlpnChallenges;

/// Why the embedded issuer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyAcmeError {
    /// The configuration file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `[acme]` section is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::acme::AcmeConfigError),
    /// `[acme].store` names a different file than the proxy serves from (`[tls].store`).
    #[error(
        "{}: acme.store: `{}` is not the store fairway-proxy serves from (`{}`); issued certificates would never be served",
        config.display(), acme.display(), tls.display()
    )]
    StoreMismatch {
        /// The configuration file.
        config: PathBuf,
        /// `[acme].store`.
        acme: PathBuf,
        /// `[tls].store`.
        tls: PathBuf,
    },
    /// The store, the leader lock or the issuer failed to start.
    #[error("{}: {what}: {reason}", config.display())]
    Start {
        /// The configuration file.
        config: PathBuf,
        /// What was being started (`acme.store`, `acme.lock_file`, `issuer`).
        what: &'static str,
        /// The underlying error.
        reason: String,
    },
}

/// What the proxy already has that the issuer shares.
#[derive(Debug)]
pub struct ProxyParts<'a> {
    /// The proxy's certificate store (`[tls].store`), if it opened one.
    pub store: Option<Arc<FileStore>>,
    /// The registry the proxy answers HTTP-01 challenges from.
    pub http01: &'a Http01Registry,
    /// The proxy's `acme-tls/1` responder, if it has TLS entrypoints.
    pub alpn: Option<AlpnChallenges>,
}

/// Start the embedded issuer if `config` (the proxy's TOML file) has an `[acme]` section and no
/// `[acme_challenge].forward_to`; `Ok(None)` otherwise. Keep the returned [`Issuer`] alive for as long as it should run.
///
/// Installs the aws-lc-rs rustls provider as the process default (idempotent): instant-acme's
/// HTTPS client uses the process default.
pub fn spawn(config: &Path, parts: ProxyParts<'_>) -> Result<Option<Issuer>, ProxyAcmeError> {
    let text = std::fs::read_to_string(config).map_err(|source| ProxyAcmeError::Read {
        path: config.to_owned(),
        source,
    })?;
    if !embeds_issuer(&text) {
        return Ok(None);
    }
    let acme = crate::config::acme::parse(config, &text)?;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let start_err = |what: &'static str, reason: String| ProxyAcmeError::Start {
        config: config.to_owned(),
        what,
        reason,
    };
    let resolvers = acme.resolvers()?;
    let store: Arc<dyn CertStore> = match parts.store {
        Some(s) if s.path() == acme.store => s,
        Some(s) => {
            return Err(ProxyAcmeError::StoreMismatch {
                config: config.to_owned(),
                acme: acme.store.clone(),
                tls: s.path().to_owned(),
            });
        }
        None => Arc::new(
            FileStore::open(&acme.store, FileStoreOptions::default())
                .map_err(|e| start_err("acme.store", e.to_string()))?,
        ),
    };
    let elector = FileLockElector::spawn(&acme.lock_file, acme.leader_retry())
        .map_err(|e| start_err("acme.lock_file", e.to_string()))?;
    let mut solvers: Vec<Arc<dyn ChallengeSolver>> =
        vec![Arc::new(Http01Solver::new(parts.http01.clone()))];
    if let Some(alpn) = parts.alpn {
        solvers.push(Arc::new(TlsAlpn01Solver::new(alpn)));
    }
    let issuer = Issuer::spawn(IssuerParts {
        resolvers,
        wanted: acme.wanted.clone(),
        options: acme.options(),
        store: Arc::new(AcmeJsonStore::new(store)),
        elector: Arc::new(elector),
        solvers,
    })
    .map_err(|e| start_err("issuer", e.to_string()))?;
    tracing::info!(
        certificates = acme.wanted.len(),
        lock = %acme.lock_file.display(),
        "embedded ACME issuer started"
    );
    Ok(Some(issuer))
}

/// Whether the TOML text has a top-level `[acme]` table and does not forward challenges to a
/// controller (unparsable text: no; the proxy's own configuration loader reports it).
fn embeds_issuer(text: &str) -> bool {
    let Ok(t) = toml::from_str::<toml::Table>(text) else {
        return false;
    };
    let forwards = t
        .get("acme_challenge")
        .and_then(|c| c.get("forward_to"))
        .is_some();
    t.contains_key("acme") && !forwards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_detection() {
        assert!(!embeds_issuer(
            "[entrypoints.web]\naddress = \"127.0.0.1:80\"\n"
        ));
        assert!(embeds_issuer(
            "[acme.resolvers.le]\ndirectory = \"https://x/\"\n"
        ));
        assert!(!embeds_issuer(
            "[acme_challenge]\nforward_to = \"http://x\"\n"
        ));
        assert!(!embeds_issuer(
            "[acme_challenge]\nforward_to = \"http://x\"\n[acme.resolvers.le]\ndirectory = \"https://x/\"\n"
        ));
        assert!(!embeds_issuer("not toml ["));
    }

    #[test]
    fn no_acme_section_starts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("fairway.toml");
        std::fs::write(&config, "[tls]\nstore = \"acme.json\"\n").unwrap();
        let registry = Http01Registry::new();
        let parts = ProxyParts {
            store: None,
            http01: &registry,
            alpn: None,
        };
        assert!(spawn(&config, parts).unwrap().is_none());
        assert!(!dir.path().join("acme.json.leader").exists());
    }

    #[test]
    fn store_mismatch_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("fairway.toml");
        std::fs::write(
            &config,
            "[acme]\nstore = \"other.json\"\n[acme.resolvers.le]\ndirectory = \"https://127.0.0.1:1/dir\"\n",
        )
        .unwrap();
        let served = Arc::new(
            FileStore::open(dir.path().join("acme.json"), FileStoreOptions::default()).unwrap(),
        );
        let registry = Http01Registry::new();
        let parts = ProxyParts {
            store: Some(served),
            http01: &registry,
            alpn: None,
        };
        let e = spawn(&config, parts).unwrap_err().to_string();
        assert!(e.contains("other.json") && e.contains("acme.json"), "{e}");
    }
}
