//! Linux I/O: UDP heartbeats, an AF_PACKET announcer and rtnetlink addresses, driving a
//! [`crate::Machine`]. Needs `CAP_NET_RAW` (packet sockets) and `CAP_NET_ADMIN` (addresses).

mod ffi;
pub mod netlink;
pub mod packet;
pub mod speaker;

pub use speaker::{AddressMode, IoCounters, Membership, Speaker, SpeakerOptions, SpeakerStatus};
