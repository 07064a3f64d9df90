//! Who is at the other end of an accepted connection: what its handshake proved, handed to the
//! server's choice of handler ([`serve_by_peer`](crate::serve_by_peer)) so that an
//! application can bind what a connection may do to the credential it presented.

use std::net::SocketAddr;

/// What a peer proved during its handshake.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PeerIdentity {
    /// Nothing: plain TCP, or a stream from a host's own [`Accept`](crate::Accept) source.
    #[default]
    Unauthenticated,
    /// A client certificate signed by the trusted CA (feature `tls`), named by its URI
    /// subject alternative names (`spiffe://...`, `plus-quorum://node/3`, ...), in the
    /// certificate's order; empty when it has none.
    Certificate {
        /// The URI names of the leaf certificate.
        uris: Vec<String>,
    },
    /// The pre-shared key of this name (feature `psk`; `Psk::named`).
    Key(String),
}

/// An accepted peer: where it connects from and what it proved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Peer {
    /// Its address, when the source knows one.
    pub addr: Option<SocketAddr>,
    /// What its handshake proved.
    pub identity: PeerIdentity,
}

impl Peer {
    /// A peer at `addr` that proved `identity`.
    #[must_use]
    pub fn new(addr: Option<SocketAddr>, identity: PeerIdentity) -> Self {
        Self { addr, identity }
    }
}

/// The URI subject alternative names of a DER certificate; empty when it cannot be parsed or
/// has none (the TLS layer has verified it already, so a parse failure only means no names).
#[cfg(feature = "tls")]
pub(crate) fn certificate_uris(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let Ok(Some(san)) = cert.subject_alternative_name() else { return Vec::new() };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}
