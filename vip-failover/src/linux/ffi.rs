//! The crate's only `unsafe` (three calls, each with its SAFETY argument):
//!
//! * building a `sockaddr_ll` to bind an AF_PACKET socket: `socket2` can create and bind packet
//!   sockets but has no safe constructor for a link-layer address; the two calls follow the
//!   pattern `socket2` documents for `SockAddr::new`;
//! * registering the packet socket with Tokio's reactor: since Tokio 1.54 `AsyncFd::register`
//!   is `unsafe` because the caller must guarantee the descriptor stays open while registered.
#![allow(unsafe_code)]

use socket2::{SockAddr, SockAddrStorage, Socket};
use tokio::io::unix::AsyncFd;

/// Registers an owned socket with the current Tokio reactor.
pub(crate) fn register(socket: Socket) -> std::io::Result<AsyncFd<Socket>> {
    // SAFETY: `socket2::Socket` owns its descriptor (an `OwnedFd` inside) and closes it only on
    // drop; the `AsyncFd` takes ownership of the socket, never hands out `&mut Socket` or the
    // socket itself before deregistering, so the descriptor stays open and `as_raw_fd()`
    // returns the same value for the whole registration.
    unsafe { AsyncFd::register(socket) }.map_err(std::io::Error::from)
}

/// A link-layer socket address for interface `ifindex` and EtherType `protocol` (host order).
pub(crate) fn link_layer(ifindex: u32, protocol: u16) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_ll` is one of this platform's `sockaddr_*` types, which is the
    // documented requirement of `view_as`; the storage is zeroed, a valid `sockaddr_ll`.
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as libc::sa_family_t;
    ll.sll_protocol = protocol.to_be();
    ll.sll_ifindex = ifindex as libc::c_int;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as socket2::socklen_t;
    // SAFETY: the storage holds an initialised `sockaddr_ll` (family AF_PACKET) and `len` is
    // exactly its size.
    unsafe { SockAddr::new(storage, len) }
}
