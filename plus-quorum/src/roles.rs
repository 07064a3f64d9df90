//! What a connection to a node may do, bound to the credential it presented (feature `mux`).
//!
//! A node's endpoint carries both consensus traffic and client calls, so it must tell who
//! speaks: only node N may deliver messages from N, a client never sends consensus traffic,
//! only an admin (or a node) changes membership, and a reader only reads and watches.
//!
//! The credential names the role:
//! - **TLS**: a URI subject alternative name of the client certificate, in the form
//!   `plus-quorum://node/N`, `plus-quorum://admin/NAME`, `plus-quorum://client/NAME` or
//!   `plus-quorum://reader/NAME` (SPIFFE-style, so any certificate tool can make them). Other
//!   URIs are ignored; a certificate with none of these names, or with two, gets no role and
//!   its connection is refused.
//! - **Pre-shared key**: the name of the key the peer proved: `node` (any node: the nodes
//!   share one key, so a node key cannot be bound to one id), `admin`, `client` or `reader`.
//! - **Plain TCP**: nothing is proved, and everything is allowed. That is only as safe as who
//!   can reach the address: loopback keeps other machines out, not other users of this one.

use crate::ids::NodeId;

/// The scheme of the URI names roles are read from.
pub const ROLE_URI_SCHEME: &str = "plus-quorum://";

/// The role a connection's credential gives it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Principal {
    /// Node N (a certificate naming `plus-quorum://node/N`): may speak as N, and do what an
    /// admin may.
    Node(NodeId),
    /// Some node of the cluster (the shared `node` pre-shared key): may speak as any node.
    AnyNode,
    /// An operator: reads, writes, watches and membership changes; no consensus traffic.
    Admin(String),
    /// A client: reads, writes and watches.
    Client(String),
    /// A read-only client: reads, watches, status and membership, nothing that changes state.
    Reader(String),
    /// A plain-TCP peer: nothing proved, everything allowed (see the module's docs).
    Unauthenticated,
}

/// The kinds of request a node's endpoint serves, for [`Principal::may`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Request {
    /// Consensus messages claiming to come from this node.
    Raft {
        /// The sender the messages claim.
        from: NodeId,
    },
    /// A write (also a lease grant, revoke or keep-alive).
    Write,
    /// A read.
    Read,
    /// A watch poll.
    Watch,
    /// The node's status.
    Status,
    /// The configuration in force.
    Membership,
    /// A membership change or a leadership transfer.
    ChangeCluster,
    /// A compaction of every replica's history: it takes history from every watcher, so for
    /// admins (and nodes) only.
    Compact,
    /// The whole state, for a backup: as much as reading everything, and a copy of the state
    /// held on the node while it is fetched, so for admins (and nodes) only.
    Backup,
}

impl Principal {
    /// The role named by a certificate's URI subject alternative names: `None` when none of
    /// them names one, or more than one does (a certificate is one thing).
    #[must_use]
    pub fn from_uris<S: AsRef<str>>(uris: &[S]) -> Option<Self> {
        let mut roles = uris.iter().filter_map(|uri| Self::from_uri(uri.as_ref()));
        let role = roles.next()?;
        roles.next().is_none().then_some(role)
    }

