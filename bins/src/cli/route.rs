//! `fairway route …`: ask the router which route takes a request, and why.
//!
//! `fairway route explain --config FILE... --url URL [--method M] [--header 'K: V']...
//! [--client-ip IP] [--output text|json]` loads every FILE (a Fairway TOML config, of which only
//! `[routers.*]` is read, or Kubernetes Ingress manifests in YAML/JSON), builds the same table
//! the proxy builds, and explains the decision. Exit 0 when a route matched, 1 when none did,
//! 2 on bad usage or input (one line on stderr naming the file and the problem).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use ingress_router::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use ingress_router::ingress::{ServiceBackend, ServicePort, parse_manifests, routes_from_all};
use ingress_router::{FileRoute, IngressRoute, RequestView, Table, Warning};
use serde::Serialize;

/// `fairway route` subcommands.
#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Explain which route takes a request, and why.
    Explain(ExplainArgs),
}

/// Arguments of `fairway route explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A Fairway TOML config (`[routers.*]`) or Kubernetes Ingress manifests (YAML/JSON).
    #[arg(long = "config", value_name = "FILE", required = true, num_args = 1..)]
    pub config: Vec<PathBuf>,
    /// The request URL, e.g. `http://foo.bar.com/path?q=1`.
    #[arg(long)]
    pub url: String,
    /// The request method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// A request header, `'Name: value'` (repeatable).
    #[arg(long = "header", value_name = "'K: V'")]
    pub headers: Vec<String>,
    /// The client address seen by the proxy (for `ClientIP` rules).
    #[arg(long = "client-ip")]
    pub client_ip: Option<IpAddr>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable lines.
    Text,
    /// One JSON object.
    Json,
}

/// What a route leads to, as the CLI reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Backend {
    /// Service name (for file routes: the router's `service`).
    service: String,
    /// Port number or name (`null` for file routes).
    port: Option<ServicePort>,
    /// Namespace of an Ingress backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.namespace, &self.port) {
            (Some(ns), Some(port)) => write!(f, "service {ns}/{} port {port}", self.service),
            _ => write!(f, "service {}", self.service),
        }
    }
}

impl From<ServiceBackend> for Backend {
    fn from(b: ServiceBackend) -> Self {
        Backend {
            service: b.service,
            port: Some(b.port),
            namespace: Some(b.namespace),
        }
    }
}

/// Bad input: one line, naming the file or option.
struct Failure(String);

/// Runs a `fairway route` subcommand.
pub fn run(cmd: RouteCommand) -> ExitCode {
    match cmd {
        RouteCommand::Explain(args) => match explain(&args) {
            Ok(code) => code,
            Err(Failure(message)) => {
                eprintln!("fairway route explain: {message}");
                ExitCode::from(2)
            }
        },
    }
}

#[derive(Default)]
struct Loaded {
    file: Vec<FileRoute<Backend>>,
    ingress: Vec<IngressRoute<Backend>>,
    warnings: Vec<Warning>,
}

fn is_toml(path: &Path, text: &str) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => true,
        Some("yaml" | "yml" | "json") => false,
        _ => text.parse::<toml::Table>().is_ok() && !text.contains("kind:"),
    }
}

