//! The versioned admin JSON API behind the dashboard: `/api/v1/...`, and the same documents
//! at the unversioned `/api/...` paths (the current version, see
//! [`crate::dashboard::versioned`]).
//!
//! Every document is built from the same immutable snapshots the data plane reads (the
//! configuration [`Runtime`], the certificate store's [`Snapshot`]) plus a little bookkeeping
//! kept here ([`DashboardState`]: the last reload outcome, the bearer token). The API is
//! read-only: the admin listener answers `GET`/`HEAD` only.
//!
//! Certificates are described by their public facts (names, issuer, serial, validity); the
//! private key is never read here, so no response can carry key material.
//!
//! The field-by-field description is `ingress-proxy/ADMIN_API.md`; bump [`API_VERSION`] (and the
//! path prefix) on any incompatible change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use acme_store::Snapshot;
use arc_swap::{ArcSwap, ArcSwapOption};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode, Uri};
use serde_json::{Value, json};

use crate::body::ProxyBody;
use crate::clock::now_ms;
use crate::config::{AdminConfig, LoadBalancing, ProxyConfig};
#[cfg(test)]
use crate::dashboard::constant_time_eq;
use crate::dashboard::is_public;
use crate::error::ConfigError;
use crate::metrics::Metrics;
use crate::runtime::{RouterDoc, Runtime};
use crate::server::Shared;
use crate::upstream::service::ServiceKind;
#[cfg(test)]
use http::header::AUTHORIZATION;

/// The API version served under `/api/v1`.
pub(crate) const API_VERSION: u32 = 1;

#[path = "admin_rates.rs"]
mod rates;

use rates::RouteRates;
pub(crate) use rates::SAMPLE_INTERVAL;

/// Every document under `/api/v1/` (and, unversioned, under `/api/`), for the index and the
/// tests that walk them all.
pub(crate) const DOCUMENTS: [&str; 6] = [
    "problems",
    "routes",
    "explain",
    "services",
    "certificates",
    "vips",
];

/// Certificates expiring within this many days are reported as problems.
pub(crate) const EXPIRY_WARNING_DAYS: i64 = 14;

/// What a configuration says about each router that the compiled runtime does not keep
/// (TLS, certificate resolver), refreshed on every accepted reload.
#[derive(Debug, Default)]
pub(crate) struct RouterFacts {
    routers: BTreeMap<String, RouterFact>,
    /// Entrypoints with TLS: a router on one of them (an Ingress route is on all) serves TLS.
    tls_entrypoints: BTreeSet<String>,
}

#[derive(Debug)]
struct RouterFact {
    tls: bool,
    cert_resolver: Option<String>,
}

impl RouterFacts {
    /// Extracts the facts from `config`.
    pub(crate) fn of(config: &ProxyConfig) -> Self {
        let routers = config
            .routers
            .iter()
            .map(|(name, r)| {
                let tls = config.entrypoints.iter().any(|(ep_name, ep)| {
                    ep.tls.is_some() && r.entrypoints.as_ref().is_none_or(|e| e.contains(ep_name))
                });
                let cert_resolver = r.tls.as_ref().and_then(|t| t.cert_resolver.clone());
                (name.clone(), RouterFact { tls, cert_resolver })
            })
            .collect();
        let tls_entrypoints = config
            .entrypoints
            .iter()
            .filter(|(_, ep)| ep.tls.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        RouterFacts {
            routers,
            tls_entrypoints,
        }
    }
}

/// The outcome of the last configuration reload.
#[derive(Debug, Default)]
struct ReloadLog {
    attempts: u64,
    failures: u64,
    last: Option<ReloadOutcome>,
}

#[derive(Debug)]
struct ReloadOutcome {
    ok: bool,
    at: SystemTime,
    error: Option<String>,
}

/// Dashboard bookkeeping shared by the admin listener: the bearer token, the entrypoint names,
/// the latest certificate snapshot and the reload log. Written off the request path only.
pub(crate) struct DashboardState {
    token: Option<Box<str>>,
    entrypoints: Box<[String]>,
    certificates: ArcSwapOption<Snapshot>,
    facts: ArcSwap<RouterFacts>,
    reloads: Mutex<ReloadLog>,
    rates: Mutex<RouteRates>,
}

impl std::fmt::Debug for DashboardState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("DashboardState")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("entrypoints", &self.entrypoints)
            .finish_non_exhaustive()
    }
}

