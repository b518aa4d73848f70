//! Reading a configuration file: TOML → typed sections, with errors that name the file, the
//! line and the field path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ingress_proxy::ProxyConfig;
use ingress_proxy::config::{
    AccessLogConfig, AdminConfig, ChallengeConfig, EntrypointConfig, ForwardingConfig, Limits,
    RouterConfig, ServiceConfig,
};
use serde::Deserialize;

use super::tls::TlsSection;

/// A whole Fairway configuration file.
///
/// The proxy's sections repeat [`ProxyConfig`]'s fields instead of `#[serde(flatten)]`-ing it
/// because serde cannot combine `flatten` with `deny_unknown_fields`, and a misspelt top-level
/// section must be an error that names it. `[acme]` and `[speaker]` stay raw tables here: their
/// own modules (`config::acme`, `config::speaker`) parse and validate them from the same text.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[entrypoints.<name>]`.
    #[serde(default)]
    pub entrypoints: BTreeMap<String, EntrypointConfig>,
    /// `[routers.<name>]`.
    #[serde(default)]
    pub routers: BTreeMap<String, RouterConfig>,
    /// `[services.<name>]`.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// `[limits]`.
    #[serde(default)]
    pub limits: Limits,
    /// `[forwarding]`.
    #[serde(default)]
    pub forwarding: ForwardingConfig,
    /// `[admin]`.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// `[access_log]`.
    #[serde(default)]
    pub access_log: AccessLogConfig,
    /// `[acme_challenge]`.
    #[serde(default)]
    pub acme_challenge: ChallengeConfig,
    /// `[tls]`.
    #[serde(default)]
    pub tls: TlsSection,
    /// `[acme]`, parsed by the ACME issuer's module.
    #[serde(default)]
    pub acme: Option<toml::Table>,
    /// `[speaker]`, parsed by the VIP speaker's module.
    #[serde(default)]
    pub speaker: Option<toml::Table>,
    /// `[kubernetes]`: route from Ingresses and serve their TLS Secrets.
    #[serde(default)]
    pub kubernetes: Option<super::kubernetes::KubernetesSection>,
}

impl ConfigFile {
    /// The proxy's part.
    pub fn proxy(&self) -> ProxyConfig {
        ProxyConfig {
            entrypoints: self.entrypoints.clone(),
            routers: self.routers.clone(),
            services: self.services.clone(),
            limits: self.limits,
            forwarding: self.forwarding.clone(),
            admin: self.admin.clone(),
            access_log: self.access_log,
            acme_challenge: self.acme_challenge.clone(),
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// Unreadable file.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not valid TOML, or a value of the wrong shape.
    #[error("{path}:{line}:{column}: {field}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted field path at the error (best effort from the position).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Well-formed but invalid (unknown references, bad URLs, bad rules).
    #[error("{path}: {field}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted field path.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// Reads, parses and validates `path`. Relative paths inside are resolved against the file's
/// directory.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and validates configuration `text` read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigFileError> {
    let mut file: ConfigFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let (line, column) = line_col(text, offset);
        ConfigFileError::Parse {
            path: path.to_owned(),
            line,
            column,
            field: field_path_at(text, offset),
            message: e.message().trim().to_owned(),
        }
    })?;
    file.proxy()
        .validate()
        .map_err(|e| ConfigFileError::Invalid {
            path: path.to_owned(),
            field: e.field,
            reason: e.reason,
        })?;
    if let Some(dir) = path.parent() {
        file.tls.resolve_paths(dir);
    }
    Ok(file)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

/// The dotted path of the key at `offset`: the last `[table]` / `[[array]]` header before it
/// (arrays get their element index), plus the key on the line, when there is one.
fn field_path_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let mut table = String::new();
    let mut array_counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in text[..line_start].lines() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_owned();
            let n = array_counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_owned();
        }
    }
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let key = if line.starts_with('[') {
        None
    } else {
        line.split('=')
            .next()
            .map(str::trim)
            .filter(|k| !k.is_empty() && line.contains('='))
    };
    match (table.is_empty(), key) {
        (true, Some(k)) => k.to_owned(),
        (false, Some(k)) => format!("{table}.{k}"),
        (_, None) if line.starts_with('[') => line
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_owned(),
        (_, None) => table,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[entrypoints.web]
address = "127.0.0.1:0"

[routers.demo]
rule = "Host(`localhost`)"
service = "demo"

[services.demo]
[[services.demo.endpoints]]
url = "http://127.0.0.1:9000"
"#;

    #[test]
    fn parses_good_file() {
        let f = parse(Path::new("/etc/fairway/x.toml"), GOOD).unwrap();
        assert_eq!(f.routers["demo"].service, "demo");
    }

    #[test]
    fn type_error_names_file_line_and_field() {
        let bad = GOOD.replace(
            "url = \"http://127.0.0.1:9000\"",
            "url = \"http://127.0.0.1:9000\"\nweight = \"heavy\"",
        );
        let err = parse(Path::new("x.toml"), &bad).unwrap_err().to_string();
        assert!(err.starts_with("x.toml:12:10: "), "{err}");
        assert!(err.contains("services.demo.endpoints[0].weight"), "{err}");
    }

    #[test]
    fn unknown_field_is_named() {
        let bad = GOOD.replace("service = \"demo\"", "service = \"demo\"\nservise = 1");
        let err = parse(Path::new("x.toml"), &bad).unwrap_err().to_string();
        assert!(err.contains("routers.demo.servise"), "{err}");
    }

    #[test]
    fn reference_error_names_field() {
        let bad = GOOD.replace("service = \"demo\"", "service = \"nope\"");
        let err = parse(Path::new("x.toml"), &bad).unwrap_err().to_string();
        assert_eq!(err, "x.toml: routers.demo.service: no service named `nope`");
    }
}
