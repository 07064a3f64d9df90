//! The frame codec: exact bytes, every error, arbitrary splits and arbitrary input.

use bytes::{BufMut, BytesMut};
use plus_mux::{Frame, FrameCodec, FrameError, Kind};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn encode(frames: &[Frame]) -> BytesMut {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    for f in frames {
        codec.encode(f.clone(), &mut buf).unwrap();
    }
    buf
}

#[test]
fn wire_bytes_match_the_go_layout() {
    let buf = encode(&[Frame::request(0x0102_0304, &b"hi"[..])]);
    assert_eq!(&buf[..], b"REQ\x01\x02\x03\x04\x00\x00\x00\x02hi\r\r\n");
    let buf = encode(&[Frame::response(7, &b""[..])]);
    assert_eq!(&buf[..], b"RSP\x00\x00\x00\x07\x00\x00\x00\x00\r\r\n");
}

#[test]
fn the_two_go_framing_faults_are_not_faults_here() {
    // A body holding the trailer, and identity 855,306 whose bytes are 00 0D 0D 0A.
    let frames =
        [Frame::request(855_306, &b"a\r\r\nb\r\r\n"[..]), Frame::response(1, &b"\r\r\n"[..])];
    let mut buf = encode(&frames);
    let mut codec = FrameCodec::default();
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(frames[0].clone()));
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(frames[1].clone()));
    assert!(buf.is_empty());
}

/// Feeds `bytes` to a decoder (with end of stream) and returns the first error.
fn first_error(bytes: &[u8], max_body: usize) -> FrameError {
    let mut codec = FrameCodec::new(max_body);
    let mut buf = BytesMut::from(bytes);
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error for {bytes:?}"),
            Err(err) => return err,
        }
    }
}

#[test]
fn error_table() {
    assert!(
        matches!(first_error(b"GET / HTTP/1.1\r\n", 1024), FrameError::UnknownType(t) if &t == b"GET")
    );
    // Rejected from the header alone: nothing of the 4 GiB body is buffered.
    let huge = b"REQ\x00\x00\x00\x01\xff\xff\xff\xff";
    assert!(matches!(
        first_error(huge, 1024),
        FrameError::BodyTooLarge {
            kind: Kind::Request,
            identity: 1,
            len: 4_294_967_295,
            max: 1024
        }
    ));
    assert!(
        matches!(first_error(b"RSP\x00\x00\x00\x02\x00\x00\x00\x01x\r\n\n", 1024), FrameError::BadTrailer { identity: 2, found } if &found == b"\r\n\n")
    );
    assert!(matches!(
        first_error(b"REQ\x00\x00\x00\x03\x00\x00\x00\x05ab", 1024),
        FrameError::Truncated { buffered: 13 }
    ));
    assert_eq!(
        first_error(b"REQ\x00\x00\x00\x03\x00\x00\x00\x05ab", 1024).to_string(),
        "stream ended inside a frame (13 bytes buffered)"
    );
}

#[test]
fn a_bad_type_fails_before_the_whole_header_arrives() {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::from(&b"XYZ"[..]);
    assert!(matches!(codec.decode(&mut buf), Err(FrameError::UnknownType(_))));
}

fn frame() -> impl Strategy<Value = Frame> {
    (any::<bool>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..300)).prop_map(
        |(req, id, body)| Frame {
            kind: if req { Kind::Request } else { Kind::Response },
            identity: id,
            body: body.into(),
        },
    )
}

proptest! {
    #[test]
    fn frames_survive_any_split(frames in prop::collection::vec(frame(), 0..20), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10)) {
        let bytes = encode(&frames);
        let mut cut_points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        cut_points.push(bytes.len());
        cut_points.sort_unstable();
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut start = 0;
        for cut in cut_points {
            buf.put_slice(&bytes[start..cut]);
            start = cut;
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        prop_assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        prop_assert_eq!(out, frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_over_allocate(bytes in prop::collection::vec(any::<u8>(), 0..2048), valid_prefix in any::<bool>()) {
        const MAX: usize = 256;
        let mut input = if valid_prefix { b"REQ".to_vec() } else { Vec::new() };
        input.extend(bytes);
        let mut codec = FrameCodec::new(MAX);
        let mut buf = BytesMut::new();
        for chunk in input.chunks(7) {
            buf.put_slice(chunk);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(f)) => prop_assert!(f.body.len() <= MAX),
                    Ok(None) => break,
                    Err(_) => return Ok(()),
                }
            }
            // Never more than one maximal frame beyond what was fed.
            prop_assert!(buf.capacity() <= input.len() + MAX + 64, "capacity {}", buf.capacity());
        }
    }
}
