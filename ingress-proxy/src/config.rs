//! The proxy's configuration: entrypoints, routers, services, limits and admin.
//!
//! These types are the `[entrypoints]`, `[routers]`, `[services]`, `[limits]`, `[admin]` and
//! `[access_log]` sections of Fairway's TOML schema. They derive `Deserialize` so a binary can
//! embed them in its own file type; [`ProxyConfig::validate`] checks what serde cannot (references
//! between sections, URLs, rule syntax) and names the offending field path in its error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::error::ConfigError;

/// Everything the data plane needs, as written in the configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Listeners by name (`[entrypoints.<name>]`).
    #[serde(default)]
    pub entrypoints: BTreeMap<String, EntrypointConfig>,
    /// Routes by name (`[routers.<name>]`), Traefik v3 rule syntax.
    #[serde(default)]
    pub routers: BTreeMap<String, RouterConfig>,
    /// Upstream services by name (`[services.<name>]`).
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// Request and connection limits; every limit is on by default.
    #[serde(default)]
    pub limits: Limits,
    /// Where `X-Forwarded-*` headers are trusted from, and similar client-facing settings.
    #[serde(default)]
    pub forwarding: ForwardingConfig,
    /// The admin listener (metrics, health, routes).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Access log settings.
    #[serde(default)]
    pub access_log: AccessLogConfig,
    /// ACME HTTP-01 challenge handling.
    #[serde(default)]
    pub acme_challenge: ChallengeConfig,
}

/// One listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntrypointConfig {
    /// Socket address to bind, e.g. `127.0.0.1:8443`.
    pub address: SocketAddr,
    /// Present for a TLS entrypoint.
    #[serde(default)]
    pub tls: Option<EntrypointTls>,
    /// Redirect every request (except ACME HTTP-01 challenges) to this (TLS) entrypoint.
    #[serde(default)]
    pub redirect_to: Option<String>,
}

/// TLS settings of one entrypoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntrypointTls {
    /// ALPN protocols offered, in preference order.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<String>,
}

fn default_alpn() -> Vec<String> {
    vec!["h2".to_owned(), "http/1.1".to_owned()]
}

/// One route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Traefik v3 rule, e.g. ``Host(`example.com`) && PathPrefix(`/api`)``.
    pub rule: String,
    /// Name of the `[services.<name>]` that serves the route.
    pub service: String,
    /// Priority; the default is the rule's length, as in Traefik.
    #[serde(default)]
    pub priority: Option<i64>,
    /// Entrypoints the route is attached to; all when absent.
    #[serde(default)]
    pub entrypoints: Option<Vec<String>>,
    /// TLS options of the route (certificate resolver for issuance); not used by the data plane.
    #[serde(default)]
    pub tls: Option<RouterTls>,
}

/// TLS options of a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterTls {
    /// Names an `[acme.resolvers.<name>]` that issues certificates for the route's hosts.
    #[serde(default)]
    pub cert_resolver: Option<String>,
}

/// How a service picks an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    /// Each endpoint in turn (weights ignored).
    #[default]
    RoundRobin,
    /// Smooth weighted round robin.
    Weighted,
    /// Power of two random choices, fewer in-flight requests (per weight) wins.
    LeastRequests,
}

/// One upstream service: a load-balanced set of endpoints, or a fixed response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Endpoint selection policy.
    #[serde(default)]
    pub load_balancer: LoadBalancing,
    /// Upstream endpoints.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    /// A fixed response instead of endpoints (demo pages, maintenance, tests).
    #[serde(default)]
    pub respond: Option<StaticResponse>,
    /// Speak cleartext HTTP/2 (h2c, prior knowledge) to the endpoints.
    #[serde(default)]
    pub h2c: bool,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: UpstreamTimeouts,
    /// Passive health: ejection after consecutive connect errors.
    #[serde(default)]
    pub passive_health: PassiveHealth,
    /// Optional active health checks.
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Retry idempotent requests on another endpoint when connecting fails.
    #[serde(default = "yes")]
    pub retry: bool,
    /// Keep the client's `Host` header (true) or send the endpoint's authority (false).
    #[serde(default = "yes")]
    pub pass_host_header: bool,
}

