//! `explain`: the decision spelled out for a human, with the candidates that lost.
//!
//! It walks the precedence-ordered routes (the reference algorithm), so it reports exactly what
//! [`Table::route`](crate::Table::route) returns; the tests check that they agree.

use serde::Serialize;

use crate::eval::{HostPat, Normalized};
use crate::prepare::Prepared;
use crate::reference::choose_vhost;
use crate::request::{MAX_HOST, RequestView, normalize_host};
use crate::route::RouteInfo;

/// At most this many losing candidates are listed.
const MAX_LOSERS: usize = 50;

/// The request as the router saw it (normalised).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainedRequest {
    /// Normalised host (`None` if empty).
    pub host: Option<String>,
    /// Routing path.
    pub path: String,
    /// Method.
    pub method: String,
}

/// The winning route.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainedMatch<'t, B> {
    /// The route.
    pub route: &'t RouteInfo,
    /// Its backend.
    pub backend: &'t B,
}

/// A route that was considered and lost (or did not match), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loser<'t> {
    /// The route.
    pub route: &'t RouteInfo,
    /// Why it did not win.
    pub why: String,
}

/// The full explanation of one routing decision.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation<'t, B> {
    /// The normalised request.
    pub request: ExplainedRequest,
    /// The winner, if any.
    pub matched: Option<ExplainedMatch<'t, B>>,
    /// Why the winner won (or why nothing matched).
    pub reason: String,
    /// Candidates that lost, best first (at most 50).
    pub losers: Vec<Loser<'t>>,
    /// How many more losers were not listed.
    pub more_losers: usize,
}

struct Losers<'t> {
    list: Vec<Loser<'t>>,
    more: usize,
}

impl<'t> Losers<'t> {
    fn push(&mut self, route: &'t RouteInfo, why: String) {
        if self.list.len() < MAX_LOSERS {
            self.list.push(Loser { route, why });
        } else {
            self.more += 1;
        }
    }
}

fn host_text(h: Option<&str>) -> String {
    match h {
        Some(h) => format!("`{h}`"),
        None => "(none)".into(),
    }
}

