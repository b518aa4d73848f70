//! `ingress-router`: decides, for every request, which backend serves it.
//!
//! Routes come from two sources:
//!
//! * **Traefik v3 rules** (the file provider's `[routers.*]`): see [`rule`] for the syntax.
//!   Priority defaults to the rule's length in bytes, as in Traefik; higher wins, first match in
//!   priority order. Traefik leaves equal priorities undefined; Fairway breaks ties by router
//!   name (lexicographically smaller wins), so a table always routes the same way.
//! * **Kubernetes Ingress** objects (see [`ingress`]), with the spec's semantics: `Exact` is
//!   byte-equal; `Prefix` matches whole path segments and ignores a trailing `/` in the rule;
//!   `ImplementationSpecific` is treated as `Prefix` (an empty path as `/`); precise hosts beat
//!   one-label wildcards, which beat host-less rules; the longest path wins and `Exact` beats
//!   `Prefix` at equal length; `defaultBackend` catches the rest. Colliding rules from several
//!   Ingresses go to the oldest (`creationTimestamp`, then `namespace/name`) and are reported as
//!   [`Warning`]s.
//!
//! # How the two sources share one table
//!
//! They form three precedence classes, tried in order:
//!
//! 1. **File routes**: the best-ranked file route whose rule matches wins. File routes are the
//!    operator's explicit configuration, so they may override anything Kubernetes says (for
//!    example a maintenance page).
//! 2. **Ingress rules**: "virtual host first". The request's host selects exactly one virtual
//!    host: the precise host if any Ingress rule names it, else the one-label wildcard that covers
//!    it, else the host-less rules. A host that has rules never falls through to less specific
//!    ones (nginx/Envoy behaviour). Within it, the longest matching path wins.
//! 3. **Ingress `defaultBackend`**: the oldest one catches whatever 1 and 2 did not take,
//!    including requests whose virtual host has no matching path.
//!
//! Nothing matched → `None` (the proxy answers 404).
//!
//! # Compiled matching
//!
//! [`Table`] compiles routes into hash indexes (exact host, wildcard suffix, host-less; per host
//! an exact-path map and a segment-wise prefix trie) and keeps a priority-ordered list only for
//! Traefik rules that need regexps, headers, methods, queries, client IPs or negation.
//! [`Table::route`] allocates nothing. [`reference::Reference`] is the naive "sort and scan"
//! implementation of the same semantics; property tests check they agree. [`SharedTable`] swaps
//! tables with `arc-swap`; [`Table::explain`] tells why.
//!
//! ```
//! use ingress_router::{RequestView, Table};
//!
//! let mut builder = Table::builder();
//! builder.rule("api", "Host(`example.com`) && PathPrefix(`/api`)", None, "api-svc")?;
//! builder.rule("web", "Host(`example.com`)", None, "web-svc")?;
//! let table = builder.build()?;
//! let m = table.route(&RequestView::new("Example.com:443", "/api/v1")).unwrap();
//! assert_eq!(*m.backend, "api-svc");
//! # Ok::<(), ingress_router::RouterError>(())
//! ```

mod error;
mod eval;
mod explain;
mod hash;
mod hosts;
pub mod ingress;
mod prepare;
pub mod reference;
mod request;
mod route;
pub mod rule;
mod scoped;
mod shared;
mod table;
mod trie;

/// The `http` crate this API uses (`HeaderMap`, `Request`), re-exported for callers.
pub use http;

pub use error::RouterError;
pub use explain::{ExplainedMatch, ExplainedRequest, Explanation, Loser};
pub use request::RequestView;
pub use route::{
    FileRoute, IngressMatch, IngressOrigin, IngressRoute, Matched, PathType, RouteInfo,
    RouteSource, Warning,
};
pub use rule::Rule;
pub use shared::SharedTable;
pub use table::{Table, TableBuilder};
