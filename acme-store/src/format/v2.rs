//! Traefik 2.x/3.x: `{"<resolver>": {"Account": ..., "Certificates": [...]}}`.
//!
//! Shape from `pkg/provider/acme/{store.go,account.go,provider.go}` and `pkg/types/domains.go`:
//! `Account` and `StoredData` have no JSON tags (capitalised keys, no omitempty), while the
//! certificate fields are tagged `domain`/`certificate`/`key` with omitempty, and `Store` is not.

use super::decode::{
    canonical_registration, opt_array, opt_bytes, opt_object, opt_raw_object, opt_string, schema,
    split, string, string_list,
};
use super::json::{ObjWriter, Value, array_end, array_item, write_string_array};
use crate::document::{Account, AcmeDocument, Domain, Format, ResolverData, StoredCert};
use crate::error::FormatError;

pub(super) fn read(members: Vec<(String, Value)>) -> Result<AcmeDocument, FormatError> {
    let mut doc = AcmeDocument {
        format: Format::V2,
        ..AcmeDocument::default()
    };
    for (name, v) in members {
        let data = match v {
            Value::Null => ResolverData::default(),
            Value::Object(m) => read_resolver(m, &name)?,
            other => {
                return Err(schema(
                    &name,
                    format!("expected a resolver object, found {}", other.kind()),
                ));
            }
        };
        // Go's map decoding: a later duplicate key replaces the earlier one.
        doc.resolvers.insert(name, data);
    }
    Ok(doc)
}

pub(super) fn read_resolver(
    members: Vec<(String, Value)>,
    path: &str,
) -> Result<ResolverData, FormatError> {
    let ([account, certs], extra) = split(members, ["Account", "Certificates"]);
    let account = match opt_object(account, &format!("{path}.Account"))? {
        Some(m) => Some(read_account(m, &format!("{path}.Account"))?),
        None => None,
    };
    let cpath = format!("{path}.Certificates");
    let (certificates, certificates_null) = match opt_array(certs, &cpath)? {
        None => (Vec::new(), true),
        Some(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let p = format!("{cpath}[{i}]");
                let Some(m) = opt_object(Some(item), &p)? else {
                    return Err(schema(&p, "a certificate entry is null"));
                };
                out.push(read_cert(m, &p)?);
            }
            (out, false)
        }
    };
    Ok(ResolverData {
        account,
        certificates,
        certificates_null,
        extra,
    })
}

pub(super) fn read_account(
    members: Vec<(String, Value)>,
    path: &str,
) -> Result<Account, FormatError> {
    let ([email, registration, private_key, key_type], extra) =
        split(members, ["Email", "Registration", "PrivateKey", "KeyType"]);
    Ok(Account {
        email: string(email, &format!("{path}.Email"))?,
        registration: opt_raw_object(registration, &format!("{path}.Registration"))?
            .map(canonical_registration),
        private_key: opt_string(private_key, &format!("{path}.PrivateKey"))?,
        key_type: match key_type {
            None => None,
            some => Some(string(some, &format!("{path}.KeyType"))?),
        },
        extra,
    })
}

/// Reads a certificate entry. The v1 names (`Domain`, `Certificate`, `Key`, `Main`, `SANs`) are
/// the same modulo case, so Go (and this) reads both generations with one decoder.
pub(super) fn read_cert(
    members: Vec<(String, Value)>,
    path: &str,
) -> Result<StoredCert, FormatError> {
    let ([domain, certificate, key, store], extra) =
        split(members, ["domain", "certificate", "key", "Store"]);
    let dpath = format!("{path}.domain");
    let domain = match opt_object(domain, &dpath)? {
        None => Domain::default(),
        Some(m) => {
            let ([main, sans], extra) = split(m, ["main", "sans"]);
            Domain {
                main: string(main, &format!("{dpath}.main"))?,
                sans: string_list(sans, &format!("{dpath}.sans"))?,
                extra,
            }
        }
    };
    Ok(StoredCert {
        domain,
        certificate: opt_bytes(certificate, &format!("{path}.certificate"))?,
        key: opt_bytes(key, &format!("{path}.key"))?,
        store: string(store, &format!("{path}.Store"))?,
        extra,
    })
}

pub(super) fn write(doc: &AcmeDocument) -> String {
    let mut out = String::with_capacity(estimate(doc));
    let mut top = ObjWriter::begin(&mut out, 0);
    for (name, data) in &doc.resolvers {
        let (out, depth) = top.key(name);
        write_resolver(data, out, depth);
    }
    top.end();
    out
}

fn estimate(doc: &AcmeDocument) -> usize {
    let certs: usize = doc
        .resolvers
        .values()
        .flat_map(|r| &r.certificates)
        .map(|c| {
            200 + c.certificate.as_ref().map_or(0, String::len)
                + c.key.as_ref().map_or(0, String::len)
        })
        .sum();
    1024 + certs
}

fn write_resolver(data: &ResolverData, out: &mut String, depth: usize) {
    let mut obj = ObjWriter::begin(out, depth);
    write_account_and_certificates(&mut obj, data, write_cert);
    obj.extra(&data.extra);
    obj.end();
}

/// The `Account` and `Certificates` members, shared by the v2 resolver object and the v1 top
/// level: the two generations differ only in how one certificate is spelt (`write_cert`).
pub(super) fn write_account_and_certificates(
    obj: &mut ObjWriter<'_>,
    data: &ResolverData,
    write_cert: fn(&StoredCert, &mut String, usize),
) {
    match &data.account {
        None => obj.value("Account", &Value::Null),
        Some(a) => {
            let (out, depth) = obj.key("Account");
            write_account(a, out, depth);
        }
    }
    {
        let (out, depth) = obj.key("Certificates");
        if data.certificates.is_empty() {
            out.push_str(if data.certificates_null { "null" } else { "[]" });
        } else {
            out.push('[');
            for (i, c) in data.certificates.iter().enumerate() {
                array_item(out, depth, i == 0);
                write_cert(c, out, depth + 1);
            }
            array_end(out, depth);
        }
    }
}

pub(super) fn write_account(a: &Account, out: &mut String, depth: usize) {
    let mut obj = ObjWriter::begin(out, depth);
    obj.string("Email", &a.email);
    obj.value(
        "Registration",
        a.registration.as_ref().unwrap_or(&Value::Null),
    );
    obj.opt_string("PrivateKey", a.private_key.as_deref());
    if let Some(kt) = &a.key_type {
        obj.string("KeyType", kt);
    }
    obj.extra(&a.extra);
    obj.end();
}

fn write_cert(c: &StoredCert, out: &mut String, depth: usize) {
    let mut obj = ObjWriter::begin(out, depth);
    {
        let (out, depth) = obj.key("domain");
        let mut d = ObjWriter::begin(out, depth);
        if !c.domain.main.is_empty() {
            d.string("main", &c.domain.main);
        }
        if !c.domain.sans.is_empty() {
            let (out, depth) = d.key("sans");
            write_string_array(&c.domain.sans, out, depth);
        }
        d.extra(&c.domain.extra);
        d.end();
    }
    if let Some(cert) = c.certificate.as_deref().filter(|s| !s.is_empty()) {
        obj.string("certificate", cert);
    }
    if let Some(key) = c.key.as_deref().filter(|s| !s.is_empty()) {
        obj.string("key", key);
    }
    obj.string("Store", &c.store);
    obj.extra(&c.extra);
    obj.end();
}
