//! ACME accounts: load the resolver's account from the store, or create one.
//!
//! Accounts are kept in the resolver's `Account` object of `acme.json`, in Traefik's layout
//! (`Email`, `Registration{body,uri}`, `PrivateKey` = base64 DER, `KeyType`). instant-acme 0.8.5
//! signs with ECDSA P-256 only, so Fairway's account keys are PKCS#8 P-256 and `KeyType` is
//! `"P256"`. A Traefik-written account holds an RSA-4096 PKCS#1 key that cannot sign here: such a
//! resolver gets a **new** account (replacing only that resolver's `Account`; its certificates and
//! every other resolver stay untouched). The same happens when the stored account belongs to a
//! different CA host (Traefik does the same) or has no URL.

use base64::Engine as _;
use instant_acme::{Account, ExternalAccountKey, NewAccount};
use rustls_pki_types::PrivatePkcs8KeyDer;

use crate::client::AcmeHttp;
use crate::store::{AccountRecord, IssuerStore};
use crate::{Error, Step};

/// External Account Binding credentials (RFC 8555 §7.3.4), required by some CAs.
#[derive(Clone, PartialEq, Eq)]
pub struct Eab {
    /// The key identifier the CA gave out.
    pub kid: String,
    /// The decoded MAC key.
    pub hmac_key: Vec<u8>,
}

impl std::fmt::Debug for Eab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eab")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

impl Eab {
    /// Build from the kid and the base64url (padded or not) MAC key as CAs hand them out.
    pub fn from_base64url(kid: &str, hmac_b64: &str) -> Result<Self, String> {
        let trimmed = hmac_b64.trim().trim_end_matches('=');
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(trimmed)
            .map_err(|e| format!("EAB HMAC key is not base64url: {e}"))?;
        Ok(Self {
            kid: kid.to_owned(),
            hmac_key: key,
        })
    }
}

/// Why a stored account cannot be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountVerdict {
    /// Reuse it.
    Reuse,
    /// No account stored.
    Missing,
    /// The stored key is not PKCS#8 P-256 (e.g. Traefik's RSA-4096): a new account is created.
    UnusableKey,
    /// The account URL is on another host than the directory.
    OtherCa,
}

/// Decide whether `record` can be used with `directory_url` (pure).
pub fn verdict(record: Option<&AccountRecord>, directory_url: &str) -> AccountVerdict {
    let Some(record) = record else {
        return AccountVerdict::Missing;
    };
    let (Some(uri), Some(key)) = (&record.uri, &record.private_key_der) else {
        return AccountVerdict::Missing;
    };
    if authority(uri) != authority(directory_url) {
        return AccountVerdict::OtherCa;
    }
    match instant_acme::Key::from_pkcs8_der(PrivatePkcs8KeyDer::from(key.as_slice())) {
        Ok(_) => AccountVerdict::Reuse,
        Err(_) => AccountVerdict::UnusableKey,
    }
}

fn authority(url: &str) -> Option<String> {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.as_str().to_ascii_lowercase()))
}

/// Load the resolver's account from `store`, creating and persisting a new one if needed.
pub(crate) async fn load_or_create(
    resolver: &str,
    directory_url: &str,
    email: Option<&str>,
    eab: Option<&Eab>,
    http: &AcmeHttp,
    store: &dyn IssuerStore,
) -> Result<Account, Error> {
    let acme_err = |e: instant_acme::Error| Error::Acme {
        domain: format!("account of resolver {resolver}"),
        step: Step::Account,
        problem_type: match &e {
            instant_acme::Error::Api(p) => p.r#type.clone(),
            _ => None,
        },
        detail: e.to_string(),
        retry_after: None,
    };
    let state = store.load(resolver)?;
    let record = state.account.as_ref();
    match verdict(record, directory_url) {
        AccountVerdict::Reuse => {
            let record = record.ok_or_else(|| Error::Store("account vanished".into()))?;
            let (uri, key) = (
                record.uri.clone().unwrap_or_default(),
                record.private_key_der.clone().unwrap_or_default(),
            );
            return Account::builder_with_http(http.boxed())
                .from_parts(uri, PrivatePkcs8KeyDer::from(key), directory_url.to_owned())
                .await
                .map_err(acme_err);
        }
        AccountVerdict::UnusableKey => tracing::warn!(
            resolver,
            "stored account key is not ECDSA P-256 (Traefik writes RSA-4096); creating a new account for this resolver"
        ),
        AccountVerdict::OtherCa => tracing::warn!(
            resolver,
            directory_url,
            "stored account belongs to another CA; creating a new account"
        ),
        AccountVerdict::Missing => {}
    }
    let contact = email
        .filter(|e| !e.is_empty())
        .map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eak = eab.map(|e| ExternalAccountKey::new(e.kid.clone(), &e.hmac_key));
    let (account, credentials) = Account::builder_with_http(http.boxed())
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory_url.to_owned(),
            eak.as_ref(),
        )
        .await
        .map_err(acme_err)?;
    // AccountCredentials is opaque but serialisable: take the PKCS#8 key out of it.
    let creds = serde_json::to_value(&credentials).map_err(|e| Error::Key {
        domain: format!("account of resolver {resolver}"),
        reason: format!("serialising credentials: {e}"),
    })?;
    let key = creds["key_pkcs8"]
        .as_str()
        .and_then(|k| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(k)
                .ok()
        })
        .ok_or_else(|| Error::Key {
            domain: format!("account of resolver {resolver}"),
            reason: "credentials without a PKCS#8 key".into(),
        })?;
    store.save_account(
        resolver,
        &AccountRecord {
            email: email.unwrap_or_default().to_owned(),
            uri: Some(account.id().to_owned()),
            private_key_der: Some(key),
            key_type: Some("P256".into()),
        },
    )?;
    tracing::info!(resolver, account = account.id(), "created ACME account");
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(uri: &str, key: Vec<u8>) -> AccountRecord {
        AccountRecord {
            email: "a@b.test".into(),
            uri: Some(uri.into()),
            private_key_der: Some(key),
            key_type: Some("P256".into()),
        }
    }

    #[test]
    fn verdicts() {
        let (_, pkcs8) = instant_acme::Key::generate_pkcs8().unwrap();
        let p256 = pkcs8.secret_pkcs8_der().to_vec();
        let dir = "https://127.0.0.1:14000/dir";
        assert_eq!(verdict(None, dir), AccountVerdict::Missing);
        assert_eq!(
            verdict(
                Some(&record(
                    "https://127.0.0.1:14000/my-account/1",
                    p256.clone()
                )),
                dir
            ),
            AccountVerdict::Reuse
        );
        assert_eq!(
            verdict(
                Some(&record(
                    "https://acme-v02.api.letsencrypt.org/acme/acct/1",
                    p256
                )),
                dir
            ),
            AccountVerdict::OtherCa
        );
        // An RSA key (here: junk that is not PKCS#8 P-256) is not reusable.
        assert_eq!(
            verdict(
                Some(&record(
                    "https://127.0.0.1:14000/my-account/1",
                    vec![0x30, 0x82, 1, 2]
                )),
                dir
            ),
            AccountVerdict::UnusableKey
        );
    }

    #[test]
    fn eab_decodes_and_redacts() {
        let eab = Eab::from_base64url(
            "kid-1",
            "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",
        )
        .unwrap();
        assert_eq!(eab.hmac_key.len(), 48);
        assert!(!format!("{eab:?}").contains("zWND"));
        assert!(Eab::from_base64url("k", "not base64!").is_err());
    }
}