/// Checks the `[admin]` section: a listener reachable from other hosts needs a token.
pub(crate) fn check_admin_config(admin: &AdminConfig) -> Result<(), ConfigError> {
    match crate::dashboard::missing_token_reason(admin.address, admin.token_file.is_some()) {
        Some(reason) => Err(ConfigError::new("admin.token_file", reason)),
        None => Ok(()),
    }
}

fn read_token(admin: &AdminConfig) -> Result<Option<Box<str>>, ConfigError> {
    let Some(path) = &admin.token_file else {
        return Ok(None);
    };
    crate::dashboard::read_token_file(path)
        .map(Some)
        .map_err(|reason| ConfigError::new("admin.token_file", reason))
}

impl DashboardState {
    /// The state for a proxy started with `config` on `entrypoints` (reads the token file).
    pub(crate) fn new(config: &ProxyConfig, entrypoints: &[String]) -> Result<Self, ConfigError> {
        let token = match &config.admin {
            Some(admin) => {
                check_admin_config(admin)?;
                read_token(admin)?
            }
            None => None,
        };
        Ok(Self::with_token(config, entrypoints, token))
    }

    fn with_token(config: &ProxyConfig, entrypoints: &[String], token: Option<Box<str>>) -> Self {
        DashboardState {
            token,
            entrypoints: entrypoints.into(),
            certificates: ArcSwapOption::empty(),
            facts: ArcSwap::from_pointee(RouterFacts::of(config)),
            reloads: Mutex::new(ReloadLog::default()),
            rates: Mutex::new(RouteRates::default()),
        }
    }

    /// Publishes the certificate store's latest snapshot to the dashboard.
    pub(crate) fn set_certificates(&self, snapshot: Arc<Snapshot>) {
        self.certificates.store(Some(snapshot));
    }

    /// Records a reload attempt; `facts` describe the attempted configuration and replace the
    /// current ones when it was accepted.
    pub(crate) fn record_reload<E: std::fmt::Display>(
        &self,
        facts: RouterFacts,
        result: &Result<(), E>,
        at: SystemTime,
    ) {
        if result.is_ok() {
            self.facts.store(Arc::new(facts));
        }
        self.log_reload(result.as_ref().err().map(|e| e.to_string()), at);
    }

    /// Records a configuration rejected before it reached the proxy (unreadable, unparsable).
    pub(crate) fn record_rejected(&self, error: String, at: SystemTime) {
        self.log_reload(Some(error), at);
    }

    fn log_reload(&self, error: Option<String>, at: SystemTime) {
        let mut log = self.reloads.lock().unwrap_or_else(|e| e.into_inner());
        log.attempts += 1;
        if error.is_some() {
            log.failures += 1;
        }
        log.last = Some(ReloadOutcome {
            ok: error.is_none(),
            at,
            error,
        });
    }

    /// Samples every router's request and error totals at `at_ms` (monotonic milliseconds),
    /// for the per-second rates of `/api/v1/routes`. Called by the admin listener once per
    /// [`SAMPLE_INTERVAL`].
    pub(crate) fn sample_rates(&self, rt: &Runtime, metrics: &Metrics, at_ms: u64) {
        let docs = rt.router_docs();
        let totals: Vec<(u64, u64)> = docs
            .iter()
            .map(|r| metrics.route_totals(&r.name, &r.service))
            .collect();
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        rates.record(
            at_ms,
            docs.iter()
                .zip(totals)
                .map(|(r, t)| (r.name.as_str(), r.service.as_str(), t)),
        );
    }

