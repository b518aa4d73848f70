// Fairway admin dashboard: reads the versioned JSON API (/api/v1) and renders it.
// Static and embedded in every Fairway binary: no external resources.
// Data is only ever written as text (textContent), never as HTML.
"use strict";

const API = "/api/v1";
const REFRESH_MS = 5000;
const TOKEN_KEY = "fairway-admin-token";
let sections = [];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

class Unauthorized extends Error {}

async function getJSON(path) {
  const headers = { "Accept": "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  const resp = await fetch(path, { headers, cache: "no-store" });
  if (resp.status === 401) throw new Unauthorized("token required");
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

function tbody(sectionId) {
  const tb = document.querySelector("#" + sectionId + " tbody");
  tb.replaceChildren();
  return tb;
}

function renderProblems(doc) {
  const list = document.getElementById("problem-list");
  list.replaceChildren();
  for (const p of doc.problems) {
    list.append(el("li", { class: "problem " + p.severity, "data-kind": p.kind },
      el("span", { class: "kind", text: p.kind.replaceAll("_", " ") }),
      el("span", { class: "subject", text: p.subject + ": " }),
      el("span", { class: "message", text: p.message })));
  }
  const count = document.getElementById("problem-count");
  count.textContent = String(doc.problems.length);
  count.classList.toggle("zero", doc.problems.length === 0);
  document.getElementById("problems").classList.toggle("clear", doc.problems.length === 0);
  document.getElementById("no-problems").hidden = doc.problems.length !== 0;
}

// A per-second rate from the API (sampled server-side over a sliding window); null until the
// router has been sampled twice.
function perSecond(v) {
  return v === null || v === undefined ? "–" : Number(v).toFixed(1);
}

function sourceText(src) {
  if (!src) return "";
  if (src.kind === "file") return "file";
  if (src.kind === "ingress") return "Ingress " + src.namespace + "/" + src.name;
  if (src.kind === "ingress_default_backend") return "Ingress " + src.namespace + "/" + src.name + " (default)";
  return src.kind;
}

function renderRoutes(doc) {
  const tb = tbody("routes");
  for (const r of doc.routers) {
    const span = r.rate_window_seconds ? " over the last " + r.rate_window_seconds + " s" : "";
    const totals = r.requests_total + " requests, " + r.errors_total + " errors since start" + span;
    tb.append(el("tr", { "data-router": r.name },
      el("td", { text: r.name }),
      el("td", { class: "rule", text: r.rule }),
      el("td", { text: sourceText(r.source) }),
      el("td", {}, ...r.entrypoints.map((e) => el("span", { class: "pill", text: e }))),
      el("td", { text: r.tls ? (r.cert_resolver ? "yes (" + r.cert_resolver + ")" : "yes") : "no" }),
      el("td", { text: r.service }),
      el("td", { class: "num", text: r.priority }),
      el("td", { class: "num rps", title: totals, text: perSecond(r.requests_per_second) }),
      el("td", { class: "num eps" + (r.errors_per_second > 0 ? " bad" : ""), title: totals,
        text: perSecond(r.errors_per_second) })));
  }
}

function renderServices(doc) {
  const tb = tbody("services");
  for (const s of doc.services) {
    if (s.endpoints.length === 0) {
      tb.append(el("tr", {}, el("td", { text: s.name }), el("td", { text: s.kind === "static" ? "fixed response " + s.status : "–" }),
        el("td", { class: "muted", text: "–" }), el("td", {}), el("td", {})));
      continue;
    }
    s.endpoints.forEach((ep, i) => {
      tb.append(el("tr", { "data-service": s.name },
        el("td", { text: i === 0 ? s.name : "" }),
        el("td", { text: i === 0 ? s.load_balancer : "" }),
        el("td", { class: "rule", text: ep.url }),
        el("td", { class: "state-" + ep.state, text: ep.state }),
        el("td", { class: "num", text: ep.inflight })));
    });
  }
}

function daysBar(c) {
  const days = c.days_left;
  const cls = c.status === "ok" ? (days < 30 ? "ok" : "ok") : c.status;
  const span = Math.max(c.lifetime_days || 90, 1);
  const pct = Math.max(0, Math.min(100, (days / span) * 100));
  const fill = el("div", { class: "fill " + (days < 7 ? "critical " : "") + cls });
  fill.style.width = (c.status === "expired" ? 100 : Math.max(pct, 3)) + "%";
  const label = c.status === "expired" ? "expired" : days + " days";
  return el("div", { class: "bar", title: "not after " + c.not_after }, fill, el("span", { class: "label", text: label }));
}

function when(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "string") return v;
  if (v.due) return "due now (window ended " + v.latest + ")";
  if (v.earliest && v.latest) return v.earliest === v.latest ? v.earliest : "between " + v.earliest + " and " + v.latest;
  const parts = [];
  if (v.outcome) parts.push(v.outcome);
  if (v.consecutive_failures) parts.push(v.consecutive_failures + " failures in a row");
  if (v.at) parts.push(v.at);
  if (v.error) parts.push(v.error);
  return parts.join(" · ");
}

function renderAcme(doc) {
  const me = doc.identity ? " (" + doc.identity + ")" : "";
  document.getElementById("acme-leadership").textContent = doc.is_leader
    ? "This replica" + me + " is the ACME leader (epoch " + doc.epoch + ") and issues certificates."
    : "This replica" + me + " is a standby; " + (doc.leader
      ? "the ACME leader is " + doc.leader + (doc.leader_renewed_at ? " (renewed " + doc.leader_renewed_at + ")" : "") + "."
      : "another replica holds the ACME lock.");
  const leader = document.getElementById("acme-leader-name");
  leader.textContent = doc.leader || "unknown";
  leader.classList.toggle("muted", !doc.leader);
  document.getElementById("acme-election").textContent = doc.election
    ? "elected by " + doc.election + (doc.election_error ? " (cannot read it: " + doc.election_error + ")" : "")
    : "";
  const orders = Object.entries(doc.orders || {}).map(([k, n]) => k + ": " + n).join(", ");
  document.getElementById("acme-orders").textContent =
    doc.managed_certificates + " managed certificates; orders since start: " + (orders || "none");
  const err = document.getElementById("acme-error");
  err.hidden = !doc.last_error;
  err.textContent = doc.last_error ? "last error: " + doc.last_error : "";
}

function renderCertificates(doc) {
  document.getElementById("cert-unavailable").hidden = doc.available;
  document.getElementById("cert-renewals-elsewhere").hidden = doc.renewal_facts !== false;
  const tb = tbody("certificates");
  // Renewal facts come from the issuer; a binary that only serves certificates says so.
  const renewal = (v) => doc.renewal_facts === false
    ? el("td", { class: "muted", title: "renewals are fairway-controller's part", text: "see controller" })
    : el("td", { text: when(v) });
  for (const c of doc.certificates) {
    tb.append(el("tr", { class: c.status, "data-domain": c.domain },
      el("td", { text: c.domain }),
      el("td", {}, ...c.sans.map((s) => el("span", { class: "pill", text: s }))),
      el("td", { text: c.issuer }),
      el("td", {}, daysBar(c)),
      el("td", { text: c.resolver }),
      el("td", { text: c.key_type }),
      renewal(c.last_renewal),
      renewal(c.next_renewal)));
  }
}

function renderVips(doc) {
  const leader = document.getElementById("acme-leader");
  leader.textContent = doc.acme_leader ? "ACME leader: " + doc.acme_leader : "";
  const tb = tbody("vips");
  for (const v of doc.vips) {
    const nodes = (v.nodes || []).map((n) => el("span", { class: "pill", text: n.node + ": " + n.state }));
    const f = v.last_failover;
    tb.append(el("tr", { "data-vip": v.address },
      el("td", { class: "rule", text: v.address }),
      el("td", { text: v.owner || "none" }),
      el("td", {}, ...nodes),
      el("td", { text: f ? f.from + " → " + f.to + " at " + f.at : "–" }),
      el("td", { text: f && f.duration_ms !== null ? f.duration_ms + " ms" : "–" })));
  }
}

async function explain(ev) {
  ev.preventDefault();
  const out = document.getElementById("explain-result");
  const url = document.getElementById("explain-url").value;
  const method = document.getElementById("explain-method").value;
  out.replaceChildren(el("p", { class: "muted", text: "asking…" }));
  try {
    const q = new URLSearchParams({ url, method });
    const doc = await getJSON(API + "/explain?" + q.toString());
    out.replaceChildren();
    for (const r of doc.results) {
      const v = el("div", { class: "verdict" + (r.matched ? "" : " none"), "data-entrypoint": r.entrypoint },
        el("span", { class: "ep", text: r.entrypoint }));
      if (r.matched) {
        v.append(el("span", { class: "winner", text: "→ router " + r.matched.router + " → service " + r.matched.service }));
      } else {
        v.append(el("span", { class: "winner", text: "no route matches (404)" }));
      }
      if (r.redirects_to_tls) v.append(el("span", { class: "muted", text: " (this entrypoint redirects to HTTPS first)" }));
      v.append(el("div", { class: "reason", text: r.reason }));
      if (r.losers.length) {
        v.append(el("ul", { class: "losers" }, ...r.losers.map((l) =>
          el("li", { text: (l.route.source.router || sourceText(l.route.source)) + ": " + l.why }))));
      }
      out.append(v);
    }
  } catch (e) {
    out.replaceChildren(el("p", { class: "problem error", text: String(e.message || e) }));
  }
}

const renderers = {
  problems: ["/problems", renderProblems],
  routes: ["/routes", renderRoutes],
  services: ["/services", renderServices],
  certificates: ["/certificates", renderCertificates],
  vips: ["/vips", renderVips],
  acme: ["/acme", renderAcme],
};

async function refresh() {
  try {
    const index = await getJSON(API);
    sections = index.sections;
    document.getElementById("component").textContent = index.component;
    document.getElementById("token-form").hidden = true;
    for (const s of document.querySelectorAll("section[data-section]")) {
      s.hidden = !sections.includes(s.dataset.section);
    }
    await Promise.all(sections.filter((s) => s in renderers).map(async (s) => {
      const [path, render] = renderers[s];
      render(await getJSON(API + path));
    }));
    setStatus("updated " + new Date().toLocaleTimeString());
    document.body.dataset.loaded = "true";
  } catch (e) {
    if (e instanceof Unauthorized) {
      document.getElementById("token-form").hidden = false;
      setStatus("this admin listener needs a token");
    } else {
      setStatus("refresh failed: " + (e.message || e));
    }
  }
}

document.getElementById("explain-form").addEventListener("submit", explain);
document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token-input").value.trim());
  refresh();
});
refresh();
setInterval(refresh, REFRESH_MS);
