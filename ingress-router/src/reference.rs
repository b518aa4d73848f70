//! The naive reference matcher: sort by precedence, then scan and evaluate every route.
//!
//! It encodes the same semantics as [`Table`](crate::Table) with none of its indexes: each file
//! route's whole rule is evaluated in rank order (first match wins, like Traefik's linear scan),
//! then the Ingress virtual host is chosen by scanning all paths, then paths are scanned in spec
//! order. The property tests check that the compiled table returns exactly what this returns,
//! and the benchmark uses it as the "linear scan as Traefik does it" baseline.

use crate::error::RouterError;
use crate::eval::{HostPat, Normalized};
use crate::prepare::Prepared;
use crate::request::{MAX_HOST, RequestView, normalize_host};
use crate::route::{FileRoute, IngressRoute, Matched};

/// A route set matched by linear scan. `O(routes)` per request; for tests and baselines.
#[derive(Debug, Clone)]
pub struct Reference<B> {
    prepared: Prepared<B>,
}

impl<B> Reference<B> {
    /// Builds the reference from the same inputs as [`TableBuilder`](crate::TableBuilder).
    pub fn new(
        file_routes: Vec<FileRoute<B>>,
        ingress_routes: Vec<IngressRoute<B>>,
    ) -> Result<Self, RouterError> {
        Ok(Reference {
            prepared: Prepared::new(file_routes, ingress_routes)?,
        })
    }

    /// The route that takes the request, by linear scan.
    pub fn route(&self, request: &RequestView<'_>) -> Option<Matched<'_, B>> {
        let mut buf = [0u8; MAX_HOST];
        let host = normalize_host(request.host(), &mut buf);
        let req = Normalized {
            host,
            path: request.routing_path(),
            view: request,
        };
        let p = &self.prepared;
        let entry = p
            .file
            .iter()
            .find(|f| f.compiled.eval(&req))
            .map(|f| f.entry)
            .or_else(|| {
                let vhost = choose_vhost(p, host);
                p.paths
                    .iter()
                    .find(|x| x.host == *vhost && x.path_matches(req.path))
                    .map(|x| x.entry)
            })
            .or_else(|| p.defaults.first().copied())?;
        let e = &p.entries[entry as usize];
        Some(Matched {
            backend: &p.backends[entry as usize],
            route: &e.info,
        })
    }
}

/// The virtual host whose Ingress paths apply: precise host if any path names it, else the
/// one-label wildcard covering it if any, else the host-less rules.
pub(crate) fn choose_vhost<'p, B>(p: &'p Prepared<B>, host: Option<&str>) -> &'p HostPat {
    static ANY: HostPat = HostPat::Any;
    if let Some(h) = host {
        if let Some(x) = p
            .paths
            .iter()
            .find(|x| matches!(&x.host, HostPat::Exact(e) if e == h))
        {
            return &x.host;
        }
        if let Some(x) = p
            .paths
            .iter()
            .find(|x| matches!(x.host, HostPat::Wildcard(_)) && x.host.matches(host))
        {
            return &x.host;
        }
    }
    &ANY
}