    /// Whether `headers` carry the configured bearer token (always true without a token).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        crate::dashboard::authorized(self.token.as_deref(), headers)
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<ProxyBody> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(ProxyBody::full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    json_response(status, &json!({ "error": message }))
}

/// Answers the dashboard's paths and enforces the bearer token on every non-public path.
/// Returns `None` for paths the caller (the admin listener) serves itself.
pub(crate) fn answer(
    shared: &Shared,
    uri: &Uri,
    headers: &HeaderMap,
    now: SystemTime,
) -> Option<Response<ProxyBody>> {
    let path = uri.path();
    let state = &shared.dashboard;
    if !is_public(path) && !state.authorized(headers) {
        let mut r = error_response(StatusCode::UNAUTHORIZED, "a bearer token is required");
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"fairway-admin\""),
        );
        return Some(r);
    }
    if let Some(resp) = crate::dashboard::serve(path) {
        return Some(resp);
    }
    // `/api/routes`, `/api/certificates`, …: the current version's documents.
    let path = crate::dashboard::versioned(path);
    let rt = shared.runtime.load();
    let doc = match &*path {
        "/api/v1" | "/api/v1/" => index_doc(),
        "/api/v1/routes" => routes_doc(shared, &rt),
        "/api/v1/services" => services_doc(&rt, now_ms()),
        "/api/v1/certificates" => certificates_doc(state.certificates.load_full().as_deref(), now),
        "/api/v1/vips" => vips_doc(),
        "/api/v1/explain" => match explain_doc(state, &rt, uri.query().unwrap_or("")) {
            Ok(doc) => doc,
            Err(msg) => return Some(error_response(StatusCode::BAD_REQUEST, &msg)),
        },
        "/api/v1/problems" => problems_doc(shared, &rt, now),
        p if p.starts_with("/api/v1/") => {
            return Some(error_response(StatusCode::NOT_FOUND, "no such API path"));
        }
        _ => return None,
    };
    Some(json_response(StatusCode::OK, &doc))
}

fn index_doc() -> Value {
    // The page shows the sections in this order; `vips` is the speaker's part.
    json!({
        "api_version": API_VERSION,
        "component": "proxy",
        "sections": DOCUMENTS.iter().filter(|d| **d != "vips").collect::<Vec<_>>(),
        "read_only": true,
    })
}

