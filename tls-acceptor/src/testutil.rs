//! Test helpers: rcgen certificates turned into `CertInput`s.

use std::time::{Duration, SystemTime};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::serving::{CertInput, CertOrigin};

pub(crate) struct TestCert {
    pub(crate) main: String,
    pub(crate) names: Vec<String>,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    pub(crate) not_after: SystemTime,
    pub(crate) serial: String,
}

pub(crate) fn cert(
    names: &[&str],
    alg: &'static rcgen::SignatureAlgorithm,
    serial: u64,
    days_left: i64,
) -> TestCert {
    let key = rcgen::KeyPair::generate_for(alg).expect("keygen");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.serial_number = Some(rcgen::SerialNumber::from(serial));
    let cert = params.self_signed(&key).expect("sign");
    let now = SystemTime::now();
    let not_after = if days_left >= 0 {
        now + Duration::from_secs(days_left as u64 * 86400)
    } else {
        now - Duration::from_secs((-days_left) as u64 * 86400)
    };
    TestCert {
        main: names[0].to_string(),
        names: names.iter().map(|s| s.to_string()).collect(),
        chain: vec![CertificateDer::from(cert.der().to_vec())],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        not_after,
        serial: format!("{serial:x}"),
    }
}

impl TestCert {
    pub(crate) fn input(&self) -> CertInput<'_> {
        CertInput {
            origin: CertOrigin {
                resolver: "le".into(),
                main: self.main.clone(),
            },
            names: self.names.clone(),
            chain: &self.chain,
            key: &self.key,
            not_before: SystemTime::UNIX_EPOCH,
            not_after: self.not_after,
            serial_hex: self.serial.clone(),
        }
    }
}
