//! Frames and their codec: `[REQ|RSP][u32 identity][u32 length][body][\r\r\n]`, big-endian,
//! byte-compatible with the original Go implementation.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::budget::{Charge, MemoryBudget};

/// Most bytes reserved ahead for a frame's body when no budget bounds it: the buffer grows as
/// the body arrives, so a header alone never allocates the whole declared length.
const RESERVE_AHEAD: usize = 64 * 1024;

/// Bytes before the body: 3 type bytes, identity, length.
pub const HEADER_LEN: usize = 11;
/// The trailer after every body.
pub const TRAILER: &[u8; 3] = b"\r\r\n";
/// Default largest accepted body: 16 MiB.
pub const DEFAULT_MAX_BODY: usize = 16 << 20;

/// Request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `REQ`: a request; the peer answers with a `RSP` of the same identity.
    Request,
    /// `RSP`: the answer to our request with this identity.
    Response,
}

impl Kind {
    fn tag(self) -> &'static [u8; 3] {
        match self {
            Kind::Request => b"REQ",
            Kind::Response => b"RSP",
        }
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Request or response.
    pub kind: Kind,
    /// The request's identity, chosen by the side that sent the request.
    pub identity: u32,
    /// The payload.
    pub body: Bytes,
}

impl Frame {
    /// A request frame.
    #[must_use]
    pub fn request(identity: u32, body: impl Into<Bytes>) -> Self {
        Self { kind: Kind::Request, identity, body: body.into() }
    }

    /// A response frame.
    #[must_use]
    pub fn response(identity: u32, body: impl Into<Bytes>) -> Self {
        Self { kind: Kind::Response, identity, body: body.into() }
    }

    /// Bytes this frame takes on the wire.
    #[must_use]
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.body.len() + TRAILER.len()
    }
}

/// A framing error: the stream is corrupt or hostile and the connection must close.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The 3 type bytes were neither `REQ` nor `RSP`.
    #[error("unknown frame type {0:?}")]
    UnknownType([u8; 3]),
    /// The declared body length exceeds the limit (checked before allocating).
    #[error("frame {identity} declares a body of {len} bytes, above the limit of {max}")]
    BodyTooLarge {
        /// Request or response.
        kind: Kind,
        /// The frame's identity.
        identity: u32,
        /// The declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The 3 bytes after the body were not `\r\r\n`.
    #[error("frame {identity} is not followed by \\r\\r\\n (found {found:?})")]
    BadTrailer {
        /// The frame's identity.
        identity: u32,
        /// What was there.
        found: [u8; 3],
    },
    /// The connections' shared [`MemoryBudget`] cannot hold this frame's body now.
    #[error(
        "frame {identity} declares a body of {len} bytes; the memory budget has {available} free"
    )]
    OverBudget {
        /// Request or response.
        kind: Kind,
        /// The frame's identity.
        identity: u32,
        /// The declared length.
        len: usize,
        /// Bytes free in the budget when it was asked.
        available: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the partial frame.
        buffered: usize,
    },
    /// A body too large to describe in a `u32` length was given to the encoder.
    #[error("body of {0} bytes does not fit the u32 length field")]
    BodyTooLong(usize),
    /// The underlying stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The frame codec, usable on its own with `tokio_util::codec::Framed`.
///
/// Decoding reads the length field and never searches for the trailer, so bodies may contain
/// `\r\r\n` and identity 855,306 (bytes `00 0D 0D 0A`) is an identity like any other (the Go
/// implementation split frames on the trailer and broke on both). A frame whose declared length
/// is above `max_body` is rejected before any of it is buffered, and the buffer grows as a body
/// arrives instead of being sized from the header.
///
/// With a [`MemoryBudget`] ([`FrameCodec::with_budget`]), each body is charged to it as soon as
/// its header is read, and the charge stays held while the body is in use (a
/// [`Connection`](crate::Connection) holds a request's until its response is queued). A clone
/// starts with no frame in progress.
#[derive(Debug)]
pub struct FrameCodec {
    max_body: usize,
    budget: Option<MemoryBudget>,
    /// The charge of the frame being decoded.
    in_progress: Option<Charge>,
    /// The charge of the last frame decoded, until the caller takes it.
    completed: Option<Charge>,
}

