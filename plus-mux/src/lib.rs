//! Many concurrent requests over one long-lived connection, both peers equal (the connection
//! multiplexing of the build platform's own RPC talk), byte-compatible with the original Go
//! implementation:
//!
//! ```text
//! [3 bytes "REQ" | "RSP"][u32 identity, big-endian][u32 body length, big-endian][body][\r\r\n]
//! ```
//!
//! - [`FrameCodec`]: a `tokio_util::codec` Decoder/Encoder, usable on its own. Frames are
//!   delimited by the length field; the trailer must then be exactly `\r\r\n`. The codec
//!   itself frames any body and identity, `\r\r\n` inside included; a [`Connection`] with the
//!   default [`Config::go_compatible`] refuses to send what the Go code would misframe (a
//!   body, or a length and the body's first bytes, holding `\r\r\n`) and never uses an
//!   identity such as 855,306 whose bytes hold it.
//! - [`Connection`]: a symmetric peer over any `AsyncRead + AsyncWrite`: either side sends
//!   requests ([`Connection::request`] waits with a timeout, [`Connection::send_async`] does not)
//!   and answers the other's through a [`Handler`]. Limits everywhere: body size (checked before
//!   allocating), in-flight requests, concurrent handlers (when full, reading stops), write queue.
//!   Closing fails every pending request at once; [`Connection::shutdown`] drains first.
//! - [`ReconnectingClient`]: reconnects with backoff and jitter through a [`Connector`].
//!
//! ```
//! use std::sync::Arc;
//! // The macro and the body type come with the crate: no dependency of your own.
//! use plus_mux::{Bytes, Config, Connection, Handler, HandlerError, NoHandler, async_trait};
//!
//! struct Echo;
//!
//! #[async_trait]
//! impl Handler for Echo {
//!     async fn handle(&self, request: Bytes) -> Result<Bytes, HandlerError> {
//!         Ok(request)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Any byte stream will do; a TCP stream would use `Connection::from_tcp`.
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! let server = Connection::new(a, Config::default(), Arc::new(Echo)).unwrap();
//! let client = Connection::new(b, Config::default(), Arc::new(NoHandler)).unwrap();
//!
//! let answer = client.request("hello").await.unwrap();
//! assert_eq!(answer, "hello");
//! // Both peers are equal: the server can ask the client too (which refuses, and says so).
//! let refused = server.request("ping").await.unwrap_err();
//! assert_eq!(refused.to_string(), "peer handler failed: this peer does not serve requests");
//! assert_eq!(client.counters().pending, 0);
//! # }
//! ```
//!
//! # Features and observability
//!
//! - `tls`: mutual TLS under the mux (`Tls`): a connector for clients and a listener for
//!   servers that refuse, during the handshake, any peer without a certificate of the shared CA.
//!   The listener hands each peer's certificate names to [`serve_by_peer`] as a
//!   [`PeerIdentity`], so an application decides per connection what the peer may do.
//! - `psk`: a pre-shared-key challenge under the mux (`Psk`), the fallback for hosts without
//!   certificates: both peers prove the key before any frame; it authenticates, it does not
//!   encrypt. One listener may accept several named keys, and tells which one a peer proved.
//! - `certs`: a CA and certificates made at run time (rcgen), for tests, demos and small
//!   clusters.
//!
//! Handshakes are bounded (`HandshakeLimits`): a first-bytes deadline, a cap per address, and a
//! new peer evicting the oldest unfinished handshake, so idle connections cannot lock valid
//! peers out. Answers waiting for a peer that does not read are bounded per connection
//! ([`Config::max_unread_bytes`]).
//! - `metrics`: every connection's counters, summed over the process (requests, errors,
//!   in-flight, bytes, open connections), through the `metrics` facade, for any exporter.
//!
//! Each connection logs its close through `tracing` with the reason and its traffic: debug for a
//! normal close, info for a timeout, warn for a protocol, I/O or memory-budget failure. Live
//! figures: [`Connection::counters`] and [`Server::counters`].
//!
//! # Performance
//!
//! `cargo bench -p benches --bench mux` runs plus-mux beside a plain TCP request/response loop
//! on loopback; figures in BENCHMARKS.md.
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod budget;
#[cfg(feature = "certs")]
pub mod certs;
mod config;
mod connection;
mod counters;
mod error;
mod frame;
#[cfg(any(feature = "tls", feature = "psk"))]
mod handshake;
mod identity;
#[cfg(feature = "metrics")]
mod metrics;
mod pending;
#[cfg(feature = "psk")]
mod psk;
mod reconnect;
mod server;
#[cfg(feature = "tls")]
mod tls;

/// Implement [`Handler`] with `#[plus_mux::async_trait]`, without a dependency of your own.
pub use async_trait::async_trait;
pub use budget::{DEFAULT_MEMORY_BUDGET, MemoryBudget};
/// The byte buffer of every request and response body.
pub use bytes::{self, Bytes};
pub use config::{Config, ConfigError, HandlerErrorWire};
pub use connection::{Connection, ERROR_PREFIX, Handler, NoHandler};
pub use counters::Counters;
pub use error::{CloseReason, HandlerError, RequestError, StartError};
pub use frame::{DEFAULT_MAX_BODY, Frame, FrameCodec, FrameError, HEADER_LEN, Kind, TRAILER};
#[cfg(any(feature = "tls", feature = "psk"))]
pub use handshake::HandshakeLimits;
pub use identity::{Peer, PeerIdentity};
#[cfg(feature = "psk")]
pub use psk::{Psk, PskConnector, PskError, PskListener};
pub use reconnect::{
    Connector, ReconnectConfig, ReconnectingClient, TcpConnector, WhileDisconnected,
};
pub use server::{Accept, HandlerFor, Server, ServerConfig, ServerCounters, serve, serve_by_peer};
#[cfg(feature = "tls")]
pub use tls::{Tls, TlsConnector, TlsError, TlsListener};