    /// The role one URI names, if it is one of ours and well formed.
    #[must_use]
    pub fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(ROLE_URI_SCHEME)?;
        let (kind, name) = rest.split_once('/')?;
        if name.is_empty() || name.contains('/') {
            return None;
        }
        match kind {
            // Digits only: `+3` or ` 3` would parse and name a node the CA did not mean.
            "node" if name.bytes().all(|b| b.is_ascii_digit()) => name.parse().ok().map(Self::Node),
            "admin" => Some(Self::Admin(name.to_owned())),
            "client" => Some(Self::Client(name.to_owned())),
            "reader" => Some(Self::Reader(name.to_owned())),
            _ => None,
        }
    }

    /// The role of a peer that proved the pre-shared key named `name`.
    #[must_use]
    pub fn from_key_name(name: &str) -> Option<Self> {
        match name {
            "node" => Some(Self::AnyNode),
            "admin" => Some(Self::Admin("psk".to_owned())),
            "client" => Some(Self::Client("psk".to_owned())),
            "reader" => Some(Self::Reader("psk".to_owned())),
            _ => None,
        }
    }

    /// Whether this role may make `request`.
    #[must_use]
    pub fn may(&self, request: Request) -> bool {
        let node = matches!(self, Self::Node(_) | Self::AnyNode | Self::Unauthenticated);
        match request {
            Request::Raft { from } => match self {
                Self::Node(id) => *id == from,
                _ => node,
            },
            Request::ChangeCluster | Request::Backup | Request::Compact => {
                node || matches!(self, Self::Admin(_))
            }
            Request::Write => !matches!(self, Self::Reader(_)),
            Request::Read | Request::Watch | Request::Status | Request::Membership => true,
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node(id) => write!(f, "node {id}"),
            Self::AnyNode => f.write_str("a node (shared key)"),
            Self::Admin(name) => write!(f, "admin {name}"),
            Self::Client(name) => write!(f, "client {name}"),
            Self::Reader(name) => write!(f, "reader {name}"),
            Self::Unauthenticated => f.write_str("an unauthenticated peer"),
        }
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Raft { from } => write!(f, "consensus messages as node {from}"),
            Self::Write => f.write_str("a write"),
            Self::Read => f.write_str("a read"),
            Self::Watch => f.write_str("a watch"),
            Self::Status => f.write_str("a status request"),
            Self::Membership => f.write_str("a membership request"),
            Self::ChangeCluster => f.write_str("a membership change"),
            Self::Backup => f.write_str("a backup"),
            Self::Compact => f.write_str("a compaction"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(uris: &[&str], expected: Option<&Principal>) {
        assert_eq!(Principal::from_uris(uris).as_ref(), expected, "{uris:?}");
    }

    #[test]
    fn uri_names_table() {
        check(&["plus-quorum://node/3"], Some(&Principal::Node(3)));
        check(&["spiffe://x/y", "plus-quorum://admin/ops"], Some(&Principal::Admin("ops".into())));
        check(&["plus-quorum://client/ci"], Some(&Principal::Client("ci".into())));
        check(&["plus-quorum://reader/dash"], Some(&Principal::Reader("dash".into())));
        check(&[], None);
        check(&["spiffe://x/y"], None);
        check(&["plus-quorum://node/+3"], None);
        check(&["plus-quorum://node/"], None);
        check(&["plus-quorum://node/99999999999999999999999"], None);
        check(&["plus-quorum://root/me"], None);
        check(&["plus-quorum://client/a/b"], None);
        check(&["plus-quorum://node/1", "plus-quorum://node/2"], None);
        check(&["plus-quorum://client/a", "plus-quorum://admin/a"], None);
    }

    #[test]
    fn what_each_role_may_do() {
        use Request::*;
        let all = [Raft { from: 1 }, Raft { from: 2 }, Write, Read, Watch, Status, Membership];
        let allowed = |p: &Principal| {
            all.iter()
                .copied()
                .chain([ChangeCluster, Backup, Compact])
                .filter(|r| p.may(*r))
                .collect::<Vec<_>>()
        };
        let node1 = Principal::Node(1);
        assert_eq!(
            allowed(&node1),
            [
                Raft { from: 1 },
                Write,
                Read,
                Watch,
                Status,
                Membership,
                ChangeCluster,
                Backup,
                Compact
            ]
        );
        assert_eq!(allowed(&Principal::AnyNode).len(), 10);
        assert_eq!(allowed(&Principal::Unauthenticated).len(), 10);
        assert_eq!(
            allowed(&Principal::Admin("a".into())),
            [Write, Read, Watch, Status, Membership, ChangeCluster, Backup, Compact]
        );
        assert_eq!(
            allowed(&Principal::Client("c".into())),
            [Write, Read, Watch, Status, Membership]
        );
        assert_eq!(allowed(&Principal::Reader("r".into())), [Read, Watch, Status, Membership]);
    }

    mod proptests {
        use proptest::prelude::*;

        use super::super::*;

        fn principal() -> impl Strategy<Value = Principal> {
            prop_oneof![
                any::<u64>().prop_map(Principal::Node),
                "[a-z]{1,8}".prop_map(Principal::Admin),
                "[a-z]{1,8}".prop_map(Principal::Client),
                "[a-z]{1,8}".prop_map(Principal::Reader),
            ]
        }

        proptest! {
            /// Whatever sender id a message claims, only that node (or a holder of the
            /// shared node key) may deliver it; clients, admins and readers never.
            #[test]
            fn only_node_n_speaks_as_node_n(who in principal(), from in any::<u64>()) {
                let may = who.may(Request::Raft { from });
                prop_assert_eq!(may, who == Principal::Node(from));
            }

            /// Any URI that parses as a node name round-trips to exactly that id.
            #[test]
            fn node_uris_name_exactly_their_id(id in any::<u64>()) {
                let uri = format!("plus-quorum://node/{id}");
                prop_assert_eq!(Principal::from_uri(&uri), Some(Principal::Node(id)));
            }
        }
    }
}