pub(crate) fn explain<'t, B>(p: &'t Prepared<B>, request: &RequestView<'_>) -> Explanation<'t, B> {
    let mut buf = [0u8; MAX_HOST];
    let host = normalize_host(request.host(), &mut buf);
    let req = Normalized {
        host,
        path: request.routing_path(),
        view: request,
    };
    let summary = ExplainedRequest {
        host: host.map(str::to_owned),
        path: req.path.to_owned(),
        method: request.method().to_owned(),
    };
    let mut losers = Losers {
        list: Vec::new(),
        more: 0,
    };
    let done = |winner: u32, reason: String, losers: Losers<'t>| {
        let e = &p.entries[winner as usize];
        Explanation {
            request: summary.clone(),
            matched: Some(ExplainedMatch {
                route: &e.info,
                backend: &p.backends[winner as usize],
            }),
            reason,
            losers: losers.list,
            more_losers: losers.more,
        }
    };

    // 1. File routes: first match in rank order.
    let matching: Vec<usize> = (0..p.file.len())
        .filter(|&i| p.file[i].compiled.eval(&req))
        .collect();
    if let Some(&w) = matching.first() {
        let wf = &p.file[w];
        let name = |i: usize| match &p.entries[p.file[i].entry as usize].info.source {
            crate::route::RouteSource::File { router } => router.clone(),
            _ => String::new(),
        };
        for &i in &matching[1..] {
            let f = &p.file[i];
            let why = if f.priority == wf.priority {
                format!(
                    "also matches with the same priority {}; tie broken by router name (`{}` sorts before `{}`)",
                    f.priority,
                    name(w),
                    name(i)
                )
            } else {
                format!(
                    "also matches, but priority {} < {}",
                    f.priority, wf.priority
                )
            };
            losers.push(&p.entries[f.entry as usize].info, why);
        }
        let reason = format!(
            "file router `{}` matched: rule `{}` is true; priority {} is the highest of {} matching file router(s) (file routers take precedence over Ingress rules)",
            name(w),
            wf.rule,
            wf.priority,
            matching.len()
        );
        return done(wf.entry, reason, losers);
    }

    // 2. Ingress: virtual host first, then the longest path.
    let vhost = choose_vhost(p, host);
    let host_reason = match vhost {
        HostPat::Exact(h) => format!("host matched `{h}` exactly"),
        HostPat::Wildcard(s) => format!("host {} matched wildcard `*.{s}`", host_text(host)),
        HostPat::Any if p.paths.iter().any(|x| x.host == HostPat::Any) => {
            format!(
                "no Ingress rule names host {}; host-less rules apply",
                host_text(host)
            )
        }
        HostPat::Any => format!("no Ingress rule covers host {}", host_text(host)),
    };
    let in_vhost: Vec<usize> = (0..p.paths.len())
        .filter(|&i| p.paths[i].host == *vhost)
        .collect();
    let path_ok: Vec<usize> = in_vhost
        .iter()
        .copied()
        .filter(|&i| p.paths[i].path_matches(req.path))
        .collect();
    let winner = path_ok.first().copied();
    if let Some(w) = winner {
        let wp = &p.paths[w];
        for &i in &path_ok[1..] {
            let lp = &p.paths[i];
            let why = if lp.written.len() < wp.written.len() {
                format!(
                    "path `{}` also matches but is shorter than `{}`",
                    lp.written, wp.written
                )
            } else if wp.exact && !lp.exact {
                "same length; Exact beats Prefix".to_owned()
            } else {
                "same host and path; the older Ingress (then namespace/name, then position) wins"
                    .to_owned()
            };
            losers.push(&p.entries[lp.entry as usize].info, why);
        }
    }
    for &i in &in_vhost {
        let lp = &p.paths[i];
        if !lp.path_matches(req.path) {
            let kind = if lp.exact { "Exact" } else { "Prefix" };
            losers.push(
                &p.entries[lp.entry as usize].info,
                format!("path `{}` {kind} does not match `{}`", lp.written, req.path),
            );
        }
    }
    for x in &p.paths {
        if x.host != *vhost && x.host.matches(host) && x.path_matches(req.path) {
            losers.push(
                &p.entries[x.entry as usize].info,
                format!(
                    "would match, but host {} has its own rules (virtual host first: precise, then wildcard, then host-less)",
                    host_text(host)
                ),
            );
        }
    }
    if let Some(w) = winner {
        let wp = &p.paths[w];
        let kind = if wp.exact { "Exact" } else { "Prefix" };
        let reason = format!(
            "{host_reason}; path `{}` {kind}, longest of {} matching path(s)",
            wp.written,
            path_ok.len()
        );
        return done(wp.entry, reason, losers);
    }

    // 3. Default backend.
    let rule_miss = if in_vhost.is_empty() {
        host_reason
    } else {
        format!(
            "{host_reason}, but none of its {} path(s) matches `{}`",
            in_vhost.len(),
            req.path
        )
    };
    if let Some((&d, rest)) = p.defaults.split_first() {
        for &l in rest {
            losers.push(
                &p.entries[l as usize].info,
                "a defaultBackend of an older Ingress wins".into(),
            );
        }
        return done(
            d,
            format!("{rule_miss}; the Ingress defaultBackend catches the rest"),
            losers,
        );
    }
    let reason = if p.file.is_empty() {
        format!("no route matched: {rule_miss}; no defaultBackend")
    } else {
        format!("no route matched: no file router rule is true; {rule_miss}; no defaultBackend")
    };
    Explanation {
        request: summary,
        matched: None,
        reason,
        losers: losers.list,
        more_losers: losers.more,
    }
}
