//! rtnetlink: look up the interface, add and remove VIP addresses (keepalived style).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAttribute, RouteHeader, RouteMessage};
use rtnetlink::{AddressMessageBuilder, Handle, LinkGetRequest, RouteMessageBuilder};

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

/// The `interface` value that asks the speaker to find its interface itself (see
/// [`Netlink::connect_auto`]): DaemonSet nodes do not all name their NIC `eth0`.
pub const AUTO_INTERFACE: &str = "auto";

impl Netlink {
    /// Connects (spawning the connection task on the current Tokio runtime) and looks up the
    /// interface's index and MAC address.
    pub async fn connect(interface: &str) -> Result<Self, Error> {
        let handle = Self::handle(interface)?;
        let request = handle.link().get().match_name(interface.to_owned());
        let link = first_link(request, interface).await?;
        Self::from_link(handle, link)
    }

    /// Like [`Netlink::connect`] for the interface the node's traffic uses: the one holding
    /// `local` when it is a specific address (the heartbeat address), else the one of the
    /// main table's default route (IPv4 first, then IPv6).
    pub async fn connect_auto(local: IpAddr) -> Result<Self, Error> {
        let handle = Self::handle(AUTO_INTERFACE)?;
        let index = if local.is_unspecified() {
            default_route_interface(&handle).await?
        } else {
            interface_holding(&handle, local).await?
        };
        let request = handle.link().get().match_index(index);
        let link = first_link(request, &format!("#{index}")).await?;
        Self::from_link(handle, link)
    }

    fn handle(interface: &str) -> Result<Handle, Error> {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| Error::io(format!("netlink socket for {interface}"), e))?;
        tokio::spawn(conn);
        Ok(handle)
    }

    fn from_link(handle: Handle, link: LinkMessage) -> Result<Self, Error> {
        let interface = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name.clone()),
                _ => None,
            })
            .unwrap_or_else(|| format!("#{}", link.header.index));
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
            interface,
            index: link.header.index,
            mac,
        })
    }

    /// The interface's name (as looked up, also for [`Netlink::connect_auto`]).
    pub fn interface(&self) -> &str {
        &self.interface
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

/// The link `request` finds (`interface` names it in errors).
async fn first_link(request: LinkGetRequest, interface: &str) -> Result<LinkMessage, Error> {
    request
        .execute()
        .try_next()
        .await
        .map_err(|e| nl_err(format!("look up interface {interface}"), e))?
        .ok_or_else(|| Error::Config(format!("interface {interface} not found")))
}

/// The index of the interface that has `addr` configured.
async fn interface_holding(handle: &Handle, addr: IpAddr) -> Result<u32, Error> {
    let mut stream = handle.address().get().execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| nl_err("list addresses".into(), e))?
    {
        if msg.attributes.iter().any(|a| {
            matches!(a, AddressAttribute::Address(ip) | AddressAttribute::Local(ip) if *ip == addr)
        }) {
            return Ok(msg.header.index);
        }
    }
    Err(Error::Config(format!(
        "interface = \"{AUTO_INTERFACE}\": no interface has the heartbeat address {addr}"
    )))
}

/// The output interface of the main table's default route, IPv4 first, then IPv6.
async fn default_route_interface(handle: &Handle) -> Result<u32, Error> {
    let dumps = [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ];
    for dump in dumps {
        let mut stream = handle.route().get(dump).execute();
        while let Some(route) = stream
            .try_next()
            .await
            .map_err(|e| nl_err("list routes".into(), e))?
        {
            if let Some(index) = default_route_oif(&route) {
                return Ok(index);
            }
        }
    }
    Err(Error::Config(format!(
        "interface = \"{AUTO_INTERFACE}\": no default route to take the interface from; name the \
         interface, or give a specific heartbeat address"
    )))
}

/// The output interface of `route` if it is a main-table default route.
fn default_route_oif(route: &RouteMessage) -> Option<u32> {
    let main = route.header.table == RouteHeader::RT_TABLE_MAIN
        || route
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Table(t) if *t == u32::from(RouteHeader::RT_TABLE_MAIN)));
    if route.header.destination_prefix_length != 0 || !main {
        return None;
    }
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        _ => None,
    })
}
