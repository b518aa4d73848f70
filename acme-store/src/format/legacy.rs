//! Traefik <= 1.5 (`acme/account.go`): one account at the top level, certificates under
//! `DomainsCertificate.Certs[]` as `{"Domains": {Main, SANs}, "Certificate": {Domain, CertURL,
//! CertStableURL, PrivateKey, Certificate}}`. Read-only: it is converted to the v1 model the way
//! Traefik 1.6 did at start-up, and written only after a migration to v2.

use super::decode::{
    opt_array, opt_bytes, opt_object, opt_raw_object, opt_string, schema, split, string,
    string_list,
};
use super::json::Value;
use crate::document::{
    Account, AcmeDocument, Domain, Format, ResolverData, StoredCert, V1_RESOLVER, V1Extras,
};
use crate::error::FormatError;

pub(super) fn read(members: Vec<(String, Value)>) -> Result<AcmeDocument, FormatError> {
    let (
        [
            email,
            registration,
            private_key,
            key_type,
            domains_cert,
            challenge_certs,
            http,
        ],
        extra,
    ) = split(
        members,
        [
            "Email",
            "Registration",
            "PrivateKey",
            "KeyType",
            "DomainsCertificate",
            "ChallengeCerts",
            "HTTPChallenge",
        ],
    );
    let account = Account {
        email: string(email, "Email")?,
        registration: opt_raw_object(registration, "Registration")?,
        private_key: opt_string(private_key, "PrivateKey")?,
        key_type: match key_type {
            None => None,
            some => Some(string(some, "KeyType")?),
        },
        extra: Vec::new(),
    };
    let mut certificates = Vec::new();
    if let Some(dc) = opt_object(domains_cert, "DomainsCertificate")? {
        let ([certs], _) = split(dc, ["Certs"]);
        for (i, item) in opt_array(certs, "DomainsCertificate.Certs")?
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let p = format!("DomainsCertificate.Certs[{i}]");
            let Some(m) = opt_object(Some(item), &p)? else {
                return Err(schema(&p, "a certificate entry is null"));
            };
            let ([domains, certificate], cert_extra) = split(m, ["Domains", "Certificate"]);
            let domain = match opt_object(domains, &format!("{p}.Domains"))? {
                None => Domain::default(),
                Some(d) => {
                    let ([main, sans], extra) = split(d, ["Main", "SANs"]);
                    Domain {
                        main: string(main, &format!("{p}.Domains.Main"))?,
                        sans: string_list(sans, &format!("{p}.Domains.SANs"))?,
                        extra,
                    }
                }
            };
            let (cert, key) = match opt_object(certificate, &format!("{p}.Certificate"))? {
                None => (None, None),
                Some(c) => {
                    let ([cert, key], _) = split(c, ["Certificate", "PrivateKey"]);
                    (
                        opt_bytes(cert, &format!("{p}.Certificate.Certificate"))?,
                        opt_bytes(key, &format!("{p}.Certificate.PrivateKey"))?,
                    )
                }
            };
            certificates.push(StoredCert {
                domain,
                certificate: cert,
                key,
                store: String::new(),
                extra: cert_extra,
            });
        }
    }
    let mut doc = AcmeDocument {
        format: Format::Legacy,
        v1: V1Extras {
            http_challenges: http.unwrap_or(Value::Null),
            tls_challenges: challenge_certs.unwrap_or(Value::Null),
            extra,
        },
        ..AcmeDocument::default()
    };
    doc.resolvers.insert(
        V1_RESOLVER.to_owned(),
        ResolverData {
            account: Some(account),
            certificates,
            certificates_null: false,
            extra: Vec::new(),
        },
    );
    Ok(doc)
}