impl ServiceConfig {
    /// Whether `self` and `other` differ at most in their endpoint lists: then a running
    /// service can take the new list in place (see `EndpointSet`).
    pub(crate) fn same_but_endpoints(&self, other: &ServiceConfig) -> bool {
        // Destructured so that a new field cannot be forgotten here.
        let ServiceConfig {
            load_balancer,
            endpoints: _,
            respond,
            h2c,
            timeouts,
            passive_health,
            health_check,
            retry,
            pass_host_header,
        } = self;
        *load_balancer == other.load_balancer
            && *respond == other.respond
            && *h2c == other.h2c
            && *timeouts == other.timeouts
            && *passive_health == other.passive_health
            && *health_check == other.health_check
            && *retry == other.retry
            && *pass_host_header == other.pass_host_header
    }
}

fn yes() -> bool {
    true
}

/// One upstream endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `http://host:port` (an IP address; no path).
    pub url: String,
    /// Relative weight for the `weighted` and `least_requests` balancers.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// A fixed response served by the proxy itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticResponse {
    /// Status code.
    #[serde(default = "ok")]
    pub status: u16,
    /// Body text.
    #[serde(default)]
    pub body: String,
    /// `Content-Type` of the body.
    #[serde(default = "text_plain")]
    pub content_type: String,
}

fn ok() -> u16 {
    200
}

fn text_plain() -> String {
    "text/plain; charset=utf-8".to_owned()
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTimeouts {
    /// TCP connect timeout.
    #[serde(default = "d_connect", with = "duration")]
    pub connect: Duration,
    /// Time from sending the request to receiving the response head.
    #[serde(default = "d_response", with = "duration")]
    pub response: Duration,
    /// How long an idle pooled connection is kept.
    #[serde(default = "d_idle", with = "duration")]
    pub idle: Duration,
}

fn d_connect() -> Duration {
    Duration::from_secs(5)
}
fn d_response() -> Duration {
    Duration::from_secs(30)
}
fn d_idle() -> Duration {
    Duration::from_secs(90)
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        Self {
            connect: d_connect(),
            response: d_response(),
            idle: d_idle(),
        }
    }
}

/// Passive health: how many consecutive connect errors eject an endpoint, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealth {
    /// Consecutive connect errors before ejection; 0 disables passive ejection.
    #[serde(default = "d_failures")]
    pub max_failures: u32,
    /// How long an ejected endpoint is skipped.
    #[serde(default = "d_cooldown", with = "duration")]
    pub cooldown: Duration,
}

fn d_failures() -> u32 {
    3
}
fn d_cooldown() -> Duration {
    Duration::from_secs(10)
}

impl Default for PassiveHealth {
    fn default() -> Self {
        Self {
            max_failures: d_failures(),
            cooldown: d_cooldown(),
        }
    }
}

/// Active health checks: `GET path` on every endpoint each interval; a 2xx/3xx is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Request path.
    #[serde(default = "d_hc_path")]
    pub path: String,
    /// Time between checks.
    #[serde(default = "d_hc_interval", with = "duration")]
    pub interval: Duration,
    /// Timeout of one check.
    #[serde(default = "d_hc_timeout", with = "duration")]
    pub timeout: Duration,
}

fn d_hc_path() -> String {
    "/".to_owned()
}
fn d_hc_interval() -> Duration {
    Duration::from_secs(5)
}
fn d_hc_timeout() -> Duration {
    Duration::from_secs(2)
}

/// Limits protecting the proxy from slow or abusive clients. All are on by default.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Maximum number of request headers (HTTP/1.1).
    #[serde(default = "d_max_headers")]
    pub max_headers: usize,
    /// Maximum size of the request head in bytes (HTTP/1.1 read buffer; h2 header list size).
    #[serde(default = "d_max_header_bytes")]
    pub max_header_bytes: usize,
    /// The whole request head must arrive within this time (slowloris protection). For
    /// HTTP/1.1 this also bounds how long a keep-alive connection may wait for its next request.
    #[serde(default = "d_header_read", with = "duration")]
    pub header_read_timeout: Duration,
    /// A connection without any I/O for this long is closed gracefully.
    #[serde(default = "d_idle_conn", with = "duration")]
    pub idle_timeout: Duration,
    /// TLS handshake timeout.
    #[serde(default = "d_handshake", with = "duration")]
    pub tls_handshake_timeout: Duration,
    /// HTTP/2 concurrent streams per connection.
    #[serde(default = "d_streams")]
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 rapid-reset protection: remotely reset streams not yet accepted, per connection.
    #[serde(default = "d_pending_resets")]
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2: streams we may reset because of protocol errors before the connection is closed.
    #[serde(default = "d_local_resets")]
    pub h2_max_local_error_reset_streams: usize,
    /// Maximum concurrent client connections per entrypoint.
    #[serde(default = "d_max_conns")]
    pub max_connections: usize,
}