/// Where a router came from: a file router is one of the configuration's `[routers]`; the
/// others are the Kubernetes provider's, named `ingress/<ns>/<name>/<rule>/<path>` or
/// `ingress/<ns>/<name>/default` (Kubernetes names hold no `/`, so the split is exact).
fn router_source(facts: &RouterFacts, name: &str) -> Value {
    use ingress_router::RouteSource;
    let source = match name
        .strip_prefix("ingress/")
        .map(|r| r.split('/').collect::<Vec<_>>())
    {
        Some(parts) if !facts.routers.contains_key(name) => match parts[..] {
            [namespace, ingress, "default"] => Some(RouteSource::IngressDefaultBackend {
                namespace: namespace.to_owned(),
                name: ingress.to_owned(),
            }),
            [namespace, ingress, rule, path] => match (rule.parse(), path.parse()) {
                (Ok(rule_index), Ok(path_index)) => Some(RouteSource::Ingress {
                    namespace: namespace.to_owned(),
                    name: ingress.to_owned(),
                    rule_index,
                    path_index,
                }),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    let source = source.unwrap_or_else(|| RouteSource::File {
        router: name.to_owned(),
    });
    serde_json::to_value(source).unwrap_or(Value::Null)
}

/// A rate for JSON: two decimals, `null` until the router has been sampled twice.
fn per_second(rate: Option<f64>) -> Value {
    rate.map_or(Value::Null, |r| json!((r * 100.0).round() / 100.0))
}

fn router_json(
    shared: &Shared,
    facts: &RouterFacts,
    rates: &mut RouteRates,
    r: &RouterDoc,
) -> Value {
    let fact = facts.routers.get(&r.name);
    let tls = match fact {
        Some(f) => f.tls,
        None => r
            .entrypoints
            .iter()
            .any(|e| facts.tls_entrypoints.contains(e)),
    };
    let (requests, errors) = shared.metrics.route_totals(&r.name, &r.service);
    let rate = rates.rate(&r.name, &r.service);
    json!({
        "name": r.name,
        "source": router_source(facts, &r.name),
        "rule": r.rule,
        "priority": r.priority,
        "service": r.service,
        "entrypoints": r.entrypoints,
        "tls": tls,
        "cert_resolver": fact.and_then(|f| f.cert_resolver.clone()),
        "requests_per_second": per_second(rate.map(|r| r.requests)),
        "errors_per_second": per_second(rate.map(|r| r.errors)),
        "rate_window_seconds": rate.map(|r| r.seconds),
        "requests_total": requests,
        "errors_total": errors,
    })
}

fn routes_doc(shared: &Shared, rt: &Runtime) -> Value {
    let facts = shared.dashboard.facts.load();
    let docs = rt.router_docs();
    let routers: Vec<Value> = {
        let mut rates = shared
            .dashboard
            .rates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        docs.iter()
            .map(|r| router_json(shared, &facts, &mut rates, r))
            .collect()
    };
    // The services too (as in `/api/v1/services`), so one request shows where routes lead and
    // in what state; the proxy's first `/api/routes` had this shape and scripts rely on it.
    let mut services = services_doc(rt, now_ms());
    let services = services["services"].take();
    json!({
        "api_version": API_VERSION,
        "rate_sample_seconds": SAMPLE_INTERVAL.as_secs(),
        "routers": routers,
        "services": services,
    })
}

fn policy_name(p: LoadBalancing) -> &'static str {
    match p {
        LoadBalancing::RoundRobin => "round_robin",
        LoadBalancing::Weighted => "weighted",
        LoadBalancing::LeastRequests => "least_requests",
    }
}

fn services_doc(rt: &Runtime, now_ms: u64) -> Value {
    let services: Vec<Value> = rt
        .services
        .iter()
        .map(|(name, svc)| match &svc.kind {
            ServiceKind::Static(s) => json!({
                "name": name,
                "kind": "static",
                "status": s.status.as_u16(),
                "load_balancer": null,
                "endpoints": [],
            }),
            ServiceKind::Upstream(u) => {
                let set = u.set.load();
                let endpoints: Vec<Value> = set
                    .endpoints
                    .iter()
                    .map(|ep| {
                        let ejected = ep.passive().is_ejected(now_ms);
                        let down = ep.is_active_down();
                        let state = if ejected {
                            "ejected"
                        } else if down {
                            "down"
                        } else {
                            "healthy"
                        };
                        json!({
                            "url": ep.url(),
                            "state": state,
                            "available": ep.is_available(now_ms),
                            "ejected": ejected,
                            "active_down": down,
                            "inflight": ep.inflight(),
                        })
                    })
                    .collect();
                json!({
                    "name": name,
                    "kind": "upstream",
                    "load_balancer": policy_name(set.balancer.policy()),
                    "endpoints": endpoints,
                })
            }
        })
        .collect();
    json!({ "api_version": API_VERSION, "services": services })
}

/// Seconds from `now` to `t` (negative when `t` is past).
fn seconds_until(t: SystemTime, now: SystemTime) -> i64 {
    match t.duration_since(now) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC), so the API needs no date library.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn cert_status(seconds_left: i64) -> &'static str {
    if seconds_left <= 0 {
        "expired"
    } else if seconds_left < EXPIRY_WARNING_DAYS * 86_400 {
        "expiring"
    } else {
        "ok"
    }
}

pub(crate) fn certificates_doc(snapshot: Option<&Snapshot>, now: SystemTime) -> Value {
    let Some(snap) = snapshot else {
        return json!({
            "api_version": API_VERSION,
            "available": false,
            "renewal_facts": false,
            "now": rfc3339(now),
            "certificates": [],
            "store_problems": [],
        });
    };
    let mut certificates: Vec<(i64, Value)> = snap
        .entries()
        .iter()
        .map(|e| {
            let left = seconds_until(e.not_after(), now);
            let lifetime = seconds_until(e.not_after(), e.not_before()).max(1);
            (
                left,
                json!({
                    "resolver": e.resolver(),
                    "domain": e.main(),
                    "sans": e.sans(),
                    "names": e.names(),
                    "issuer": e.issuer(),
                    "subject": e.subject(),
                    "serial": e.serial_hex(),
                    "key_type": e.key_type().to_string(),
                    "store": e.store(),
                    "not_before": rfc3339(e.not_before()),
                    "not_after": rfc3339(e.not_after()),
                    "seconds_left": left,
                    "days_left": left.div_euclid(86_400),
                    "lifetime_days": lifetime / 86_400,
                    "status": cert_status(left),
                    "last_renewal": null,
                    "next_renewal": null,
                }),
            )
        })
        .collect();
    // Soonest expiry first: what needs attention is at the top.
    certificates.sort_by_key(|(left, _)| *left);
    let store_problems: Vec<Value> = snap
        .problems()
        .iter()
        .map(|p| {
            json!({
                "resolver": p.resolver,
                "domain": p.domain,
                "index": p.index,
                "reason": p.kind.to_string(),
            })
        })
        .collect();
    json!({
        "api_version": API_VERSION,
        "available": true,
        // The proxy serves certificates, it does not renew them: the issuer (fairway-controller
        // or the proxy's embedded one) fills `last_renewal`/`next_renewal` and sets this.
        "renewal_facts": false,
        "generation": snap.generation(),
        "now": rfc3339(now),
        "certificates": certificates.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "store_problems": store_problems,
    })
}

fn vips_doc() -> Value {
    json!({
        "api_version": API_VERSION,
        "available": false,
        "note": "VIPs are served by fairway-speaker's admin listener",
        "vips": [],
        "acme_leader": null,
    })
}

/// Decodes one `application/x-www-form-urlencoded` value.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| form_decode(v))
}

