//! The pre-shared-key fallback: peers holding the key talk; a peer with another key, or none
//! (plain TCP speaking mux), is refused before the server reads a frame; a client refuses a
//! server that cannot prove the key; a stalled handshake holds up no one.
#![cfg(feature = "psk")]

mod counting;

use std::sync::Arc;
use std::time::Duration;

use counting::Counting;
use plus_mux::{
    Config, Connection, Connector, Frame, FrameCodec, Handler, NoHandler, Peer, PeerIdentity, Psk,
    PskError, ReconnectConfig, ReconnectingClient, Server, ServerConfig, serve, serve_by_peer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Encoder;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

async fn serving(psk: &Psk) -> (Server, Arc<Counting>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handler = Arc::new(Counting::default());
    let server = serve(psk.listener(listener), ServerConfig::default(), handler.clone()).unwrap();
    (server, handler, addr)
}

async fn try_request(psk: &Psk, addr: &str) -> bool {
    let Ok(stream) = psk.connector(addr).connect().await else { return false };
    let connection = Connection::new(stream, Config::default(), Arc::new(NoHandler)).unwrap();
    connection.request_with_timeout("hello", Duration::from_secs(3)).await.is_ok()
}

async fn wait_refused(psk: &Psk, at_least: u64) {
    for _ in 0..150 {
        if psk.refused() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("refused {}, expected {at_least}", psk.refused());
}

#[tokio::test]
async fn peers_with_the_key_talk() {
    let psk = Psk::new(KEY).unwrap();
    let (server, handler, addr) = serving(&psk).await;
    let client = ReconnectingClient::new(
        psk.connector(&addr),
        Config::default(),
        ReconnectConfig::default(),
        Arc::new(NoHandler),
    )
    .unwrap();
    for i in 0..10 {
        assert_eq!(client.request(format!("r{i}")).await.unwrap(), format!("r{i}"));
    }
    assert_eq!(handler.handled(), 10);
    assert_eq!(psk.refused(), 0);
    client.close();
    server.stop();
}

#[tokio::test]
async fn another_key_is_refused_both_ways_before_any_frame() {
    let psk = Psk::new(KEY).unwrap();
    let (server, handler, addr) = serving(&psk).await;
    let wrong = Psk::new(b"another key, long enough".to_vec()).unwrap();
    assert!(!try_request(&wrong, &addr).await, "a client with another key was answered");
    wait_refused(&psk, 1).await;
    assert_eq!(handler.handled(), 0);
    assert_eq!(server.counters().accepted, 0, "no mux connection was made");

    // A server with another key cannot make a client with the right one talk to it.
    let (rogue, rogue_handler, rogue_addr) = serving(&wrong).await;
    assert!(!try_request(&psk, &rogue_addr).await);
    assert_eq!(rogue_handler.handled(), 0);
    assert_eq!(rogue.counters().accepted, 0);
    server.stop();
    rogue.stop();
}

#[tokio::test]
async fn a_plain_tcp_peer_speaking_mux_is_refused() {
    let psk = Psk::new(KEY).unwrap();
    let (server, handler, addr) = serving(&psk).await;
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    let mut frame = bytes::BytesMut::new();
    FrameCodec::new(1024).encode(Frame::request(1, "run something"), &mut frame).unwrap();
    tcp.write_all(&frame).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut answer)).await;
    assert!(!answer.windows(3).any(|w| w == b"RSP"), "no mux answer");
    wait_refused(&psk, 1).await;
    assert_eq!(handler.handled(), 0);
    assert_eq!(server.counters().accepted, 0);
    server.stop();
}

#[tokio::test]
async fn a_stalled_handshake_holds_up_no_one() {
    let psk = Psk::new(KEY).unwrap().with_handshake_timeout(Duration::from_secs(2));
    let (server, _, addr) = serving(&psk).await;
    let _stalled = TcpStream::connect(&addr).await.unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(1), try_request(&psk, &addr)).await;
    assert_eq!(answered, Ok(true));
    wait_refused(&psk, 1).await;
    server.stop();
}

#[test]
fn a_short_key_is_refused_and_the_key_is_never_printed() {
    assert_eq!(Psk::new(b"short".to_vec()).unwrap_err(), PskError::TooShort { len: 5, min: 16 });
    let shown = format!("{:?}", Psk::new(KEY).unwrap());
    assert!(!shown.contains("0123456789"), "{shown}");
}

/// Answers every request with the name of the key its connection proved.
struct KeyName(String);

#[plus_mux::async_trait]
impl Handler for KeyName {
    async fn handle(&self, _: bytes::Bytes) -> Result<bytes::Bytes, plus_mux::HandlerError> {
        Ok(self.0.clone().into())
    }
}

/// One listener, two keys (nodes and clients): each peer is known by the key it proved, a
/// client of the old protocol order still works, and a third key is refused.
#[tokio::test]
async fn one_listener_tells_its_keys_apart_by_name() {
    let nodes = Psk::named("node", b"node-key-node-key-node-key-00000".to_vec()).unwrap();
    let clients = Psk::named("client", b"client-key-client-key-client-000".to_vec()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = serve_by_peer(
        Psk::listener_for(&[nodes.clone(), clients.clone()], listener),
        ServerConfig::default(),
        std::sync::Arc::new(|peer: &Peer| match &peer.identity {
            PeerIdentity::Key(name) => Some(Arc::new(KeyName(name.clone())) as Arc<dyn Handler>),
            _ => None,
        }),
    )
    .unwrap();
    let ask = |psk: Psk| {
        let addr = addr.clone();
        async move {
            let stream = psk.connector(&addr).connect().await.ok()?;
            let connection =
                Connection::new(stream, Config::default(), Arc::new(NoHandler)).ok()?;
            let answer = connection.request_with_timeout("who", Duration::from_secs(3)).await;
            answer.ok().map(|b| String::from_utf8_lossy(&b).into_owned())
        }
    };
    assert_eq!(ask(nodes.clone()).await.as_deref(), Some("node"));
    assert_eq!(ask(clients.clone()).await.as_deref(), Some("client"));
    let stranger = Psk::named("node", b"someone-else-entirely-0000000000".to_vec()).unwrap();
    assert_eq!(ask(stranger).await, None);
    wait_refused(&nodes, 1).await;
    server.stop();
}
