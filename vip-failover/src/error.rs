//! The crate's one error type.

use std::net::IpAddr;
use std::path::PathBuf;

/// Everything that can go wrong in `vip-failover`: configuration problems (named by node or VIP),
/// wire decoding (named by the peer address when known) and Linux I/O (named by interface/VIP).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cluster configuration is inconsistent.
    #[error("cluster config: {0}")]
    Config(String),
    /// The local node is not one of the configured nodes.
    #[error("cluster config: local node `{0}` is not in the node list")]
    UnknownLocalNode(String),
    /// A VIP names a candidate or priority for a node that is not configured.
    #[error("cluster config: VIP {vip} names unknown node `{node}`")]
    UnknownCandidate {
        /// The VIP.
        vip: IpAddr,
        /// The unknown node name.
        node: String,
    },
    /// The shared heartbeat key is unusable (too short, unreadable).
    #[error("heartbeat key {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it (never the key itself).
        reason: String,
    },
    /// A heartbeat datagram could not be decoded.
    #[error("malformed heartbeat: {0}")]
    Malformed(&'static str),
    /// A heartbeat datagram failed HMAC verification.
    #[error("heartbeat failed authentication")]
    Unauthenticated,
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing (names the interface, VIP or socket).
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A netlink request failed.
    #[error("netlink: {context}: {message}")]
    Netlink {
        /// What we were doing (names the interface and VIP).
        context: String,
        /// The netlink error text.
        message: String,
    },
}

impl Error {
    /// Wraps an I/O error with what we were doing.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
