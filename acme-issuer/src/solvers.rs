//! The HTTP-01 and TLS-ALPN-01 solvers over the shared registries of `acme-store` and
//! `tls-acceptor`.

use acme_store::challenge::Http01Registry;
use tls_acceptor::AlpnChallenges;

use crate::challenge::{BoxFuture, ChallengeData, ChallengeKind, ChallengeSolver};

/// HTTP-01 through the shared token registry.
#[derive(Debug, Clone)]
pub struct Http01Solver {
    registry: Http01Registry,
}

impl Http01Solver {
    /// A solver publishing into `registry` (clone it into the proxies / challenge endpoint).
    pub fn new(registry: Http01Registry) -> Self {
        Self { registry }
    }

    /// The registry tokens are published in.
    pub fn registry(&self) -> &Http01Registry {
        &self.registry
    }
}

impl ChallengeSolver for Http01Solver {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::Http01
    }

    fn present<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, Result<(), String>> {
        self.registry.publish(&c.token, &c.key_authorization);
        Box::pin(async { Ok(()) })
    }

    fn cleanup<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, ()> {
        self.registry.withdraw(&c.token);
        Box::pin(async {})
    }
}

/// TLS-ALPN-01 through `tls-acceptor`'s `acme-tls/1` responder.
#[derive(Clone)]
pub struct TlsAlpn01Solver {
    challenges: AlpnChallenges,
}

impl std::fmt::Debug for TlsAlpn01Solver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAlpn01Solver").finish_non_exhaustive()
    }
}

impl TlsAlpn01Solver {
    /// A solver registering challenge certificates in `challenges` (shared with the acceptor).
    pub fn new(challenges: AlpnChallenges) -> Self {
        Self { challenges }
    }
}

impl ChallengeSolver for TlsAlpn01Solver {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::TlsAlpn01
    }

    fn present<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, Result<(), String>> {
        let result = self
            .challenges
            .register(&c.domain, c.digest)
            .map_err(|e| e.to_string());
        Box::pin(async move { result })
    }

    fn cleanup<'a>(&'a self, c: &'a ChallengeData) -> BoxFuture<'a, ()> {
        self.challenges.remove(&c.domain);
        Box::pin(async {})
    }
}