fn d_max_headers() -> usize {
    100
}
fn d_max_header_bytes() -> usize {
    32 * 1024
}
fn d_header_read() -> Duration {
    Duration::from_secs(10)
}
fn d_idle_conn() -> Duration {
    Duration::from_secs(60)
}
fn d_handshake() -> Duration {
    Duration::from_secs(10)
}
fn d_streams() -> u32 {
    128
}
fn d_pending_resets() -> usize {
    20
}
fn d_local_resets() -> usize {
    1024
}
fn d_max_conns() -> usize {
    50_000
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_headers: d_max_headers(),
            max_header_bytes: d_max_header_bytes(),
            header_read_timeout: d_header_read(),
            idle_timeout: d_idle_conn(),
            tls_handshake_timeout: d_handshake(),
            h2_max_concurrent_streams: d_streams(),
            h2_max_pending_accept_reset_streams: d_pending_resets(),
            h2_max_local_error_reset_streams: d_local_resets(),
            max_connections: d_max_conns(),
        }
    }
}

/// Client-facing forwarding settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardingConfig {
    /// Peers whose `X-Forwarded-*` / `X-Real-IP` headers are kept (CIDRs, e.g. `10.0.0.0/8`).
    /// From anyone else they are overwritten.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Socket address, by default on loopback.
    #[serde(default = "d_admin")]
    pub address: SocketAddr,
    /// File holding a bearer token that every admin request but `/healthz`, `/readyz` and the
    /// static dashboard page must send (`Authorization: Bearer <token>`). Required when
    /// `address` is not on loopback. Read at start.
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
}

fn d_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9900))
}

/// Access log settings.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// Emit one `fairway::access` tracing event per request.
    #[serde(default)]
    pub enabled: bool,
    /// Ask the binary to render the log as JSON lines.
    #[serde(default)]
    pub json: bool,
}

/// ACME HTTP-01 challenge handling.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeConfig {
    /// Forward `/.well-known/acme-challenge/*` to this URL (the controller) when the token is
    /// not in the in-process registry.
    #[serde(default)]
    pub forward_to: Option<String>,
}

/// Serde helpers for durations written as `"500ms"`, `"5s"`, `"2m"`, `"1h"`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Parses `<integer><unit>` with unit `ms`, `s`, `m` or `h`.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a duration like \"500ms\", \"5s\" or \"2m\""))?;
        match unit {
            "ms" => Ok(Duration::from_millis(n)),
            "s" => Ok(Duration::from_secs(n)),
            "m" => Ok(Duration::from_secs(n * 60)),
            "h" => Ok(Duration::from_secs(n * 3600)),
            _ => Err(format!("`{text}` has no unit (ms, s, m or h)")),
        }
    }

    /// Deserializes a duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}

