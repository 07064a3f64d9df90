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
    Config, Connection, Connector, Frame, FrameCodec, NoHandler, ReconnectConfig,
    ReconnectingClient, Server, ServerConfig, Tls, TlsError, serve,
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
    let server_tls = Tls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), ca.pem.as_bytes())
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
    Tls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), trusted.pem.as_bytes()).unwrap()
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
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(setup.ca.pem.as_bytes()).unwrap();
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
    let err = Tls::from_pem(b"not pem", leaf.key.as_bytes(), ca.pem.as_bytes()).unwrap_err();
    assert!(matches!(&err, TlsError::Pem { what, .. } if what == "certificate"), "{err}");
    let other = ca.leaf("y");
    let err = Tls::from_pem(leaf.cert.as_bytes(), other.key.as_bytes(), ca.pem.as_bytes());
    assert!(matches!(err, Err(TlsError::Config(_))), "a key that is not the certificate's");
    let missing = std::path::Path::new("/nonexistent/plus-cert.pem");
    let err = Tls::from_pem_files(missing, missing, missing).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/plus-cert.pem"), "{err}");
}
