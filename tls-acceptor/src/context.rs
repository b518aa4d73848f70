//! [`TlsContext`]: the process-wide TLS state (resolver, ticketer, session cache,
//! challenges) and the per-entrypoint rustls configurations built from it.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::acceptor::{Acceptor, TlsEndpoint};
use crate::challenge::{ACME_TLS_ALPN, AlpnChallenges, ChallengeResolver};
use crate::error::{Error, Result};
use crate::provider::{PROTOCOL_VERSIONS, provider};
use crate::resolver::CertResolver;
use crate::serving::{CertInput, CertOrigin, ServingCert};
use crate::settings::{ALPN_HTTP11, DefaultCertificate, TlsSettings};

/// The one ticketer of the process. Every `ServerConfig` ever built (including after a
/// configuration reload that builds a new [`TlsContext`]) encrypts tickets with it, so
/// tickets issued before a reload or a certificate rotation still resume.
pub fn process_ticketer() -> Result<Arc<dyn ProducesTickets>> {
    static TICKETER: OnceLock<Arc<dyn ProducesTickets>> = OnceLock::new();
    if let Some(t) = TICKETER.get() {
        return Ok(t.clone());
    }
    let t = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(TICKETER.get_or_init(|| t).clone())
}

/// Shared TLS state of one proxy process. Cheap to clone.
///
/// Build it once from [`TlsSettings`], feed it snapshots ([`apply_snapshot`] or
/// [`watch`]), and make one [`Acceptor`] per TLS entrypoint with
/// [`acceptor`](Self::acceptor). All entrypoints share the resolver, ticketer and session
/// cache, so a session resumes on any of them.
///
/// [`apply_snapshot`]: TlsContext::apply_snapshot
/// [`watch`]: TlsContext::watch
#[derive(Clone, Debug)]
pub struct TlsContext {
    resolver: Arc<CertResolver>,
    challenges: AlpnChallenges,
    challenge_config: Arc<ServerConfig>,
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
    settings: Arc<TlsSettings>,
}

impl TlsContext {
    /// Builds the context. Without a configured default certificate (and without
    /// `sni_strict`) a self-signed one is generated now and logged as such.
    pub fn new(settings: TlsSettings) -> Result<Self> {
        let default = match (&settings.default_certificate, settings.sni_strict) {
            (Some(d), _) => Some(Arc::new(default_serving(d)?)),
            (None, true) => None,
            (None, false) => {
                let (generated, fresh) = generated_default()?;
                let serving = default_serving(&generated)?;
                if fresh {
                    tracing::info!(
                        serial = %serving.serial_hex,
                        "no default certificate configured; generated a self-signed one (FAIRWAY DEFAULT CERT)"
                    );
                }
                Some(Arc::new(serving))
            }
        };
        let resolver = Arc::new(CertResolver::new(default, settings.sni_strict));
        let challenges = AlpnChallenges::new();
        let mut challenge_config =
            base_builder()?.with_cert_resolver(Arc::new(ChallengeResolver(challenges.clone())));
        challenge_config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        // A validation connection is never resumed and carries no data.
        challenge_config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        challenge_config.send_tls13_tickets = 0;
        Ok(Self {
            resolver,
            challenges,
            challenge_config: Arc::new(challenge_config),
            ticketer: process_ticketer()?,
            sessions: ServerSessionMemoryCache::new(settings.session_cache_size.max(1)),
            settings: Arc::new(settings),
        })
    }

    /// The certificate resolver (shared by every entrypoint).
    pub fn resolver(&self) -> &Arc<CertResolver> {
        &self.resolver
    }

    /// The acme-tls/1 challenge registry; hand a clone to the ACME issuer.
    pub fn challenges(&self) -> &AlpnChallenges {
        &self.challenges
    }

    /// The settings this context was built from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// A rustls configuration for one entrypoint offering `alpn` (in preference order, e.g.
    /// `[h2, http/1.1]`; empty means no ALPN).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
        let mut config = base_builder()?.with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.ticketer = self.ticketer.clone();
        config.session_storage = self.sessions.clone();
        config.send_tls13_tickets = self.settings.tls13_tickets;
        Ok(Arc::new(config))
    }

    /// An acceptor for a TLS entrypoint offering `alpn`, with the configured handshake
    /// timeout.
    pub fn acceptor(&self, alpn: &[&[u8]]) -> Result<Acceptor> {
        let config = self.server_config(alpn)?;
        // When the entrypoint negotiates no ALPN, a ClientHello offering only acme-tls/1 for
        // a name without a challenge would otherwise be answered without ALPN; this config
        // makes rustls refuse it with `no_application_protocol`.
        let refuse_acme = if alpn.is_empty() {
            self.server_config(&[ALPN_HTTP11])?
        } else {
            config.clone()
        };
        Ok(Acceptor::tls(
            TlsEndpoint {
                config,
                refuse_acme,
                challenge_config: self.challenge_config.clone(),
                challenges: self.challenges.clone(),
            },
            self.settings.handshake_timeout,
        ))
    }
}

fn base_builder() -> Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>> {
    Ok(ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_no_client_auth())
}

fn default_serving(d: &DefaultCertificate) -> Result<ServingCert> {
    CertInput {
        origin: CertOrigin {
            resolver: String::new(),
            main: "default".into(),
        },
        names: vec!["default".into()],
        chain: &d.chain,
        key: &d.key,
        not_before: SystemTime::UNIX_EPOCH,
        not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(u32::MAX as u64 * 2),
        serial_hex: leaf_serial(&d.chain[0]),
    }
    .build()
}

/// Serial of a DER certificate, lowercase hex ("?" when it cannot be parsed).
fn leaf_serial(der: &CertificateDer<'_>) -> String {
    use x509_parser::prelude::*;
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => cert.raw_serial_as_string().replace(':', ""),
        Err(_) => "?".into(),
    }
}

/// The generated default certificate, made once per process so that a configuration reload
/// (a new [`TlsContext`]) serves the same one. Returns whether it was generated by this call.
fn generated_default() -> Result<(DefaultCertificate, bool)> {
    static GENERATED: OnceLock<DefaultCertificate> = OnceLock::new();
    if let Some(d) = GENERATED.get() {
        return Ok((d.clone(), false));
    }
    let made = generate_default()?;
    let mut fresh = false;
    let d = GENERATED.get_or_init(|| {
        fresh = true;
        made
    });
    Ok((d.clone(), fresh))
}

/// Like Traefik's `TRAEFIK DEFAULT CERT`: self-signed, P-256, CN `FAIRWAY DEFAULT CERT`, a
/// random `*.fairway.default` SAN so it can never match a real name.
fn generate_default() -> Result<DefaultCertificate> {
    let fail = |e: rcgen::Error| Error::Generate {
        domain: "default".into(),
        reason: e.to_string(),
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let public = rcgen::PublicKeyData::der_bytes(&key);
    let tag: String = public[public.len() - 8..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut params =
        rcgen::CertificateParams::new(vec![format!("{tag}.fairway.default")]).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "FAIRWAY DEFAULT CERT");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 12, 31);
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok(DefaultCertificate::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    ))
}
