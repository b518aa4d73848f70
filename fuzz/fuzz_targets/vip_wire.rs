//! `vip_failover::wire::decode` with a fixed cluster key. Random bytes never carry a valid
//! HMAC, so the input is used twice: as a datagram (must be rejected without panicking), and as
//! a message *body* that the target signs with the key, which drives the body parser. For every
//! body that decodes: `decode(encode(m)) == m`, and a canonical body (no unknown flag bits,
//! zero echo fields when the echo flag is clear) re-encodes to the very same bytes.
#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use std::sync::LazyLock;
use vip_failover::Error;
use vip_failover::wire::{SharedKey, decode, encode};

const KEY: &[u8] = b"fairway-fuzz-cluster-key-32bytes";
static SHARED: LazyLock<SharedKey> =
    LazyLock::new(|| SharedKey::new(KEY).expect("key is long enough"));

/// Offsets in the body (see the layout in `wire.rs`).
const FLAGS: usize = 5;
const ECHO_FIELDS: std::ops::Range<usize> = 32..44;
const KNOWN_FLAGS: u8 = 1 | 2 | 4 | 8;
const FLAG_ECHO: u8 = 4;

fuzz_target!(|data: &[u8]| {
    let key = &*SHARED;
    match decode(data, key) {
        Err(Error::Unauthenticated | Error::Malformed(_)) => {}
        other => panic!("an unsigned datagram was not rejected: {other:?}"),
    }

    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).expect("HMAC takes any key length");
    mac.update(data);
    let mut datagram = data.to_vec();
    datagram.extend_from_slice(&mac.finalize().into_bytes());
    let Ok(msg) = decode(&datagram, key) else {
        return;
    };
    let mut out = Vec::new();
    encode(&msg, key, &mut out);
    let again = decode(&out, key).expect("an encoded message decodes");
    assert_eq!(again, msg, "decode(encode(m)) != m");
    let flags = data[FLAGS];
    let canonical = flags & !KNOWN_FLAGS == 0
        && (flags & FLAG_ECHO != 0 || data[ECHO_FIELDS].iter().all(|&b| b == 0));
    if canonical {
        assert_eq!(out, datagram, "a canonical datagram re-encodes differently");
    }
});