fn load_toml(path: &Path, text: &str, out: &mut Loaded) -> Result<(), Failure> {
    let shown = path.display();
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        Failure(format!(
            "{shown}: invalid TOML: {}",
            one_line(&e.to_string())
        ))
    })?;
    let Some(routers) = doc.get("routers") else {
        return Ok(());
    };
    let routers = routers
        .as_table()
        .ok_or_else(|| Failure(format!("{shown}: `routers` must be a table")))?;
    for (name, router) in routers {
        let field = |key: &str| router.get(key);
        let rule = field("rule")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Failure(format!("{shown}: routers.{name}: missing string `rule`")))?;
        let service = field("service")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Failure(format!("{shown}: routers.{name}: missing string `service`")))?;
        let priority = match field("priority") {
            None => None,
            Some(v) => Some(v.as_integer().ok_or_else(|| {
                Failure(format!(
                    "{shown}: routers.{name}.priority: must be an integer"
                ))
            })?),
        };
        let backend = Backend {
            service: service.to_owned(),
            port: None,
            namespace: None,
        };
        let route = FileRoute::new(name.clone(), rule, priority, backend)
            .map_err(|e| Failure(format!("{shown}: {e}")))?;
        out.file.push(route);
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn load(paths: &[PathBuf]) -> Result<Loaded, Failure> {
    let mut out = Loaded::default();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure(format!("{}: cannot read: {e}", path.display())))?;
        if is_toml(path, &text) {
            load_toml(path, &text, &mut out)?;
        } else {
            let ingresses = parse_manifests(&text, &path.display().to_string())
                .map_err(|e| Failure(one_line(&e.to_string())))?;
            let (routes, warnings) = routes_from_all(&ingresses);
            out.ingress
                .extend(routes.into_iter().map(|r| r.map_backend(Backend::from)));
            out.warnings.extend(warnings);
        }
    }
    Ok(out)
}

fn headers(args: &ExplainArgs) -> Result<HeaderMap, Failure> {
    let mut map = HeaderMap::new();
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| Failure(format!("--header `{h}`: expected `Name: value`")))?;
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| Failure(format!("--header `{h}`: invalid header name")))?;
        let value = HeaderValue::from_str(v.trim())
            .map_err(|_| Failure(format!("--header `{h}`: invalid header value")))?;
        map.append(name, value);
    }
    Ok(map)
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    matched: bool,
    backend: Option<&'a Backend>,
    source: Option<&'a ingress_router::RouteSource>,
    rule: Option<&'a str>,
    reason: &'a str,
    request: &'a ingress_router::ExplainedRequest,
    losers: &'a [ingress_router::Loser<'a>],
    warnings: &'a [Warning],
}

fn explain(args: &ExplainArgs) -> Result<ExitCode, Failure> {
    let uri: Uri = args
        .url
        .parse()
        .map_err(|e| Failure(format!("--url `{}`: {e}", args.url)))?;
    let headers = headers(args)?;
    let loaded = load(&args.config)?;
    let mut warnings = loaded.warnings;
    let table = Table::new(loaded.file, loaded.ingress).map_err(|e| Failure(e.to_string()))?;
    warnings.extend(table.warnings().iter().cloned());

    let host = match uri.authority() {
        Some(a) => a.as_str(),
        None => headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    };
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut request = RequestView::new(host, path_and_query)
        .with_method(&args.method)
        .with_headers(&headers);
    if let Some(ip) = args.client_ip {
        request = request.with_client_ip(ip);
    }
    let explanation = table.explain(&request);
    let matched = explanation.matched.as_ref();

    match args.output {
        Output::Json => {
            let out = JsonOutput {
                matched: matched.is_some(),
                backend: matched.map(|m| m.backend),
                source: matched.map(|m| &m.route.source),
                rule: matched.map(|m| m.route.rule.as_str()),
                reason: &explanation.reason,
                request: &explanation.request,
                losers: &explanation.losers,
                warnings: &warnings,
            };
            let text = serde_json::to_string_pretty(&out).map_err(|e| Failure(e.to_string()))?;
            println!("{text}");
        }
        Output::Text => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            match matched {
                Some(m) => {
                    println!("matched: {}", m.backend);
                    println!("source:  {}", m.route.source);
                    println!("rule:    {}", m.route.rule);
                }
                None => println!("no route matched (the proxy answers 404)"),
            }
            println!("reason:  {}", explanation.reason);
            if !explanation.losers.is_empty() {
                println!("lost:");
                for l in &explanation.losers {
                    println!("  - {} ({}): {}", l.route.source, l.route.rule, l.why);
                }
                if explanation.more_losers > 0 {
                    println!("  … and {} more", explanation.more_losers);
                }
            }
        }
    }
    Ok(if matched.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
