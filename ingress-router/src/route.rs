//! Route specifications (what a table is built from) and route information (what a match reports).

use std::fmt;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::error::RouterError;
use crate::rule::Rule;

/// A Traefik-rule route from the file provider (`[routers.<name>]`).
#[derive(Debug, Clone)]
pub struct FileRoute<B> {
    /// The router's name (unique within a table; breaks priority ties).
    pub name: String,
    /// The rule text as written (its byte length is the default priority).
    pub rule_text: String,
    /// The parsed rule.
    pub rule: Rule,
    /// Effective priority: higher wins.
    pub priority: i64,
    /// What the route leads to.
    pub backend: B,
}

impl<B> FileRoute<B> {
    /// Parses `rule_text`; `priority` `None` or `Some(0)` means "the rule's length in bytes", as in
    /// Traefik. The error names the router and the column.
    pub fn new(
        name: impl Into<String>,
        rule_text: &str,
        priority: Option<i64>,
        backend: B,
    ) -> Result<Self, RouterError> {
        let name = name.into();
        let rule = Rule::parse(rule_text).map_err(|e| RouterError::Router {
            router: name.clone(),
            message: e.to_string(),
        })?;
        let priority = match priority {
            None | Some(0) => i64::try_from(rule_text.len()).unwrap_or(i64::MAX),
            Some(p) => p,
        };
        Ok(FileRoute {
            name,
            rule_text: rule_text.to_owned(),
            rule,
            priority,
            backend,
        })
    }
}

/// Kubernetes `pathType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PathType {
    /// Byte-equal, case-sensitive.
    Exact,
    /// Element-wise prefix on `/`-separated segments; a trailing `/` in the rule is ignored.
    Prefix,
    /// Fairway treats it exactly as `Prefix` (an empty path is `/`).
    ImplementationSpecific,
}

impl PathType {
    /// Parses the Kubernetes spelling.
    pub fn from_k8s(s: &str) -> Option<PathType> {
        match s {
            "Exact" => Some(PathType::Exact),
            "Prefix" => Some(PathType::Prefix),
            "ImplementationSpecific" => Some(PathType::ImplementationSpecific),
            _ => None,
        }
    }

    /// Whether it matches exactly (as opposed to by prefix).
    pub fn is_exact(self) -> bool {
        self == PathType::Exact
    }
}

impl fmt::Display for PathType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathType::Exact => "Exact",
            PathType::Prefix => "Prefix",
            PathType::ImplementationSpecific => "ImplementationSpecific",
        })
    }
}

/// Which Ingress object a route came from; its age orders colliding routes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IngressOrigin {
    /// `metadata.namespace` (`default` when absent).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.creationTimestamp`; objects without one count as newest.
    pub created: Option<Timestamp>,
}

/// What part of an Ingress a route is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IngressMatch {
    /// `spec.rules[rule_index].http.paths[path_index]`.
    Path {
        /// Index in `spec.rules`.
        rule_index: usize,
        /// Index in the rule's `http.paths`.
        path_index: usize,
        /// `host` as written (`None`/empty: every host).
        host: Option<String>,
        /// `pathType`.
        path_type: PathType,
        /// `path` as written.
        path: String,
    },
    /// `spec.defaultBackend`: catches what no rule takes.
    DefaultBackend,
}

/// A route derived from a Kubernetes Ingress.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IngressRoute<B> {
    /// The Ingress it came from.
    pub origin: IngressOrigin,
    /// Which rule/path (or the default backend).
    pub matcher: IngressMatch,
    /// What the route leads to.
    pub backend: B,
}

impl<B> IngressRoute<B> {
    /// Replaces the backend (e.g. resolve a service reference into endpoints).
    pub fn map_backend<C>(self, f: impl FnOnce(B) -> C) -> IngressRoute<C> {
        IngressRoute {
            origin: self.origin,
            matcher: self.matcher,
            backend: f(self.backend),
        }
    }
}

/// Where a route came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RouteSource {
    /// A file-provider router.
    File {
        /// The router's name.
        router: String,
    },
    /// An Ingress rule path.
    Ingress {
        /// Namespace of the Ingress.
        namespace: String,
        /// Name of the Ingress.
        name: String,
        /// Index in `spec.rules`.
        rule_index: usize,
        /// Index in the rule's `http.paths`.
        path_index: usize,
    },
    /// An Ingress `spec.defaultBackend`.
    IngressDefaultBackend {
        /// Namespace of the Ingress.
        namespace: String,
        /// Name of the Ingress.
        name: String,
    },
}

impl fmt::Display for RouteSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteSource::File { router } => write!(f, "router `{router}`"),
            RouteSource::Ingress {
                namespace,
                name,
                rule_index,
                path_index,
            } => write!(
                f,
                "Ingress {namespace}/{name} rules[{rule_index}].http.paths[{path_index}]"
            ),
            RouteSource::IngressDefaultBackend { namespace, name } => {
                write!(f, "Ingress {namespace}/{name} defaultBackend")
            }
        }
    }
}

/// Description of one route, reported with every match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteInfo {
    /// Where it came from.
    pub source: RouteSource,
    /// The rule: Traefik text as written, or a description of the Ingress host/path.
    pub rule: String,
    /// The effective priority of a file route (`None` for Ingress routes, ordered by the spec).
    pub priority: Option<i64>,
}

/// A matched route: borrowed from the table, so reporting it allocates nothing.
#[derive(Debug)]
pub struct Matched<'t, B> {
    /// The backend to send the request to.
    pub backend: &'t B,
    /// Which route it was.
    pub route: &'t RouteInfo,
}

impl<B> Clone for Matched<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B> Copy for Matched<'_, B> {}

/// A problem found while building a table that does not stop it (collisions, skipped paths).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// What it is about (e.g. `Ingress ns/name rules[0].http.paths[1]`).
    pub subject: String,
    /// What happened.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.message)
    }
}