impl FrameCodec {
    /// A codec accepting bodies up to `max_body` bytes.
    #[must_use]
    pub fn new(max_body: usize) -> Self {
        Self { max_body, budget: None, in_progress: None, completed: None }
    }

    /// A codec accepting bodies up to `max_body` bytes, each charged to `budget`.
    #[must_use]
    pub fn with_budget(max_body: usize, budget: MemoryBudget) -> Self {
        Self { max_body, budget: Some(budget), in_progress: None, completed: None }
    }

    /// The charge of the frame the last `decode` returned, for the caller to hold while the body
    /// is in use (dropping it gives the bytes back).
    pub(crate) fn take_charge(&mut self) -> Option<Charge> {
        self.completed.take()
    }
}

impl Clone for FrameCodec {
    fn clone(&self) -> Self {
        Self {
            max_body: self.max_body,
            budget: self.budget.clone(),
            in_progress: None,
            completed: None,
        }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BODY)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < HEADER_LEN {
            // Fail on a bad type as soon as its 3 bytes are here, not after a whole header.
            if src.len() >= 3 {
                tag_kind(&src[..3])?;
            }
            return Ok(None);
        }
        let kind = tag_kind(&src[..3])?;
        let identity = u32::from_be_bytes([src[3], src[4], src[5], src[6]]);
        let len = u32::from_be_bytes([src[7], src[8], src[9], src[10]]) as usize;
        if len > self.max_body {
            let len = len as u64;
            return Err(FrameError::BodyTooLarge { kind, identity, len, max: self.max_body });
        }
        if let (Some(budget), None) = (&self.budget, &self.in_progress) {
            let charge = budget.try_charge(len).ok_or_else(|| FrameError::OverBudget {
                kind,
                identity,
                len,
                available: budget.available(),
            })?;
            self.in_progress = Some(charge);
        }
        let total = HEADER_LEN + len + TRAILER.len();
        if src.len() < total {
            // Charged to a budget, the whole body may be reserved at once (the budget bounds
            // what all peers can make us reserve); without one, only a chunk ahead.
            let ahead = if self.budget.is_some() { usize::MAX } else { RESERVE_AHEAD };
            src.reserve((total - src.len()).min(ahead));
            return Ok(None);
        }
        let trailer = [src[total - 3], src[total - 2], src[total - 1]];
        if &trailer != TRAILER {
            return Err(FrameError::BadTrailer { identity, found: trailer });
        }
        src.advance(HEADER_LEN);
        let body = src.split_to(len).freeze();
        src.advance(TRAILER.len());
        self.completed = self.in_progress.take();
        Ok(Some(Frame { kind, identity, body }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated { buffered: src.len() }),
        }
    }
}

fn tag_kind(tag: &[u8]) -> Result<Kind, FrameError> {
    match tag {
        b"REQ" => Ok(Kind::Request),
        b"RSP" => Ok(Kind::Response),
        other => Err(FrameError::UnknownType([other[0], other[1], other[2]])),
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_into(&frame, dst)
    }
}

/// Appends `frame`'s wire bytes to `dst` (what [`FrameCodec`]'s encoder does).
///
/// # Errors
/// [`FrameError::BodyTooLong`] when the body does not fit a `u32` length.
pub(crate) fn encode_into(frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
    let len =
        u32::try_from(frame.body.len()).map_err(|_| FrameError::BodyTooLong(frame.body.len()))?;
    dst.reserve(frame.wire_len());
    dst.put_slice(frame.kind.tag());
    dst.put_u32(frame.identity);
    dst.put_u32(len);
    dst.put_slice(&frame.body);
    dst.put_slice(TRAILER);
    Ok(())
}

/// Whether `identity`'s big-endian bytes contain `\r\r\n`, which the Go implementation would
/// mistake for the end of a frame.
#[must_use]
pub(crate) fn breaks_go_framing(identity: u32) -> bool {
    identity.to_be_bytes().windows(3).any(|w| w == TRAILER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_the_go_implementation_cannot_frame() {
        // 855,306 is 00 0D 0D 0A: its last three bytes are the trailer.
        assert!(breaks_go_framing(855_306));
        assert!(!breaks_go_framing(855_307));
        assert!(breaks_go_framing(0x0D0D_0A00));
    }
}
