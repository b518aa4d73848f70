//! Reading and writing every generation of Traefik's `acme.json`.
//!
//! Reading follows Go's `encoding/json`: keys match case-insensitively, an empty file is an
//! empty store, `[]byte` fields are base64 (kept as text here). The generation is detected from
//! the *shape* of the values, not from key names alone, because a resolver may be called
//! `Account` (kereis/traefik-certs-dumper#74 is what happens otherwise).
//!
//! Writing reproduces `json.MarshalIndent(data, "", "  ")` byte for byte: struct fields in Go
//! declaration order, map keys sorted, `null` for nil, HTML-safe escapes, no trailing newline.
//! Unknown fields, which Go would drop, are written after the known ones.

mod decode;
pub mod json;
mod legacy;
mod v1;
mod v2;

use crate::document::{AcmeDocument, DEFAULT_STORE, Format, V1_RESOLVER};
use crate::error::FormatError;
use json::Value;

pub(crate) use decode::fold_eq;

/// Parses an `acme.json` of any generation. An empty (or all-whitespace) input, `{}` and `null`
/// are an empty v2 store.
pub fn parse(bytes: &[u8]) -> Result<AcmeDocument, FormatError> {
    let text = String::from_utf8_lossy(bytes);
    if text.trim().is_empty() {
        return Ok(AcmeDocument::default());
    }
    let value = json::parse(&text).map_err(|e| FormatError::Syntax {
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    let members = match value {
        Value::Null => return Ok(AcmeDocument::default()),
        Value::Object(members) => members,
        other => {
            return Err(FormatError::Schema {
                field: "(top level)".into(),
                message: format!("expected an object, found {}", other.kind()),
            });
        }
    };
    match detect(&members) {
        Format::Legacy => legacy::read(members),
        Format::V1 => v1::read(members),
        Format::V2 => v2::read(members),
    }
}

/// Detects the generation of a top-level object by the shape of its values.
pub fn detect(members: &[(String, Value)]) -> Format {
    let legacy = members.iter().any(|(k, v)| {
        (fold_eq(k, "DomainsCertificate") && looks_like_domains_certificate(v))
            || (fold_eq(k, "Email") && matches!(v, Value::String(_)))
            || (fold_eq(k, "PrivateKey") && matches!(v, Value::String(_)))
    });
    if legacy {
        return Format::Legacy;
    }
    const V1_KEYS: [&str; 4] = ["Account", "Certificates", "HTTPChallenges", "TLSChallenges"];
    let v1_key = |k: &str| V1_KEYS.iter().any(|n| fold_eq(k, n));
    let strong = members.iter().any(|(k, v)| {
        (fold_eq(k, "Certificates") && matches!(v, Value::Array(_)))
            || (fold_eq(k, "Account") && looks_like_account(v))
            || (fold_eq(k, "HTTPChallenges") && matches!(v, Value::Null))
            // A resolver value is an object (or null); anything else under a v1 name is v1.
            || (v1_key(k) && !matches!(v, Value::Object(_) | Value::Null))
    });
    // Go writes a fresh v1 store as `"Account": null, "Certificates": null`; a v2 file would
    // need resolvers named exactly so with null values.
    let null_pair = members
        .iter()
        .any(|(k, v)| fold_eq(k, "Account") && matches!(v, Value::Null))
        && members
            .iter()
            .any(|(k, v)| fold_eq(k, "Certificates") && matches!(v, Value::Null));
    if strong || null_pair {
        Format::V1
    } else {
        Format::V2
    }
}

/// A legacy `DomainsCertificate` object (`{"Certs": [...]}`, Go writes `Certs` always) as
/// opposed to the data of a v2 resolver that happens to be named `DomainsCertificate` (empty,
/// or holding `Account`/`Certificates`).
fn looks_like_domains_certificate(v: &Value) -> bool {
    let Some(members) = v.as_object() else {
        return false;
    };
    let has = |name: &str| members.iter().any(|(k, _)| fold_eq(k, name));
    has("Certs") || !(members.is_empty() || has("Account") || has("Certificates"))
}

/// An account object (`Email`, `Registration`, ...) as opposed to a resolver's `StoredData`
/// (`Account`, `Certificates`) that happens to be keyed `Account`.
fn looks_like_account(v: &Value) -> bool {
    let Some(members) = v.as_object() else {
        return false;
    };
    let resolver_keys = members
        .iter()
        .any(|(k, _)| fold_eq(k, "Account") || fold_eq(k, "Certificates"));
    let account_keys = members.iter().any(|(k, _)| {
        ["Email", "Registration", "PrivateKey", "KeyType"]
            .iter()
            .any(|n| fold_eq(k, n))
    });
    account_keys && !resolver_keys
}

/// Writes the document in its own generation (see [`AcmeDocument::format`]).
pub fn write(doc: &AcmeDocument) -> Result<String, FormatError> {
    match doc.format {
        Format::V2 => Ok(v2::write(doc)),
        Format::V1 => v1::write(doc),
        Format::Legacy => Err(FormatError::Unwritable(
            "legacy (Traefik <= 1.5) documents are read-only; migrate them first".into(),
        )),
    }
}

impl AcmeDocument {
    /// Parses any generation; see [`parse`].
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        parse(bytes)
    }

    /// Serialises in the document's own generation, as Go would; see [`write()`].
    pub fn to_json(&self) -> Result<String, FormatError> {
        write(self)
    }

    /// Converts a v1 or legacy document to v2 the way `traefik-migration-tool acme` does: the
    /// single resolver is renamed `resolver`, every certificate gets `Store: "default"`, and the
    /// v1 challenge maps (transient by nature) are dropped. Unknown top-level v1 fields move into
    /// the resolver so nothing else is lost, except those named like the resolver's own fields
    /// (`Account`, `Certificates`, possible in a legacy file): written after the real ones they
    /// would replace them on the next read, and Go's decoder drops them anyway. A v2 document is
    /// returned unchanged.
    pub fn migrate_to_v2(mut self, resolver: &str) -> Self {
        if self.format == Format::V2 {
            return self;
        }
        let mut data = self.resolvers.remove(V1_RESOLVER).unwrap_or_default();
        if let Some(account) = &mut data.account {
            // Legacy registrations are read verbatim; written as v2 they take Go's shape.
            account.registration = account
                .registration
                .take()
                .map(decode::canonical_registration);
        }
        for cert in &mut data.certificates {
            if cert.store.is_empty() {
                cert.store = DEFAULT_STORE.to_owned();
            }
        }
        data.extra.extend(
            self.v1
                .extra
                .into_iter()
                .filter(|(k, _)| !fold_eq(k, "Account") && !fold_eq(k, "Certificates")),
        );
        let mut out = AcmeDocument::default();
        out.resolvers.insert(resolver.to_owned(), data);
        out
    }
}
