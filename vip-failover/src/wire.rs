//! Heartbeat and release messages, and their authenticated wire format.
//!
//! A datagram is `body ‖ HMAC-SHA256(key, body)`. The MAC is checked before anything is parsed,
//! so an unauthenticated packet never reaches the state machine; replays of authentic packets
//! are rejected by the machine through `(incarnation, seq)` ordering.
//!
//! Body layout (big-endian):
//! `"FWV1" | kind u8 | flags u8 | fingerprint u64 | from u16 | incarnation u64 | seq u64 |
//!  echo_seq u64 | echo_hold_us u32 | n u16, claims [u16; n] | n u16, released [u16; n] |
//!  n u16, ages_ms [u16; n] | n u16, vacant [u16; n] | n u16, intents [u16; n]`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Error;
use crate::config::{NodeIndex, VipIndex};

const MAGIC: &[u8; 4] = b"FWV1";
const MAC_LEN: usize = 32;
const FLAG_HEALTHY: u8 = 1;
const FLAG_LEAVING: u8 = 2;
const FLAG_ECHO: u8 = 4;
const FLAG_PROBE: u8 = 8;
/// Fixed part of the body before the variable-length lists.
const FIXED_LEN: usize = 4 + 1 + 1 + 8 + 2 + 8 + 8 + 8 + 4;
/// Five list-length prefixes.
const LISTS_LEN: usize = 10;

/// Largest datagram we accept or produce.
pub const MAX_DATAGRAM: usize = 65_000;

/// "Never heard" in [`Body::ages_ms`].
pub const AGE_UNKNOWN: u16 = u16::MAX;

/// What a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// Periodic (or immediate, after a change) state report.
    Heartbeat,
    /// The sender gives up the VIPs in [`Body::released`] (and, if `leaving`, everything: it is
    /// shutting down). Successors take over without waiting for failure detection.
    Release,
}

/// The part of a message that is the same for every peer (shared behind an `Arc`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body {
    /// Heartbeat or release.
    pub kind: MessageKind,
    /// [`crate::Cluster::fingerprint`] of the sender's configuration.
    pub fingerprint: u64,
    /// Sender's node index.
    pub from: NodeIndex,
    /// Sender's incarnation (grows on every restart; e.g. start time in µs).
    pub incarnation: u64,
    /// Per-incarnation sequence number, one per message round (all peers get the same number).
    pub seq: u64,
    /// The sender considers itself healthy (eligible to hold VIPs).
    pub healthy: bool,
    /// The sender is shutting down.
    pub leaving: bool,
    /// VIPs the sender currently announces, ascending.
    pub claims: Vec<VipIndex>,
    /// VIPs the sender has just given up (release messages only).
    pub released: Vec<VipIndex>,
    /// Per node index: milliseconds since the sender last heard that node directly
    /// ([`AGE_UNKNOWN`] = never / too long). Lets receivers use the sender as an indirect
    /// witness, and tells each peer whether the sender hears it (for quorum).
    pub ages_ms: Vec<u16>,
    /// VIPs the sender sees without a live owner (normally empty). In quorum mode a takeover
    /// after a failure needs a majority to agree that the VIP is vacant, so a node that never
    /// heard the current owner's claim cannot take the VIP from it.
    pub vacant: Vec<VipIndex>,
    /// Quorum mode: VIPs the sender is about to take over; it announces once a majority has
    /// acknowledged (echoed a sequence number at least that of the first message listing it).
    pub intents: Vec<VipIndex>,
    /// The sender suspects a peer has died: every receiver answers with an immediate heartbeat.
    pub probe: bool,
}

/// Per-peer echo of the last message received from that peer, for round-trip measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo {
    /// The peer's sequence number we are echoing.
    pub seq: u64,
    /// How long we held it before this send.
    pub hold: Duration,
}

/// One message to one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Shared content.
    pub body: Arc<Body>,
    /// Round-trip echo for this peer.
    pub echo: Option<Echo>,
}

/// The cluster's shared HMAC key. `Debug` never shows it.
#[derive(Clone)]
pub struct SharedKey(Arc<[u8]>);

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedKey(<{} bytes redacted>)", self.0.len())
    }
}

