//! Many concurrent requests over one long-lived connection, both peers equal (seed 001).
//!
//! **Status: not implemented yet** (tracked by the plus-mux issue). This crate will hold the
//! frame codec, byte-compatible with the original Go implementation
//! (`[REQ|RSP][u32 identity][u32 length][body][\r\r\n]`), and a symmetric peer over any
//! `AsyncRead + AsyncWrite`. Nothing is exported until it works.
#![doc(test(attr(deny(warnings))))]