impl ProxyConfig {
    /// Checks cross-references and values; the error names the field path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut addrs = BTreeMap::new();
        for (name, ep) in &self.entrypoints {
            // Port 0 (any free port) may repeat.
            let taken = if ep.address.port() == 0 {
                None
            } else {
                addrs.insert(ep.address, name)
            };
            if let Some(prev) = taken {
                return Err(ConfigError::new(
                    format!("entrypoints.{name}.address"),
                    format!("{} is already used by entrypoints.{prev}", ep.address),
                ));
            }
            if let Some(target) = &ep.redirect_to {
                match self.entrypoints.get(target) {
                    None => {
                        return Err(ConfigError::new(
                            format!("entrypoints.{name}.redirect_to"),
                            format!("no entrypoint named `{target}`"),
                        ));
                    }
                    Some(t) if t.tls.is_none() => {
                        return Err(ConfigError::new(
                            format!("entrypoints.{name}.redirect_to"),
                            format!("entrypoint `{target}` is not a TLS entrypoint"),
                        ));
                    }
                    Some(_) => {}
                }
            }
            if let Some(tls) = &ep.tls {
                if tls.alpn.is_empty() {
                    return Err(ConfigError::new(
                        format!("entrypoints.{name}.tls.alpn"),
                        "must name at least one protocol (h2, http/1.1)",
                    ));
                }
                for p in &tls.alpn {
                    if p != "h2" && p != "http/1.1" {
                        return Err(ConfigError::new(
                            format!("entrypoints.{name}.tls.alpn"),
                            format!("unsupported protocol `{p}` (use h2 or http/1.1)"),
                        ));
                    }
                }
            }
        }
        if let Some(admin) = &self.admin {
            crate::admin_api::check_admin_config(admin)?;
        }
        for (name, router) in &self.routers {
            ingress_router::FileRoute::new(name.clone(), &router.rule, router.priority, ())
                .map_err(|e| ConfigError::new(format!("routers.{name}.rule"), e.to_string()))?;
            if !self.services.contains_key(&router.service) {
                return Err(ConfigError::new(
                    format!("routers.{name}.service"),
                    format!("no service named `{}`", router.service),
                ));
            }
            if let Some(eps) = &router.entrypoints {
                for ep in eps {
                    if !self.entrypoints.contains_key(ep) {
                        return Err(ConfigError::new(
                            format!("routers.{name}.entrypoints"),
                            format!("no entrypoint named `{ep}`"),
                        ));
                    }
                }
            }
        }
        for (name, svc) in &self.services {
            match (&svc.respond, svc.endpoints.is_empty()) {
                (Some(_), false) => {
                    return Err(ConfigError::new(
                        format!("services.{name}"),
                        "has both `respond` and `endpoints`; choose one",
                    ));
                }
                (None, true) => {
                    return Err(ConfigError::new(
                        format!("services.{name}.endpoints"),
                        "needs at least one endpoint (or a `respond` table)",
                    ));
                }
                _ => {}
            }
            if let Some(r) = &svc.respond {
                if http::StatusCode::from_u16(r.status).is_err() {
                    return Err(ConfigError::new(
                        format!("services.{name}.respond.status"),
                        format!("{} is not an HTTP status code", r.status),
                    ));
                }
                if http::HeaderValue::from_str(&r.content_type).is_err() {
                    return Err(ConfigError::new(
                        format!("services.{name}.respond.content_type"),
                        "is not a valid header value",
                    ));
                }
            }
            for (i, ep) in svc.endpoints.iter().enumerate() {
                crate::upstream::endpoint::parse_endpoint_url(&ep.url).map_err(|reason| {
                    ConfigError::new(format!("services.{name}.endpoints[{i}].url"), reason)
                })?;
                if ep.weight == 0 {
                    return Err(ConfigError::new(
                        format!("services.{name}.endpoints[{i}].weight"),
                        "must be at least 1",
                    ));
                }
            }
            if let Some(hc) = &svc.health_check {
                if !hc.path.starts_with('/') {
                    return Err(ConfigError::new(
                        format!("services.{name}.health_check.path"),
                        "must start with `/`",
                    ));
                }
                if hc.interval.is_zero() {
                    return Err(ConfigError::new(
                        format!("services.{name}.health_check.interval"),
                        "must be positive",
                    ));
                }
            }
        }
        if let Some(url) = &self.acme_challenge.forward_to {
            crate::upstream::endpoint::parse_endpoint_url(url)
                .map_err(|reason| ConfigError::new("acme_challenge.forward_to", reason))?;
        }
        if self.limits.max_headers == 0 {
            return Err(ConfigError::new("limits.max_headers", "must be positive"));
        }
        if self.limits.max_header_bytes < 8192 {
            return Err(ConfigError::new(
                "limits.max_header_bytes",
                "must be at least 8192",
            ));
        }
        Ok(())
    }
}
