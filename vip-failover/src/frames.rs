//! Building and parsing the Ethernet frames the announcer speaks: gratuitous ARP, ARP replies,
//! unsolicited and solicited IPv6 neighbour advertisements, and parsing ARP requests and
//! neighbour solicitations. Pure functions over bytes, built with `etherparse`.
//!
//! Frame shapes follow the Linux neighbour-cache rules (see `arp_is_garp()` in
//! `net/ipv4/arp.c` and RFC 4861 §7.2.5): a gratuitous ARP *reply* must carry THA == SHA to be
//! treated as gratuitous; an NA only replaces an existing cache entry's MAC when the Override
//! flag is set, so every NA we send carries O=1.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, LinkSlice, NetSlice,
    PacketBuilder, SlicedPacket, TransportSlice, icmpv6::NeighborAdvertisementHeader,
};

/// A MAC address.
pub type Mac = [u8; 6];

/// Ethernet broadcast.
pub const BROADCAST: Mac = [0xff; 6];
/// `ff02::1`, all nodes.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ICMPv6 neighbour discovery requires hop limit 255.
const ND_HOP_LIMIT: u8 = 255;
/// NDP option: target link-layer address.
const OPT_TARGET_LLA: u8 = 2;
/// NDP option: source link-layer address.
const OPT_SOURCE_LLA: u8 = 1;

/// The multicast MAC for an IPv6 multicast address (`33:33` + low 32 bits).
pub fn ipv6_multicast_mac(addr: Ipv6Addr) -> Mac {
    let o = addr.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

fn arp(op: ArpOperation, sha: Mac, spa: Ipv4Addr, tha: Mac, tpa: Ipv4Addr, dst: Mac) -> Vec<u8> {
    let packet = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        op,
        &sha,
        &spa.octets(),
        &tha,
        &tpa.octets(),
    )
    .expect("Ethernet/IPv4 ARP sizes are valid");
    let builder = PacketBuilder::ethernet2(sha, dst).arp(packet);
    let mut out = Vec::with_capacity(builder.size());
    builder
        .write(&mut out)
        .expect("writing to a Vec cannot fail");
    out
}

/// Gratuitous ARP request: broadcast, SPA = TPA = VIP, THA = 00:00:00:00:00:00.
pub fn gratuitous_arp_request(mac: Mac, vip: Ipv4Addr) -> Vec<u8> {
    arp(ArpOperation::REQUEST, mac, vip, [0; 6], vip, BROADCAST)
}

/// Gratuitous ARP reply: broadcast, SPA = TPA = VIP, THA = SHA (required by `arp_is_garp()`).
pub fn gratuitous_arp_reply(mac: Mac, vip: Ipv4Addr) -> Vec<u8> {
    arp(ArpOperation::REPLY, mac, vip, mac, vip, BROADCAST)
}

/// Unicast ARP reply to a requester: "VIP is at `mac`".
pub fn arp_reply(mac: Mac, vip: Ipv4Addr, to_mac: Mac, to_ip: Ipv4Addr) -> Vec<u8> {
    arp(ArpOperation::REPLY, mac, vip, to_mac, to_ip, to_mac)
}

fn neighbor_advert(
    mac: Mac,
    vip: Ipv6Addr,
    dst_mac: Mac,
    dst_ip: Ipv6Addr,
    solicited: bool,
) -> Vec<u8> {
    let mut payload = Vec::with_capacity(24);
    payload.extend_from_slice(&vip.octets());
    payload.extend_from_slice(&[OPT_TARGET_LLA, 1]);
    payload.extend_from_slice(&mac);
    let header = NeighborAdvertisementHeader {
        router: false,
        solicited,
        r#override: true,
    };
    let builder = PacketBuilder::ethernet2(mac, dst_mac)
        .ipv6(vip.octets(), dst_ip.octets(), ND_HOP_LIMIT)
        .icmpv6(Icmpv6Type::NeighborAdvertisement(header));
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut out, &payload)
        .expect("writing to a Vec cannot fail");
    out
}

/// Unsolicited neighbour advertisement from the VIP to `ff02::1`: O=1, S=0, target LLA option.
pub fn unsolicited_na(mac: Mac, vip: Ipv6Addr) -> Vec<u8> {
    neighbor_advert(mac, vip, ipv6_multicast_mac(ALL_NODES), ALL_NODES, false)
}

/// Solicited neighbour advertisement answering `to_ip`: O=1, S=1. An unspecified `to_ip` (DAD)
/// gets the unsolicited form to `ff02::1`, as RFC 4861 §7.2.4 requires.
pub fn solicited_na(mac: Mac, vip: Ipv6Addr, to_mac: Mac, to_ip: Ipv6Addr) -> Vec<u8> {
    if to_ip.is_unspecified() {
        return unsolicited_na(mac, vip);
    }
    neighbor_advert(mac, vip, to_mac, to_ip, true)
}

