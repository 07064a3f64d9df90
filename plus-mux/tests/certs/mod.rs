//! Certificates made at run time for TLS tests (plus-mux's `certs` feature, unwrapped: a test
//! that cannot make its certificates fails).

#![allow(dead_code)] // each test uses the part it needs

/// A certificate authority.
pub(crate) struct Ca(plus_mux::certs::Ca);

pub(crate) use plus_mux::certs::Leaf;

impl Ca {
    /// A new CA named `name`.
    pub(crate) fn new(name: &str) -> Self {
        Self(plus_mux::certs::Ca::new(name).unwrap())
    }

    /// The CA certificate, PEM.
    pub(crate) fn pem(&self) -> &str {
        self.0.pem()
    }

    /// A leaf for 127.0.0.1 and localhost, signed by this CA, for servers and clients alike.
    pub(crate) fn leaf(&self, name: &str) -> Leaf {
        self.0.leaf(name, &[]).unwrap()
    }

    /// [`Ca::leaf`], also named by `uris` (`plus-quorum://node/3`).
    pub(crate) fn leaf_with_uris(&self, name: &str, uris: &[&str]) -> Leaf {
        self.0.leaf(name, uris).unwrap()
    }
}