impl SharedKey {
    /// Minimum key length in bytes.
    pub const MIN_LEN: usize = 16;

    /// Wraps raw key bytes (at least [`SharedKey::MIN_LEN`]).
    pub fn new(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < Self::MIN_LEN {
            return Err(Error::Key {
                path: "<memory>".into(),
                reason: format!("shorter than {} bytes", Self::MIN_LEN),
            });
        }
        Ok(SharedKey(Arc::from(bytes)))
    }

    /// Reads a key file: its bytes with trailing whitespace removed. On Unix the file must not be
    /// readable by group or others (mode 0600 or stricter).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let err = |reason: String| Error::Key {
            path: path.to_owned(),
            reason,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "mode {:o} is too open; use 0600",
                    mode & 0o777
                )));
            }
        }
        let mut bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
            bytes.pop();
        }
        if bytes.len() < Self::MIN_LEN {
            return Err(err(format!("shorter than {} bytes", Self::MIN_LEN)));
        }
        Ok(SharedKey(Arc::from(bytes)))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }
}

/// Encodes and authenticates `msg` into `out` (cleared first).
pub fn encode(msg: &Message, key: &SharedKey, out: &mut Vec<u8>) {
    let b = &*msg.body;
    out.clear();
    out.extend_from_slice(MAGIC);
    out.push(match b.kind {
        MessageKind::Heartbeat => 1,
        MessageKind::Release => 2,
    });
    let mut flags = 0;
    if b.healthy {
        flags |= FLAG_HEALTHY;
    }
    if b.leaving {
        flags |= FLAG_LEAVING;
    }
    if msg.echo.is_some() {
        flags |= FLAG_ECHO;
    }
    if b.probe {
        flags |= FLAG_PROBE;
    }
    out.push(flags);
    out.extend_from_slice(&b.fingerprint.to_be_bytes());
    out.extend_from_slice(&b.from.to_be_bytes());
    out.extend_from_slice(&b.incarnation.to_be_bytes());
    out.extend_from_slice(&b.seq.to_be_bytes());
    let (echo_seq, hold) = msg.echo.map_or((0, 0), |e| {
        (e.seq, u32::try_from(e.hold.as_micros()).unwrap_or(u32::MAX))
    });
    out.extend_from_slice(&echo_seq.to_be_bytes());
    out.extend_from_slice(&hold.to_be_bytes());
    for list in [&b.claims, &b.released, &b.ages_ms, &b.vacant, &b.intents] {
        let n = list.len().min(usize::from(u16::MAX));
        out.extend_from_slice(&(n as u16).to_be_bytes());
        for v in &list[..n] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    let mut mac = key.mac();
    mac.update(out);
    out.extend_from_slice(&mac.finalize().into_bytes());
}

/// Verifies and decodes a datagram. Returns [`Error::Unauthenticated`] if the MAC does not match
/// and [`Error::Malformed`] if an authentic body does not parse (a version mismatch).
pub fn decode(datagram: &[u8], key: &SharedKey) -> Result<Message, Error> {
    if datagram.len() < FIXED_LEN + LISTS_LEN + MAC_LEN || datagram.len() > MAX_DATAGRAM {
        return Err(Error::Malformed("bad length"));
    }
    let (body, tag) = datagram.split_at(datagram.len() - MAC_LEN);
    let mut mac = key.mac();
    mac.update(body);
    mac.verify_slice(tag).map_err(|_| Error::Unauthenticated)?;
    parse_body(body)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        if self.0.len() < N {
            return Err(Error::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    fn list(&mut self) -> Result<Vec<u16>, Error> {
        let n = usize::from(self.u16()?);
        if self.0.len() < n * 2 {
            return Err(Error::Malformed("list longer than datagram"));
        }
        (0..n).map(|_| self.u16()).collect()
    }
}

fn parse_body(body: &[u8]) -> Result<Message, Error> {
    let mut r = Reader(body);
    if &r.take::<4>()? != MAGIC {
        return Err(Error::Malformed("bad magic"));
    }
    let kind = match r.u8()? {
        1 => MessageKind::Heartbeat,
        2 => MessageKind::Release,
        _ => return Err(Error::Malformed("unknown kind")),
    };
    let flags = r.u8()?;
    let fingerprint = r.u64()?;
    let from = r.u16()?;
    let incarnation = r.u64()?;
    let seq = r.u64()?;
    let echo_seq = r.u64()?;
    let hold = r.u32()?;
    let claims = r.list()?;
    let released = r.list()?;
    let ages_ms = r.list()?;
    let vacant = r.list()?;
    let intents = r.list()?;
    if !r.0.is_empty() {
        return Err(Error::Malformed("trailing bytes"));
    }
    Ok(Message {
        body: Arc::new(Body {
            kind,
            fingerprint,
            from,
            incarnation,
            seq,
            healthy: flags & FLAG_HEALTHY != 0,
            leaving: flags & FLAG_LEAVING != 0,
            claims,
            released,
            ages_ms,
            vacant,
            intents,
            probe: flags & FLAG_PROBE != 0,
        }),
        echo: (flags & FLAG_ECHO != 0).then(|| Echo {
            seq: echo_seq,
            hold: Duration::from_micros(u64::from(hold)),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> SharedKey {
        SharedKey::new(b"0123456789abcdef-test-key").unwrap()
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        (
            any::<bool>(),
            any::<u64>(),
            any::<u16>(),
            any::<u64>(),
            any::<u64>(),
            any::<(bool, bool)>(),
            proptest::collection::vec(any::<u16>(), 0..50),
            proptest::collection::vec(any::<u16>(), 0..10),
            proptest::collection::vec(any::<u16>(), 0..120),
            proptest::option::of((any::<u64>(), 0u32..u32::MAX)),
        )
            .prop_map(
                |(rel, fp, from, inc, seq, (h, l), claims, released, ages, echo)| Message {
                    body: Arc::new(Body {
                        kind: if rel {
                            MessageKind::Release
                        } else {
                            MessageKind::Heartbeat
                        },
                        fingerprint: fp,
                        from,
                        incarnation: inc,
                        seq,
                        healthy: h,
                        leaving: l,
                        claims: claims.clone(),
                        released: released.clone(),
                        ages_ms: ages,
                        vacant: released.iter().rev().copied().collect(),
                        intents: claims.iter().take(3).copied().collect(),
                        probe: h && !l,
                    }),
                    echo: echo.map(|(seq, us)| Echo {
                        seq,
                        hold: Duration::from_micros(u64::from(us)),
                    }),
                },
            )
    }

    proptest! {
        #[test]
        fn round_trips(msg in arb_message()) {
            let mut buf = Vec::new();
            encode(&msg, &key(), &mut buf);
            prop_assert_eq!(decode(&buf, &key()).unwrap(), msg);
        }

        #[test]
        fn any_bit_flip_is_rejected(msg in arb_message(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut buf = Vec::new();
            encode(&msg, &key(), &mut buf);
            let i = pos.index(buf.len());
            buf[i] ^= 1 << bit;
            prop_assert!(decode(&buf, &key()).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert!(decode(&bytes, &key()).is_err());
        }
    }

    #[test]
    fn wrong_key_is_unauthenticated() {
        let msg = Message {
            body: Arc::new(Body {
                kind: MessageKind::Heartbeat,
                fingerprint: 1,
                from: 2,
                incarnation: 3,
                seq: 4,
                healthy: true,
                leaving: false,
                claims: vec![0],
                released: vec![],
                ages_ms: vec![0, 5, AGE_UNKNOWN],
                vacant: vec![],
                intents: vec![1],
                probe: true,
            }),
            echo: None,
        };
        let mut buf = Vec::new();
        encode(&msg, &key(), &mut buf);
        let other = SharedKey::new(b"another-key-of-enough-length").unwrap();
        assert!(matches!(decode(&buf, &other), Err(Error::Unauthenticated)));
    }

    #[test]
    fn key_debug_is_redacted() {
        let k = SharedKey::new(b"super-secret-key-material").unwrap();
        assert!(!format!("{k:?}").contains("secret"));
        assert!(SharedKey::new(b"short").is_err());
    }
}
