//! rtnetlink: look up the interface, add and remove VIP addresses (keepalived style).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{AddressMessageBuilder, Handle};

use crate::Error;
use crate::frames::Mac;

/// An rtnetlink connection scoped to one interface.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
    interface: String,
    index: u32,
    mac: Mac,
}

fn nl_err(context: String, e: rtnetlink::Error) -> Error {
    Error::Netlink {
        context,
        message: e.to_string(),
    }
}

fn raw_code(e: &rtnetlink::Error) -> i32 {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.raw_code(),
        _ => 0,
    }
}

impl Netlink {
    /// Connects (spawning the connection task on the current Tokio runtime) and looks up the
    /// interface's index and MAC address.
    pub async fn connect(interface: &str) -> Result<Self, Error> {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| Error::io(format!("netlink socket for {interface}"), e))?;
        tokio::spawn(conn);
        let link = handle
            .link()
            .get()
            .match_name(interface.to_owned())
            .execute()
            .try_next()
            .await
            .map_err(|e| nl_err(format!("look up interface {interface}"), e))?
            .ok_or_else(|| Error::Config(format!("interface {interface} not found")))?;
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(b) if b.len() == 6 => {
                    let mut m = [0u8; 6];
                    m.copy_from_slice(b);
                    Some(m)
                }
                _ => None,
            })
            .ok_or_else(|| {
                Error::Config(format!("interface {interface} has no Ethernet address"))
            })?;
        Ok(Netlink {
            handle,
            interface: interface.to_owned(),
            index: link.header.index,
            mac,
        })
    }

    /// Interface index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Interface MAC address.
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// Adds `addr/prefix` to the interface (IPv6 with `nodad`, so it is usable at once).
    /// An address that is already present is not an error.
    pub async fn add(&self, addr: IpAddr, prefix: u8) -> Result<(), Error> {
        let mut req = self.handle.address().add(self.index, addr, prefix);
        if addr.is_ipv6() {
            let msg = req.message_mut();
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Err(e) if raw_code(&e) == -libc::EEXIST => Ok(()),
            r => r.map_err(|e| nl_err(format!("add {addr}/{prefix} to {}", self.interface), e)),
        }
    }

    /// Removes `addr/prefix` from the interface. A missing address is not an error.
    pub async fn remove(&self, addr: IpAddr, prefix: u8) -> Result<(), Error> {
        let msg = match addr {
            IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(self.index)
                .address(a, prefix)
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(self.index)
                .address(a, prefix)
                .build(),
        };
        match self.handle.address().del(msg).execute().await {
            Err(e)
                if [-libc::EADDRNOTAVAIL, -libc::ENOENT, -libc::ESRCH].contains(&raw_code(&e)) =>
            {
                Ok(())
            }
            r => {
                r.map_err(|e| nl_err(format!("remove {addr}/{prefix} from {}", self.interface), e))
            }
        }
    }

    /// Which of `candidates` are currently configured on the interface (with their prefix).
    pub async fn present(&self, candidates: &[IpAddr]) -> Result<Vec<(IpAddr, u8)>, Error> {
        let mut out = Vec::new();
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(self.index)
            .execute();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|e| nl_err(format!("list addresses of {}", self.interface), e))?
        {
            for a in &msg.attributes {
                if let AddressAttribute::Address(ip) | AddressAttribute::Local(ip) = a
                    && candidates.contains(ip)
                    && !out.iter().any(|(x, _)| x == ip)
                {
                    out.push((*ip, msg.header.prefix_len));
                }
            }
        }
        Ok(out)
    }
}
