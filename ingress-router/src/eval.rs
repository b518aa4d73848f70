//! Compiled matcher trees: the per-request evaluation of a Traefik rule.
//!
//! Used by the priority-ordered list of the compiled table (rules the indexes cannot hold), by the
//! reference matcher for every rule, and by `explain`.

use http::HeaderName;
use ipnet::IpNet;
use regex::Regex;

use crate::error::RouterError;
use crate::request::{RequestView, query_component_eq, split_first_label};
use crate::rule::{Matcher, Rule, parse_client_ip};

/// A host condition on the normalised host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum HostPat {
    /// Equal to this (lowercase, no trailing dot).
    Exact(String),
    /// Exactly one label followed by `.` and this suffix.
    Wildcard(String),
    /// Anything, even no host.
    Any,
}

impl HostPat {
    /// From a Traefik `Host` value or an Ingress `host` (normalised here). `None` for a lone
    /// `*`-style pattern that is not a whole first label.
    pub(crate) fn parse(raw: &str) -> Option<HostPat> {
        let host = raw.trim();
        if host.is_empty() || host == "*" {
            return Some(HostPat::Any);
        }
        if let Some(suffix) = host.strip_prefix("*.") {
            let suffix = crate::request::normalize_config_host(suffix);
            if suffix.is_empty() || suffix.contains('*') {
                return None;
            }
            return Some(HostPat::Wildcard(suffix));
        }
        if host.contains('*') {
            return None;
        }
        Some(HostPat::Exact(crate::request::normalize_config_host(host)))
    }

    #[inline]
    pub(crate) fn matches(&self, host: Option<&str>) -> bool {
        match self {
            HostPat::Any => true,
            HostPat::Exact(h) => host == Some(h.as_str()),
            HostPat::Wildcard(suffix) => host
                .and_then(split_first_label)
                .is_some_and(|(_, rest)| rest == suffix),
        }
    }
}

impl std::fmt::Display for HostPat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPat::Exact(h) => write!(f, "`{h}`"),
            HostPat::Wildcard(s) => write!(f, "wildcard `*.{s}`"),
            HostPat::Any => f.write_str("any host"),
        }
    }
}

/// The request, normalised once per lookup.
pub(crate) struct Normalized<'r> {
    pub(crate) host: Option<&'r str>,
    pub(crate) path: &'r str,
    pub(crate) view: &'r RequestView<'r>,
}

/// A rule with its regexps compiled and its values normalised.
#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    Host(HostPat),
    HostRegexp(Regex),
    Path(String),
    PathPrefix(String),
    PathRegexp(Regex),
    Method(String),
    Header(HeaderName, String),
    HeaderRegexp(HeaderName, Regex),
    Query(String, Option<String>),
    ClientIp(IpNet),
    Not(Box<Compiled>),
    And(Box<Compiled>, Box<Compiled>),
    Or(Box<Compiled>, Box<Compiled>),
}

fn regex(re: &str) -> Result<Regex, RouterError> {
    Regex::new(re).map_err(|e| RouterError::Rule {
        rule: re.to_owned(),
        column: 1,
        message: format!("invalid regexp: {e}"),
    })
}

fn header(name: &str) -> Result<HeaderName, RouterError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| RouterError::Rule {
        rule: name.to_owned(),
        column: 1,
        message: "invalid header name".into(),
    })
}

impl Compiled {
    pub(crate) fn new(rule: &Rule) -> Result<Compiled, RouterError> {
        Ok(match rule {
            Rule::Match(m) => match m {
                Matcher::Host(h) => {
                    Compiled::Host(HostPat::parse(h).ok_or_else(|| RouterError::Rule {
                        rule: rule.to_string(),
                        column: 1,
                        message: format!("invalid host pattern `{h}`"),
                    })?)
                }
                Matcher::HostRegexp(re) => Compiled::HostRegexp(regex(re)?),
                Matcher::Path(p) => Compiled::Path(p.clone()),
                Matcher::PathPrefix(p) => Compiled::PathPrefix(p.clone()),
                Matcher::PathRegexp(re) => Compiled::PathRegexp(regex(re)?),
                Matcher::Method(m) => Compiled::Method(m.clone()),
                Matcher::Header(k, v) => Compiled::Header(header(k)?, v.clone()),
                Matcher::HeaderRegexp(k, re) => Compiled::HeaderRegexp(header(k)?, regex(re)?),
                Matcher::Query(k, v) => Compiled::Query(k.clone(), v.clone()),
                Matcher::ClientIP(v) => {
                    Compiled::ClientIp(parse_client_ip(v).ok_or_else(|| RouterError::Rule {
                        rule: v.clone(),
                        column: 1,
                        message: "invalid IP or CIDR".into(),
                    })?)
                }
            },
            Rule::Not(r) => Compiled::Not(Box::new(Compiled::new(r)?)),
            Rule::And(a, b) => {
                Compiled::And(Box::new(Compiled::new(a)?), Box::new(Compiled::new(b)?))
            }
            Rule::Or(a, b) => {
                Compiled::Or(Box::new(Compiled::new(a)?), Box::new(Compiled::new(b)?))
            }
        })
    }

    /// Evaluates the rule; allocates nothing.
    pub(crate) fn eval(&self, req: &Normalized<'_>) -> bool {
        match self {
            Compiled::Host(h) => h.matches(req.host),
            Compiled::HostRegexp(re) => req.host.is_some_and(|h| re.is_match(h)),
            Compiled::Path(p) => req.path == p,
            Compiled::PathPrefix(p) => req.path.starts_with(p.as_str()),
            Compiled::PathRegexp(re) => re.is_match(req.path),
            Compiled::Method(m) => req.view.method().eq_ignore_ascii_case(m),
            Compiled::Header(k, v) => req
                .view
                .headers()
                .get_all(k)
                .iter()
                .any(|x| x.as_bytes() == v.as_bytes()),
            Compiled::HeaderRegexp(k, re) => req
                .view
                .headers()
                .get_all(k)
                .iter()
                .any(|x| x.to_str().is_ok_and(|s| re.is_match(s))),
            Compiled::Query(k, v) => req.view.query().split('&').any(|pair| {
                let (key, value) = match pair.find('=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, ""),
                };
                !pair.is_empty()
                    && query_component_eq(key, k)
                    && v.as_deref()
                        .is_none_or(|want| query_component_eq(value, want))
            }),
            Compiled::ClientIp(net) => req
                .view
                .client_ip()
                .is_some_and(|ip| net.contains(&ip.to_canonical())),
            Compiled::Not(r) => !r.eval(req),
            Compiled::And(a, b) => a.eval(req) && b.eval(req),
            Compiled::Or(a, b) => a.eval(req) || b.eval(req),
        }
    }
}