fn explain_doc(state: &DashboardState, rt: &Runtime, query: &str) -> Result<Value, String> {
    let url = query_param(query, "url")
        .filter(|u| !u.trim().is_empty())
        .ok_or("missing `url` query parameter")?;
    let url = url.trim();
    let method = query_param(query, "method")
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "GET".to_owned())
        .to_ascii_uppercase();
    if method.len() > 32 || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!("`{method}` is not an HTTP method"));
    }
    let only = query_param(query, "entrypoint").filter(|e| !e.is_empty());
    let full = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let uri: Uri = full
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let host = uri.authority().map(|a| a.as_str()).unwrap_or("");
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let view = ingress_router::RequestView::new(host, pq).with_method(&method);
    if let Some(name) = &only
        && !state.entrypoints.contains(name)
    {
        return Err(format!("no entrypoint named `{name}`"));
    }
    let results: Vec<Value> = state
        .entrypoints
        .iter()
        .zip(rt.entrypoints.iter())
        .filter(|(name, _)| only.as_ref().is_none_or(|o| o == *name))
        .map(|(name, ep)| {
            let e = ep.table.explain(&view);
            let matched = e.matched.as_ref().map(|m| {
                json!({
                    "router": &*m.backend.name,
                    "service": &*m.backend.service.name,
                    "route": m.route,
                })
            });
            json!({
                "entrypoint": name,
                "redirects_to_tls": ep.redirect_port.is_some(),
                "request": e.request,
                "matched": matched,
                "reason": e.reason,
                "losers": e.losers,
                "more_losers": e.more_losers,
            })
        })
        .collect();
    Ok(json!({
        "api_version": API_VERSION,
        "url": url,
        "method": method,
        "results": results,
    }))
}

fn problem(severity: &str, kind: &str, subject: String, message: String) -> Value {
    json!({ "severity": severity, "kind": kind, "subject": subject, "message": message })
}

