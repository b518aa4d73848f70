//! The `Date` response header, rendered at most once per second per thread (RFC 9110 §6.6.1
//! has an origin server send it; hyper's server did, so the inline path does too).

use std::cell::RefCell;
use std::time::{Duration, UNIX_EPOCH};

use crate::clock::unix_seconds;

/// `Sun, 06 Nov 1994 08:49:37 GMT`: always 29 bytes.
const LEN: usize = 29;

struct Cached {
    second: u64,
    text: [u8; LEN],
}

thread_local! {
    static CACHE: RefCell<Cached> = const {
        RefCell::new(Cached { second: u64::MAX, text: [b' '; LEN] })
    };
}

/// Calls `f` with the current `Date` value (IMF-fixdate).
pub(crate) fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let second = unix_seconds();
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.second != second {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(second));
            if text.len() == LEN {
                cache.text.copy_from_slice(text.as_bytes());
                cache.second = second;
            }
        }
        f(&cache.text)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_an_http_date() {
        let text = super::with_date(|d| String::from_utf8(d.to_vec()).unwrap());
        let parsed = httpdate::parse_http_date(&text).unwrap();
        let drift = std::time::SystemTime::now()
            .duration_since(parsed)
            .unwrap_or_default();
        assert!(drift.as_secs() <= 2, "{text}");
        assert!(text.ends_with(" GMT"));
    }
}
