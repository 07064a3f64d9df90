//! Mutual TLS under the mux, with certificates made at run time: authenticated peers talk;
//! a peer with no certificate, one from another CA, or no TLS at all is refused before the
//! server reads a frame (its handler never runs, no connection is counted); a stalled
//! handshake holds up no one; a client refuses a server its CA did not sign.
#![cfg(feature = "tls")]

mod counting;

mod certs;

use std::sync::Arc;
use std::time::Duration;

use certs::Ca;
use counting::Counting;
use plus_mux::{
    Config, Connection, Connector, Frame, FrameCodec, Handler, HandshakeLimits, NoHandler, Peer,
    PeerIdentity, ReconnectConfig, ReconnectingClient, Server, ServerConfig, Tls, TlsError,
    WhileDisconnected, serve, serve_by_peer,
};
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Encoder;

struct Setup {
    ca: Ca,
    server_tls: Tls,
    server: Server,
    handler: Arc<Counting>,
    addr: String,
}

async fn setup() -> Setup {
    let ca = Ca::new("cluster CA");
    let leaf = ca.leaf("server");
    let server_tls = Tls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), ca.pem().as_bytes())
        .unwrap()
        .with_handshake_timeout(Duration::from_secs(2));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handler = Arc::new(Counting::default());
    let server =
        serve(server_tls.listener(listener), ServerConfig::default(), handler.clone()).unwrap();
    Setup { ca, server_tls, server, handler, addr }
}

fn identity(ca_for_leaf: &Ca, trusted: &Ca) -> Tls {
    let leaf = ca_for_leaf.leaf("client");
    Tls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), trusted.pem().as_bytes()).unwrap()
}

/// Whether one request through `tls` to `addr` gets an answer.
async fn try_request(tls: &Tls, addr: &str) -> bool {
    let Ok(stream) = tls.connector(addr).connect().await else { return false };
    let connection = Connection::new(stream, Config::default(), Arc::new(NoHandler)).unwrap();
    connection.request_with_timeout("hello", Duration::from_secs(3)).await.is_ok()
}

async fn wait_refused(setup: &Setup, at_least: u64) {
    for _ in 0..100 {
        if setup.server_tls.refused() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server refused {} peers, expected {at_least}", setup.server_tls.refused());
}

#[tokio::test]
async fn authenticated_peers_talk_through_a_reconnecting_client() {
    let setup = setup().await;
    let client_tls = identity(&setup.ca, &setup.ca);
    let client = ReconnectingClient::new(
        client_tls.connector(&setup.addr),
        Config::default(),
        ReconnectConfig::default(),
        Arc::new(NoHandler),
    )
    .unwrap();
    for i in 0..20 {
        let body = format!("request {i}");
        assert_eq!(client.request(body.clone()).await.unwrap(), body);
    }
    assert_eq!(setup.handler.handled(), 20);
    assert_eq!(setup.server.counters().accepted, 1);
    assert_eq!(setup.server_tls.refused(), 0);
    client.close();
    setup.server.stop();
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_before_any_frame() {
    let setup = setup().await;
    let rogue_ca = Ca::new("rogue CA");
    // It trusts the cluster's CA (so it accepts the server) but its own certificate is not
    // the cluster's.
    let rogue = identity(&rogue_ca, &setup.ca);
    assert!(!try_request(&rogue, &setup.addr).await);
    wait_refused(&setup, 1).await;
    assert_eq!(setup.handler.handled(), 0, "the handler never ran");
    assert_eq!(setup.server.counters().accepted, 0, "no mux connection was made");
    setup.server.stop();
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let setup = setup().await;
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(setup.ca.pem().as_bytes()).unwrap();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(&setup.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    // TLS 1.3 lets the client finish its side first; the server's refusal follows as an alert.
    if let Ok(mut stream) = connector.connect(name, tcp).await {
        let mut frame = bytes::BytesMut::new();
        FrameCodec::new(1024).encode(Frame::request(1, "run something"), &mut frame).unwrap();
        let _ = stream.write_all(&frame).await;
        let mut answer = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut answer)).await;
        assert!(!matches!(read, Ok(Ok(n)) if n > 0), "the server answered a peer with no cert");
    }
    wait_refused(&setup, 1).await;
    assert_eq!(setup.handler.handled(), 0);
    assert_eq!(setup.server.counters().accepted, 0);
    setup.server.stop();
}

#[tokio::test]
async fn a_plain_tcp_peer_speaking_mux_is_refused() {
    let setup = setup().await;
    let mut tcp = TcpStream::connect(&setup.addr).await.unwrap();
    let mut frame = bytes::BytesMut::new();
    FrameCodec::new(1024).encode(Frame::request(1, "run something"), &mut frame).unwrap();
    tcp.write_all(&frame).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(!answer.starts_with(b"RSP"), "no mux answer");
    wait_refused(&setup, 1).await;
    assert_eq!(setup.handler.handled(), 0);
    assert_eq!(setup.server.counters().accepted, 0);
    setup.server.stop();
}

/// A client that exits without TLS's close_notify between two frames has closed its
/// connection like any other (no I/O error to warn about); one that stops inside a frame has
/// cut it short, an error.
#[tokio::test]
async fn a_peer_gone_without_close_notify_closed_unless_it_cut_a_frame() {
    let ca = Ca::new("cluster CA");
    let leaf = ca.leaf("server");
    let server_tls =
        Tls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), ca.pem().as_bytes()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut listener = server_tls.listener(listener);
    let client_tls = identity(&ca, &ca);
    let mut frame = bytes::BytesMut::new();
    FrameCodec::new(1024).encode(Frame::request(1, "run something"), &mut frame).unwrap();
    for cut_inside_a_frame in [false, true] {
        let connector = client_tls.connector(&addr);
        let (server_side, client) =
            tokio::join!(plus_mux::Accept::accept(&mut listener), connector.connect());
        let mut client = client.unwrap();
        let server =
            Connection::new(server_side.unwrap().0, Config::default(), Arc::new(NoHandler))
                .unwrap();
        if cut_inside_a_frame {
            client.write_all(&frame[..frame.len() - 3]).await.unwrap();
            client.flush().await.unwrap();
        }
        // The TCP stream ends (FIN) with no close_notify before it, as when a process exits;
        // the socket stays open until the server has seen it, so no unread data turns the
        // close into a reset.
        client.get_mut().0.shutdown().await.unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(3), server.closed()).await.unwrap();
        drop(client);
        if cut_inside_a_frame {
            assert!(matches!(reason, plus_mux::CloseReason::Io(_)), "cut inside a frame: {reason}");
        } else {
            assert_eq!(reason, plus_mux::CloseReason::PeerClosed);
        }
    }
}