/// Routers attached to the same entrypoint with the same rule and priority: only one of them
/// (the name that sorts first, the router's tie-break) can ever serve.
fn rule_collisions(rt: &Runtime) -> Vec<Value> {
    let mut groups: BTreeMap<(&str, &str, i64), Vec<&str>> = BTreeMap::new();
    let docs = rt.router_docs();
    for r in &docs {
        for ep in &r.entrypoints {
            groups
                .entry((ep.as_str(), r.rule.as_str(), r.priority))
                .or_default()
                .push(&r.name);
        }
    }
    let mut out = Vec::new();
    for ((ep, _, _), mut names) in groups {
        names.sort_unstable();
        let Some((winner, losers)) = names.split_first() else {
            continue;
        };
        for loser in losers {
            out.push(problem(
                "warning",
                "route_collision",
                format!("router `{loser}`"),
                format!(
                    "same rule and priority as router `{winner}` on entrypoint `{ep}`; `{winner}` always wins"
                ),
            ));
        }
    }
    out
}

/// Expired, expiring (within [`EXPIRY_WARNING_DAYS`]) and undecodable certificates, most
/// urgent first.
pub(crate) fn certificate_problems(snapshot: Option<&Snapshot>, now: SystemTime) -> Vec<Value> {
    let mut problems = Vec::new();
    if let Some(snap) = snapshot {
        let mut certs: Vec<_> = snap
            .entries()
            .iter()
            .map(|e| (seconds_until(e.not_after(), now), e))
            .collect();
        certs.sort_by_key(|(left, _)| *left);
        for (left, e) in certs {
            let subject = format!("certificate {} ({})", e.main(), e.resolver());
            match cert_status(left) {
                "expired" => problems.push(problem(
                    "error",
                    "certificate_expired",
                    subject,
                    format!("expired on {}", rfc3339(e.not_after())),
                )),
                "expiring" => problems.push(problem(
                    "warning",
                    "certificate_expiring",
                    subject,
                    format!(
                        "expires in {} days ({})",
                        left.div_euclid(86_400),
                        rfc3339(e.not_after())
                    ),
                )),
                _ => {}
            }
        }
        for p in snap.problems() {
            problems.push(problem(
                "error",
                "certificate_invalid",
                format!("certificate {} ({})", p.domain, p.resolver),
                p.kind.to_string(),
            ));
        }
    }
    problems
}

fn problems_doc(shared: &Shared, rt: &Runtime, now: SystemTime) -> Value {
    let state = &shared.dashboard;
    let mut problems = certificate_problems(state.certificates.load_full().as_deref(), now);
    let now_ms = now_ms();
    for (name, svc) in &rt.services {
        if let ServiceKind::Upstream(u) = &svc.kind {
            for ep in u.set.load().endpoints.iter() {
                if ep.passive().is_ejected(now_ms) {
                    problems.push(problem(
                        "warning",
                        "endpoint_ejected",
                        format!("service `{name}` endpoint {}", ep.url()),
                        "ejected after consecutive connection failures".to_owned(),
                    ));
                } else if ep.is_active_down() {
                    problems.push(problem(
                        "warning",
                        "endpoint_down",
                        format!("service `{name}` endpoint {}", ep.url()),
                        "failing its active health check".to_owned(),
                    ));
                }
            }
        }
    }
    for (name, ep) in state.entrypoints.iter().zip(rt.entrypoints.iter()) {
        for w in ep.table.warnings() {
            problems.push(problem(
                "warning",
                "route_collision",
                w.subject.clone(),
                format!("{} (entrypoint `{name}`)", w.message),
            ));
        }
    }
    problems.extend(rule_collisions(rt));
    let reloads = state.reloads.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(last) = &reloads.last
        && !last.ok
    {
        problems.push(problem(
            "error",
            "reload_failed",
            "configuration".to_owned(),
            format!(
                "the last reload ({}) was rejected, still serving the previous configuration: {}",
                rfc3339(last.at),
                last.error.as_deref().unwrap_or("unknown error")
            ),
        ));
    }
    let reload = json!({
        "attempts": reloads.attempts,
        "failures": reloads.failures,
        "last_ok": reloads.last.as_ref().map(|l| l.ok),
        "last_at": reloads.last.as_ref().map(|l| rfc3339(l.at)),
    });
    json!({
        "api_version": API_VERSION,
        "now": rfc3339(now),
        "problems": problems,
        "reloads": reload,
    })
}

#[cfg(test)]
#[path = "admin_api_tests.rs"]
mod tests;