/// A frame the announcer cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// ARP request (broadcast or unicast) asking for `target`.
    ArpRequest {
        /// Requester's MAC (from the ARP body).
        sender_mac: Mac,
        /// Requester's IP (0.0.0.0 for an ARP probe).
        sender_ip: Ipv4Addr,
        /// The address asked for.
        target: Ipv4Addr,
    },
    /// ARP reply or gratuitous ARP announcing `ip` at `mac` (used to detect a competing owner).
    ArpClaim {
        /// Claimed address.
        ip: Ipv4Addr,
        /// The claimant's MAC.
        mac: Mac,
    },
    /// Neighbour solicitation for `target`.
    NeighborSolicit {
        /// Source MAC (Ethernet header, or the source LLA option when present).
        src_mac: Mac,
        /// Source IP (`::` for duplicate address detection).
        src_ip: Ipv6Addr,
        /// The address asked for.
        target: Ipv6Addr,
    },
    /// Neighbour advertisement for `target` from `mac`.
    NeighborAdvert {
        /// Advertised address.
        target: Ipv6Addr,
        /// The advertiser's MAC (Ethernet source).
        mac: Mac,
    },
}

/// Parses an Ethernet frame into what the announcer cares about; `None` for anything else.
pub fn parse(frame: &[u8]) -> Option<Incoming> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let eth_src = match &p.link {
        Some(LinkSlice::Ethernet2(e)) => e.source(),
        _ => return None,
    };
    match p.net? {
        NetSlice::Arp(a) => {
            if a.hw_addr_type() != ArpHardwareId::ETHERNET
                || a.proto_addr_type() != EtherType::IPV4
                || a.hw_addr_size() != 6
                || a.proto_addr_size() != 4
            {
                return None;
            }
            let sha: Mac = a.sender_hw_addr().try_into().ok()?;
            let spa: [u8; 4] = a.sender_protocol_addr().try_into().ok()?;
            let tpa: [u8; 4] = a.target_protocol_addr().try_into().ok()?;
            let (spa, tpa) = (Ipv4Addr::from(spa), Ipv4Addr::from(tpa));
            match a.operation() {
                ArpOperation::REQUEST if spa == tpa => {
                    Some(Incoming::ArpClaim { ip: spa, mac: sha })
                }
                ArpOperation::REQUEST => Some(Incoming::ArpRequest {
                    sender_mac: sha,
                    sender_ip: spa,
                    target: tpa,
                }),
                ArpOperation::REPLY => Some(Incoming::ArpClaim { ip: spa, mac: sha }),
                _ => None,
            }
        }
        NetSlice::Ipv6(ip) => {
            let Some(TransportSlice::Icmpv6(icmp)) = p.transport else {
                return None;
            };
            let h = ip.header();
            if h.hop_limit() != ND_HOP_LIMIT {
                return None;
            }
            let body = icmp.payload();
            let target: [u8; 16] = body.get(..16)?.try_into().ok()?;
            let target = Ipv6Addr::from(target);
            match icmp.icmp_type() {
                Icmpv6Type::NeighborSolicitation => {
                    let mut src_mac = eth_src;
                    let mut opts = &body[16..];
                    while opts.len() >= 8 {
                        let len = usize::from(opts[1]) * 8;
                        if len == 0 || len > opts.len() {
                            break;
                        }
                        if opts[0] == OPT_SOURCE_LLA {
                            src_mac.copy_from_slice(&opts[2..8]);
                        }
                        opts = &opts[len..];
                    }
                    Some(Incoming::NeighborSolicit {
                        src_mac,
                        src_ip: h.source_addr(),
                        target,
                    })
                }
                Icmpv6Type::NeighborAdvertisement(_) => Some(Incoming::NeighborAdvert {
                    target,
                    mac: eth_src,
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: Mac = [0x02, 0, 0, 0, 0, 0x11];
    const CLIENT: Mac = [0x02, 0, 0, 0, 0, 0x64];

    #[test]
    fn gratuitous_request_bytes() {
        let f = gratuitous_arp_request(MAC, Ipv4Addr::new(198, 51, 100, 50));
        let expected: Vec<u8> = [
            &BROADCAST[..],
            &MAC,
            &[0x08, 0x06],                // ARP
            &[0, 1, 0x08, 0, 6, 4, 0, 1], // Ethernet/IPv4, request
            &MAC,
            &[198, 51, 100, 50],
            &[0; 6],
            &[198, 51, 100, 50],
        ]
        .concat();
        assert_eq!(f, expected);
    }

    #[test]
    fn gratuitous_reply_has_target_mac_equal_to_sender() {
        let f = gratuitous_arp_reply(MAC, Ipv4Addr::new(198, 51, 100, 50));
        assert_eq!(&f[0..6], &BROADCAST);
        assert_eq!(&f[20..22], &[0, 2], "reply opcode");
        assert_eq!(&f[22..28], &MAC, "SHA");
        assert_eq!(&f[32..38], &MAC, "THA == SHA");
        assert_eq!(&f[28..32], &f[38..42], "SPA == TPA");
    }

    #[test]
    fn unsolicited_na_sets_override_and_target_lla() {
        let vip: Ipv6Addr = "2001:db8::50".parse().unwrap();
        let f = unsolicited_na(MAC, vip);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(f[14 + 7], 255, "hop limit");
        assert_eq!(&f[22..38], &vip.octets(), "source = VIP");
        assert_eq!(&f[38..54], &ALL_NODES.octets());
        let icmp = &f[54..];
        assert_eq!(icmp[0], 136, "NA");
        assert_eq!(icmp[4], 0b0010_0000, "O=1, S=0, R=0");
        assert_eq!(&icmp[8..24], &vip.octets(), "target");
        assert_eq!(
            &icmp[24..32],
            &[2, 1, 2, 0, 0, 0, 0, 0x11],
            "target LLA option"
        );
        // Checksum verifies (sum over pseudo-header + ICMPv6 = 0xffff).
        let mut sum: u32 = 0;
        let mut add = |b: &[u8]| {
            for c in b.chunks(2) {
                sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
        };
        add(&f[22..54]);
        add(&(icmp.len() as u32).to_be_bytes());
        add(&[0, 0, 0, 58]);
        add(icmp);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
        assert_eq!(
            parse(&f),
            Some(Incoming::NeighborAdvert {
                target: vip,
                mac: MAC
            })
        );
    }

    #[test]
    fn solicited_na_sets_solicited_and_override() {
        let vip: Ipv6Addr = "2001:db8::50".parse().unwrap();
        let client: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let f = solicited_na(MAC, vip, CLIENT, client);
        assert_eq!(&f[0..6], &CLIENT);
        assert_eq!(f[54 + 4], 0b0110_0000);
        // DAD probes (from ::) get the multicast unsolicited form.
        let f = solicited_na(MAC, vip, CLIENT, Ipv6Addr::UNSPECIFIED);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
    }

    #[test]
    fn parses_requests_and_claims() {
        let vip = Ipv4Addr::new(198, 51, 100, 50);
        let client = Ipv4Addr::new(198, 51, 100, 100);
        // A request built like a client's: reuse arp() with op REQUEST and a different TPA.
        let req = arp(
            ArpOperation::REQUEST,
            CLIENT,
            client,
            [0; 6],
            vip,
            BROADCAST,
        );
        assert_eq!(
            parse(&req),
            Some(Incoming::ArpRequest {
                sender_mac: CLIENT,
                sender_ip: client,
                target: vip
            })
        );
        assert_eq!(
            parse(&gratuitous_arp_request(MAC, vip)),
            Some(Incoming::ArpClaim { ip: vip, mac: MAC })
        );
        assert_eq!(
            parse(&arp_reply(MAC, vip, CLIENT, client)),
            Some(Incoming::ArpClaim { ip: vip, mac: MAC })
        );
    }

    #[test]
    fn parses_neighbor_solicitation_with_source_lla() {
        let vip: Ipv6Addr = "2001:db8::50".parse().unwrap();
        let client: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let solicited_node: Ipv6Addr = "ff02::1:ff00:50".parse().unwrap();
        let mut payload = vip.octets().to_vec();
        payload.extend_from_slice(&[1, 1]);
        payload.extend_from_slice(&CLIENT);
        let b = PacketBuilder::ethernet2(CLIENT, ipv6_multicast_mac(solicited_node))
            .ipv6(client.octets(), solicited_node.octets(), 255)
            .icmpv6(Icmpv6Type::NeighborSolicitation);
        let mut f = Vec::new();
        b.write(&mut f, &payload).unwrap();
        assert_eq!(
            parse(&f),
            Some(Incoming::NeighborSolicit {
                src_mac: CLIENT,
                src_ip: client,
                target: vip
            })
        );
    }

    proptest! {
        #[test]
        fn built_arp_frames_parse_back(mac in any::<[u8; 6]>(), ip in any::<[u8; 4]>()) {
            let ip = Ipv4Addr::from(ip);
            prop_assert_eq!(parse(&gratuitous_arp_reply(mac, ip)), Some(Incoming::ArpClaim { ip, mac }));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }
    }
}
