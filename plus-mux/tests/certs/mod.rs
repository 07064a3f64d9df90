//! Certificates made at run time for TLS tests: a CA, and leaves it signs for 127.0.0.1 and
//! localhost, usable as server and as client. Shared with the examples' process tests.

#![allow(dead_code)] // each test uses the part it needs

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority: its certificate in PEM and what signs with it.
pub(crate) struct Ca {
    /// The CA certificate, PEM.
    pub(crate) pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf identity: certificate and key, PEM.
pub(crate) struct Leaf {
    /// The certificate, PEM.
    pub(crate) cert: String,
    /// Its private key, PEM.
    pub(crate) key: String,
}

impl Ca {
    /// A new CA named `name`.
    pub(crate) fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self { pem, issuer: Issuer::new(params, key) }
    }

    /// A leaf for 127.0.0.1 and localhost, signed by this CA, for servers and clients alike.
    pub(crate) fn leaf(&self, name: &str) -> Leaf {
        self.leaf_with_uris(name, &[])
    }

    /// [`Ca::leaf`], also named by `uris` (URI subject alternative names, the form roles
    /// are bound to: `plus-quorum://node/3`).
    pub(crate) fn leaf_with_uris(&self, name: &str, uris: &[&str]) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        for uri in uris {
            params.subject_alt_names.push(rcgen::SanType::URI((*uri).try_into().unwrap()));
        }
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap().pem();
        Leaf { cert, key: key.serialize_pem() }
    }
}
