//! Certificates for tests, demos and small clusters (feature `certs`, rcgen): a CA, and leaves
//! it signs for loopback, usable as server and as client, optionally named by URI subject
//! alternative names (the names roles are bound to, such as plus-quorum's
//! `plus-quorum://node/3`). A production deployment uses its own PKI; any tool that writes a
//! URI SAN makes certificates that work the same.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot make the certificate `{name}`: {source}")]
pub struct CertError {
    name: String,
    #[source]
    source: rcgen::Error,
}

fn failed(name: &str) -> impl FnOnce(rcgen::Error) -> CertError + '_ {
    move |source| CertError { name: name.to_owned(), source }
}

/// A certificate authority: its certificate in PEM and the key that signs with it.
pub struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A leaf identity: its certificate and private key, PEM.
#[derive(Clone)]
pub struct Leaf {
    /// The certificate, PEM.
    pub cert: String,
    /// Its private key, PEM.
    pub key: String,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf").field("cert", &self.cert).finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed CA named `name`, with a fresh key.
    ///
    /// # Errors
    /// [`CertError`] when the key or certificate cannot be made.
    pub fn new(name: &str) -> Result<Self, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed(name))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().map_err(failed(name))?;
        let pem = params.self_signed(&key).map_err(failed(name))?.pem();
        Ok(Self { pem, issuer: Issuer::new(params, key) })
    }

    /// The CA's certificate, PEM: what every peer trusts.
    #[must_use]
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A leaf for 127.0.0.1 and localhost, named `name`, signed by this CA, for servers and
    /// clients alike, carrying `uris` as URI subject alternative names.
    ///
    /// # Errors
    /// [`CertError`] when a URI is not valid as a name, or signing fails.
    pub fn leaf(&self, name: &str, uris: &[&str]) -> Result<Leaf, CertError> {
        let hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let mut params = CertificateParams::new(hosts).map_err(failed(name))?;
        for uri in uris {
            let uri = (*uri).try_into().map_err(failed(name))?;
            params.subject_alt_names.push(SanType::URI(uri));
        }
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().map_err(failed(name))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(failed(name))?.pem();
        Ok(Leaf { cert, key: key.serialize_pem() })
    }
}
