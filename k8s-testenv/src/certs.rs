//! The throwaway PKI of one control plane: a CA, the apiserver's serving certificate (IP SAN
//! 127.0.0.1, which rustls requires when connecting by IP) and the service-account signing key.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};

use crate::Error;

/// PEM material written to the control plane's directory.
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    pub(crate) serving_cert_pem: String,
    pub(crate) serving_key_pem: String,
    pub(crate) service_account_key_pem: String,
    pub(crate) service_account_pub_pem: String,
}

fn cert_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |source| Error::Cert { what, source }
}

pub(crate) fn generate() -> Result<Pki, Error> {
    let ca_key = KeyPair::generate().map_err(cert_err("CA key"))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("CA"))?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fairway-testenv CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(cert_err("CA"))?;

    let serving_key = KeyPair::generate().map_err(cert_err("serving key"))?;
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "kubernetes".to_string()])
            .map_err(cert_err("serving certificate"))?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let serving = params
        .signed_by(&serving_key, &ca)
        .map_err(cert_err("serving certificate"))?;

    let sa_key = KeyPair::generate().map_err(cert_err("service-account key"))?;
    Ok(Pki {
        ca_pem: ca.pem(),
        serving_cert_pem: serving.pem(),
        serving_key_pem: serving_key.serialize_pem(),
        service_account_key_pem: sa_key.serialize_pem(),
        service_account_pub_pem: sa_key.public_key_pem(),
    })
}
