//! The client side of a connection: HTTP/1.1 requests without a body are served inline by the
//! connection's own task ([`h1conn`], over the sans-IO [`h1codec`]); everything else (bodies,
//! upgrades, h2, malformed input) is handed to hyper's server with what was already read
//! ([`rewind`]).
//!
//! Why not hyper's server for everything: hyper's HTTP/1.1 dispatcher is general (bodies in
//! both directions, upgrades, pipelining via its own buffers), and the per-request cost of
//! that generality is most of what is left in the proxy's user CPU once the upstream side is
//! inline too. The common ingress request — a GET with a few headers — needs one parse, one
//! routed forward and one write.

pub(crate) mod date;
pub(crate) mod h1codec;
#[cfg(test)]
mod h1codec_tests;
pub(crate) mod h1conn;
pub(crate) mod rewind;