#[tokio::test]
async fn a_stalled_handshake_holds_up_no_one_and_times_out() {
    let setup = setup().await;
    // Connects and says nothing.
    let _stalled = TcpStream::connect(&setup.addr).await.unwrap();
    let client_tls = identity(&setup.ca, &setup.ca);
    let answered =
        tokio::time::timeout(Duration::from_secs(1), try_request(&client_tls, &setup.addr)).await;
    assert_eq!(answered, Ok(true), "a peer behind a stalled handshake is served at once");
    wait_refused(&setup, 1).await; // the stalled one, after the 2 s handshake timeout
    setup.server.stop();
}

#[tokio::test]
async fn a_client_refuses_a_server_its_ca_did_not_sign() {
    let setup = setup().await;
    let other_ca = Ca::new("other CA");
    // A good client certificate, but it trusts only another CA.
    let client = identity(&setup.ca, &other_ca);
    assert!(!try_request(&client, &setup.addr).await);
    assert_eq!(setup.handler.handled(), 0);
    setup.server.stop();
}

#[test]
fn bad_material_is_a_typed_error_naming_the_input() {
    let ca = Ca::new("ca");
    let leaf = ca.leaf("x");
    let err = Tls::from_pem(b"not pem", leaf.key.as_bytes(), ca.pem().as_bytes()).unwrap_err();
    assert!(matches!(&err, TlsError::Pem { what, .. } if what == "certificate"), "{err}");
    let other = ca.leaf("y");
    let err = Tls::from_pem(leaf.cert.as_bytes(), other.key.as_bytes(), ca.pem().as_bytes());
    assert!(matches!(err, Err(TlsError::Config(_))), "a key that is not the certificate's");
    let missing = std::path::Path::new("/nonexistent/plus-cert.pem");
    let err = Tls::from_pem_files(missing, missing, missing).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/plus-cert.pem"), "{err}");
}

/// Answers every request with the identity its connection proved.
struct WhoAmI(String);

#[plus_mux::async_trait]
impl Handler for WhoAmI {
    async fn handle(&self, _: bytes::Bytes) -> Result<bytes::Bytes, plus_mux::HandlerError> {
        Ok(self.0.clone().into())
    }
}

fn tls_of(ca: &Ca, uris: &[&str]) -> Tls {
    let leaf = ca.leaf_with_uris("peer", uris);
    Tls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), ca.pem().as_bytes()).unwrap()
}

