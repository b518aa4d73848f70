//! Traefik 1.6-1.7: `{"Account": ..., "Certificates": [...], "HTTPChallenges": ..., "TLSChallenges": ...}`.
//!
//! No JSON tags at all in 1.7 (`provider/acme/store.go`), so every key is capitalised and
//! nothing is omitted: `"SANs": null`, `"HTTPChallenges": null`.

use super::decode::{opt_array, opt_object, schema, split};
use super::json::{ObjWriter, Value, write_string_array};
use super::v2::{read_account, read_cert, write_account_and_certificates};
use crate::document::{AcmeDocument, Format, ResolverData, StoredCert, V1_RESOLVER, V1Extras};
use crate::error::FormatError;

pub(super) fn read(members: Vec<(String, Value)>) -> Result<AcmeDocument, FormatError> {
    let ([account, certs, http, tls], extra) = split(
        members,
        ["Account", "Certificates", "HTTPChallenges", "TLSChallenges"],
    );
    let account = match opt_object(account, "Account")? {
        Some(m) => Some(read_account(m, "Account")?),
        None => None,
    };
    let (certificates, certificates_null) = match opt_array(certs, "Certificates")? {
        None => (Vec::new(), true),
        Some(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let p = format!("Certificates[{i}]");
                let Some(m) = opt_object(Some(item), &p)? else {
                    return Err(schema(&p, "a certificate entry is null"));
                };
                out.push(read_cert(m, &p)?);
            }
            (out, false)
        }
    };
    let mut doc = AcmeDocument {
        format: Format::V1,
        v1: V1Extras {
            http_challenges: http.unwrap_or(Value::Null),
            tls_challenges: tls.unwrap_or(Value::Null),
            extra,
        },
        ..AcmeDocument::default()
    };
    doc.resolvers.insert(
        V1_RESOLVER.to_owned(),
        ResolverData {
            account,
            certificates,
            certificates_null,
            extra: Vec::new(),
        },
    );
    Ok(doc)
}

pub(super) fn write(doc: &AcmeDocument) -> Result<String, FormatError> {
    let empty = ResolverData::default();
    let data = match doc.resolvers.len() {
        0 => &empty,
        1 if doc.resolvers.contains_key(V1_RESOLVER) => &doc.resolvers[V1_RESOLVER],
        _ => {
            return Err(FormatError::Unwritable(format!(
                "a Traefik v1 file holds one resolver (`{V1_RESOLVER}`), this document has {:?}; migrate it to v2",
                doc.resolvers.keys().collect::<Vec<_>>()
            )));
        }
    };
    let mut out = String::new();
    let mut top = ObjWriter::begin(&mut out, 0);
    write_account_and_certificates(&mut top, data, write_cert);
    top.value("HTTPChallenges", &doc.v1.http_challenges);
    top.value("TLSChallenges", &doc.v1.tls_challenges);
    top.extra(&data.extra);
    top.extra(&doc.v1.extra);
    top.end();
    Ok(out)
}

fn write_cert(c: &StoredCert, out: &mut String, depth: usize) {
    let mut obj = ObjWriter::begin(out, depth);
    {
        let (out, depth) = obj.key("Domain");
        let mut d = ObjWriter::begin(out, depth);
        d.string("Main", &c.domain.main);
        let (out, depth) = d.key("SANs");
        if c.domain.sans.is_empty() {
            out.push_str("null");
        } else {
            write_string_array(&c.domain.sans, out, depth);
        }
        d.extra(&c.domain.extra);
        d.end();
    }
    obj.opt_string("Certificate", c.certificate.as_deref());
    obj.opt_string("Key", c.key.as_deref());
    // v1 has no Store; keep a non-default one (e.g. from a hybrid file) rather than lose it.
    if !c.store.is_empty() {
        obj.string("Store", &c.store);
    }
    obj.extra(&c.extra);
    obj.end();
}
