//! AF_PACKET raw sockets bound to one interface, for sending and receiving whole frames.

use std::io::{self, Read};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::ffi::{link_layer, register};
use crate::Error;

/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;

/// A raw packet socket on one interface, receiving one EtherType.
#[derive(Debug)]
pub struct PacketSocket {
    fd: AsyncFd<Socket>,
}

impl PacketSocket {
    /// Opens a socket on interface `ifindex` that receives frames of `ethertype` (and can send any
    /// frame). Needs `CAP_NET_RAW`. Must be called inside a Tokio runtime.
    pub fn open(interface: &str, ifindex: u32, ethertype: u16) -> Result<Self, Error> {
        let ctx = |what: &str| format!("AF_PACKET socket on {interface}: {what}");
        let proto = Protocol::from(i32::from(ethertype.to_be()));
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(proto))
            .map_err(|e| Error::io(ctx("socket (needs CAP_NET_RAW)"), e))?;
        if ethertype == ETH_P_IPV6 {
            // Only ICMPv6 neighbour solicitations/advertisements without extension headers:
            // next header (byte 20) == 58, ICMPv6 type (byte 54) in 135..=136.
            let filter = [
                SockFilter::new(0x30, 0, 0, 20),     // ldb [20]
                SockFilter::new(0x15, 0, 4, 58),     // jeq #58, else drop
                SockFilter::new(0x30, 0, 0, 54),     // ldb [54]
                SockFilter::new(0x15, 1, 0, 135),    // jeq #135 -> accept
                SockFilter::new(0x15, 0, 1, 136),    // jeq #136 -> accept, else drop
                SockFilter::new(0x06, 0, 0, 0xffff), // ret #65535
                SockFilter::new(0x06, 0, 0, 0),      // ret #0
            ];
            socket
                .attach_filter(&filter)
                .map_err(|e| Error::io(ctx("attach filter"), e))?;
        }
        socket
            .bind(&link_layer(ifindex, ethertype))
            .map_err(|e| Error::io(ctx("bind"), e))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| Error::io(ctx("nonblocking"), e))?;
        let fd = register(socket).map_err(|e| Error::io(ctx("register"), e))?;
        Ok(PacketSocket { fd })
    }

    /// Sends one complete Ethernet frame.
    pub async fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|s| s.get_ref().send(frame)) {
                Ok(r) => return r.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one frame into `buf`; returns its length.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|s| s.get_ref().read(buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// The raw descriptor (for diagnostics).
    pub fn raw_fd(&self) -> i32 {
        self.fd.get_ref().as_raw_fd()
    }
}