#[tokio::test]
async fn the_handler_is_chosen_from_the_uri_names_of_the_client_certificate() {
    let ca = Ca::new("cluster CA");
    let server_tls = tls_of(&ca, &["plus-quorum://node/1"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = serve_by_peer(
        server_tls.listener(listener),
        ServerConfig::default(),
        Arc::new(|peer: &Peer| {
            assert!(peer.addr.is_some_and(|a| a.ip().is_loopback()));
            match &peer.identity {
                PeerIdentity::Certificate { uris } if !uris.is_empty() => {
                    Some(Arc::new(WhoAmI(uris.join(" "))) as Arc<dyn Handler>)
                }
                _ => None,
            }
        }),
    )
    .unwrap();
    let ask = |tls: Tls| {
        let addr = addr.clone();
        async move {
            let stream = tls.connector(&addr).connect().await.ok()?;
            let connection =
                Connection::new(stream, Config::default(), Arc::new(NoHandler)).ok()?;
            let answer = connection.request_with_timeout("who", Duration::from_secs(3)).await;
            answer.ok().map(|b| String::from_utf8_lossy(&b).into_owned())
        }
    };
    let two = tls_of(&ca, &["spiffe://example/x", "plus-quorum://node/2"]);
    assert_eq!(ask(two).await.as_deref(), Some("spiffe://example/x plus-quorum://node/2"));
    // Signed by the CA, but named by nothing: refused by the handler choice, counted.
    assert_eq!(ask(tls_of(&ca, &[])).await, None);
    for _ in 0..100 {
        if server.counters().refused == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.counters().refused, 1);
    server.stop();
}

/// 600 idle connections from the same address as a valid client (an attacker on the same
/// machine), more than every handshake slot: the valid client is still served, because a
/// new peer evicts the oldest unfinished handshake instead of waiting behind it. Before
/// eviction, the listener stopped accepting at 256 handshakes and the client waited for the
/// idle ones' 10 s timeout.
#[tokio::test]
async fn a_flood_of_idle_connections_locks_no_valid_client_out() {
    let ca = Ca::new("cluster CA");
    let mut limits = HandshakeLimits::default();
    // Long enough that only eviction can make room within the test's wait.
    limits.timeout = Duration::from_secs(60);
    limits.first_bytes_timeout = Duration::from_secs(60);
    let server_tls = tls_of(&ca, &[]).with_handshake_limits(limits);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handler = Arc::new(Counting::default());
    let server =
        serve(server_tls.listener(listener), ServerConfig::default(), handler.clone()).unwrap();
    let mut idle = Vec::new();
    for _ in 0..600 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let client = tls_of(&ca, &[]);
    let served = tokio::time::timeout(Duration::from_secs(8), try_request(&client, &addr)).await;
    assert_eq!(served, Ok(true), "a valid client got through the flood");
    assert!(server_tls.refused() > 0, "idle handshakes were evicted");
    drop(idle);
    server.stop();
}

#[tokio::test]
async fn a_peer_that_sends_nothing_is_dropped_at_the_first_bytes_deadline() {
    let ca = Ca::new("cluster CA");
    let mut limits = HandshakeLimits::default();
    limits.first_bytes_timeout = Duration::from_millis(200);
    let server_tls = tls_of(&ca, &[]).with_handshake_limits(limits);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server =
        serve(server_tls.listener(listener), ServerConfig::default(), Arc::new(NoHandler)).unwrap();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 1];
    // Closed by the server well before the 10 s handshake timeout.
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
    assert_eq!(server_tls.refused(), 1);
    server.stop();
}

/// A client whose certificate the server refuses (TLS 1.3: its connect succeeds, the refusal
/// arrives as an alert) backs off between attempts instead of reconnecting at once, and says
/// why it cannot connect.
#[tokio::test]
async fn a_refused_client_backs_off_and_names_the_cause() {
    let setup = setup().await;
    let rogue = identity(&Ca::new("rogue CA"), &setup.ca);
    let reconnect = ReconnectConfig {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        while_disconnected: WhileDisconnected::Wait(Duration::from_millis(1500)),
        ..ReconnectConfig::default()
    };
    let client = ReconnectingClient::new(
        rogue.connector(&setup.addr),
        Config::default(),
        reconnect,
        Arc::new(NoHandler),
    )
    .unwrap();
    assert!(client.request("hello").await.is_err());
    // 1.5 s of backoff doubling from 50 ms is about six attempts; without backoff it was
    // hundreds.
    let attempts = setup.server_tls.refused();
    assert!((1..=12).contains(&attempts), "{attempts} attempts in 1.5 s");
    let failure = client.last_failure().expect("a failure is recorded");
    assert!(failure.contains("closed") || failure.contains("certificate"), "{failure}");
    client.close();
    setup.server.stop();
}
