//! `vip_failover::frames::parse` on arbitrary Ethernet frames. Properties: no panic, and the
//! frame the speaker would send in answer to (or in place of) what was parsed, built by the
//! crate's own encoders, parses back to exactly the claim it is meant to make.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vip_failover::frames::{
    Incoming, Mac, arp_reply, gratuitous_arp_reply, gratuitous_arp_request, parse, solicited_na,
    unsolicited_na,
};

const OURS: Mac = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

fn expect(frame: &[u8], want: Incoming, what: &str) {
    assert_eq!(
        parse(frame),
        Some(want),
        "{what} does not parse back: {frame:02x?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some(incoming) = parse(data) else {
        return;
    };
    match incoming {
        Incoming::ArpRequest {
            sender_mac,
            sender_ip,
            target,
        } => {
            let reply = arp_reply(OURS, target, sender_mac, sender_ip);
            expect(
                &reply,
                Incoming::ArpClaim {
                    ip: target,
                    mac: OURS,
                },
                "arp_reply",
            );
        }
        Incoming::ArpClaim { ip, mac } => {
            let claim = Incoming::ArpClaim { ip, mac };
            expect(
                &gratuitous_arp_request(mac, ip),
                claim,
                "gratuitous_arp_request",
            );
            expect(
                &gratuitous_arp_reply(mac, ip),
                claim,
                "gratuitous_arp_reply",
            );
        }
        Incoming::NeighborSolicit {
            src_mac,
            src_ip,
            target,
        } => {
            let na = solicited_na(OURS, target, src_mac, src_ip);
            expect(
                &na,
                Incoming::NeighborAdvert { target, mac: OURS },
                "solicited_na",
            );
        }
        Incoming::NeighborAdvert { target, mac } => {
            let na = unsolicited_na(mac, target);
            expect(
                &na,
                Incoming::NeighborAdvert { target, mac },
                "unsolicited_na",
            );
        }
    }
});
