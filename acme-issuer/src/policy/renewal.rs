//! When a certificate is renewed.
//!
//! The schedule is derived from the certificate's *real* lifetime (`notAfter - notBefore`), never
//! from a fixed "30 days before expiry": Let's Encrypt lifetimes shrink from 90 to 64 and then
//! 45 days, and test CAs issue minutes-long certificates. Rules, in order of precedence:
//!
//! 1. A certificate nobody wants any more is retired, never renewed (Traefik renews every stored
//!    certificate forever, traefik#3376).
//! 2. No certificate, or an expired one: issue now.
//! 3. Less than `emergency_fraction` (1/20) of the lifetime left: renew now, whatever ARI says.
//! 4. The CA published an ARI window (RFC 9773): renew at a uniformly chosen instant inside it.
//! 5. Otherwise renew at `renew_at_fraction` (2/3) of the lifetime, moved earlier by up to
//!    `jitter_fraction` of the lifetime so a fleet issued together does not renew together.
//!
//! The jitter sample is derived from the certificate (see [`jitter_sample`]) so that re-checking
//! the same certificate gives the same instant instead of re-rolling the dice on every tick,
//! which would bias renewals early.

use std::time::{Duration, SystemTime};

/// The renewal rules' tunables. The defaults follow cert-manager (2/3) and certmagic (1/20).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenewalPolicy {
    /// Fraction of the lifetime after which a certificate is renewed (default 2/3).
    pub renew_at_fraction: f64,
    /// Up to this fraction of the lifetime the renewal instant is moved earlier (default 0.05).
    pub jitter_fraction: f64,
    /// Renew immediately when less than this fraction of the lifetime is left (default 1/20).
    pub emergency_fraction: f64,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self {
            renew_at_fraction: 2.0 / 3.0,
            jitter_fraction: 0.05,
            emergency_fraction: 1.0 / 20.0,
        }
    }
}

/// Validity period of an issued certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// `notBefore` of the leaf.
    pub not_before: SystemTime,
    /// `notAfter` of the leaf.
    pub not_after: SystemTime,
}

impl Validity {
    /// The real lifetime (zero if the dates are inverted).
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO)
    }
}

/// A suggested renewal window from the CA's `renewalInfo` resource (RFC 9773).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AriWindow {
    /// Start of the suggested window.
    pub start: SystemTime,
    /// End of the suggested window.
    pub end: SystemTime,
}

/// Why a certificate is (re-)issued now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RenewReason {
    /// Wanted but not in the store.
    Missing,
    /// Past `notAfter` (or a zero lifetime).
    Expired,
    /// Less than the emergency fraction of the lifetime is left.
    Emergency,
    /// Inside the CA's ARI window.
    AriWindow,
    /// Past the policy's renewal instant.
    Due,
}

impl RenewReason {
    /// A short lower-case label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Expired => "expired",
            Self::Emergency => "emergency",
            Self::AriWindow => "ari",
            Self::Due => "due",
        }
    }
}

/// What to do with one certificate at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do; look again at `recheck_at`.
    Keep {
        /// The instant at which the certificate becomes due (renewal or emergency).
        recheck_at: SystemTime,
    },
    /// Order a new certificate now.
    Renew(RenewReason),
    /// Nobody wants these names any more: do not renew (the entry may be left to expire).
    Retire,
}

impl RenewalPolicy {
    /// The instant at which `validity` should be renewed, given an optional ARI window and a
    /// jitter `sample` in `[0, 1)`.
    ///
    /// Never later than the emergency threshold, never earlier than `not_before`.
    pub fn renew_at(&self, validity: Validity, ari: Option<AriWindow>, sample: f64) -> SystemTime {
        let sample = sample.clamp(0.0, 1.0);
        let lifetime = validity.lifetime();
        let emergency_at = self.emergency_at(validity);
        let planned = match ari {
            Some(window) if window.end >= window.start => {
                let width = window.end.duration_since(window.start).unwrap_or_default();
                window.start + scale(width, sample)
            }
            _ => {
                let fraction = (self.renew_at_fraction - self.jitter_fraction.max(0.0) * sample)
                    .clamp(0.0, 1.0);
                validity.not_before + scale(lifetime, fraction)
            }
        };
        planned.clamp(validity.not_before, emergency_at.max(validity.not_before))
    }

    /// The instant from which less than `emergency_fraction` of the lifetime is left.
    pub fn emergency_at(&self, validity: Validity) -> SystemTime {
        let left = scale(validity.lifetime(), self.emergency_fraction.clamp(0.0, 1.0));
        validity
            .not_after
            .checked_sub(left)
            .unwrap_or(validity.not_before)
    }

    /// Decide what to do with one wanted-or-stored certificate at `now`.
    ///
    /// `current` is the best certificate in the store for these names (`None` if there is none),
    /// `wanted` whether any configuration still asks for them.
    pub fn decide(
        &self,
        current: Option<Validity>,
        wanted: bool,
        ari: Option<AriWindow>,
        now: SystemTime,
        sample: f64,
    ) -> Decision {
        if !wanted {
            return Decision::Retire;
        }
        let Some(validity) = current else {
            return Decision::Renew(RenewReason::Missing);
        };
        if validity.lifetime().is_zero() || now >= validity.not_after {
            return Decision::Renew(RenewReason::Expired);
        }
        if now >= self.emergency_at(validity) {
            return Decision::Renew(RenewReason::Emergency);
        }
        let at = self.renew_at(validity, ari, sample);
        if now >= at {
            Decision::Renew(if ari.is_some() {
                RenewReason::AriWindow
            } else {
                RenewReason::Due
            })
        } else {
            Decision::Keep { recheck_at: at }
        }
    }
}

/// `d * fraction`, rounded to whole milliseconds so that "2/3 of 90 days" is exactly 60 days.
fn scale(d: Duration, fraction: f64) -> Duration {
    Duration::from_millis((d.as_millis() as f64 * fraction).round() as u64)
}

/// A stable jitter sample in `[0, 1)` derived from a certificate identity (serial number, or
/// the names for a missing certificate), so repeated checks agree (FNV-1a, not cryptographic).
pub fn jitter_sample(identity: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in identity.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's last bytes barely reach the high bits: finish with the splitmix64 avalanche.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    // 53 high bits -> uniform double in [0, 1).
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn validity(start: u64, life: u64) -> Validity {
        Validity {
            not_before: at(start),
            not_after: at(start + life),
        }
    }

    #[test]
    fn ninety_day_cert_renews_after_sixty_days_minus_jitter() {
        let p = RenewalPolicy::default();
        let v = validity(T0, 90 * 86_400);
        assert_eq!(p.renew_at(v, None, 0.0), at(T0 + 60 * 86_400));
        // Full jitter: 5 % of 90 days = 4.5 days earlier.
        assert_eq!(p.renew_at(v, None, 1.0), at(T0 + 60 * 86_400 - 388_800));
        assert_eq!(
            p.decide(Some(v), true, None, at(T0 + 59 * 86_400), 0.0),
            Decision::Keep {
                recheck_at: at(T0 + 60 * 86_400)
            }
        );
        assert_eq!(
            p.decide(Some(v), true, None, at(T0 + 60 * 86_400), 0.0),
            Decision::Renew(RenewReason::Due)
        );
    }

    #[test]
    fn short_lived_certificates_scale() {
        let p = RenewalPolicy::default();
        let v = validity(T0, 120);
        assert_eq!(p.renew_at(v, None, 0.0), at(T0 + 80));
        assert_eq!(p.emergency_at(v), at(T0 + 114));
    }

    #[test]
    fn unwanted_is_never_renewed_even_if_expired() {
        let p = RenewalPolicy::default();
        let v = validity(T0, 100);
        assert_eq!(
            p.decide(Some(v), false, None, at(T0 + 1000), 0.5),
            Decision::Retire
        );
        assert_eq!(p.decide(None, false, None, at(T0), 0.5), Decision::Retire);
    }

    #[test]
    fn ari_window_late_but_emergency_wins() {
        let p = RenewalPolicy::default();
        let v = validity(T0, 1000);
        let late = AriWindow {
            start: at(T0 + 990),
            end: at(T0 + 999),
        };
        // The ARI window is beyond the emergency threshold: clamp to it.
        assert_eq!(p.renew_at(v, Some(late), 0.0), at(T0 + 950));
        assert_eq!(
            p.decide(Some(v), true, Some(late), at(T0 + 960), 0.0),
            Decision::Renew(RenewReason::Emergency)
        );
        let early = AriWindow {
            start: at(T0 + 100),
            end: at(T0 + 200),
        };
        assert_eq!(
            p.decide(Some(v), true, Some(early), at(T0 + 150), 0.5),
            Decision::Renew(RenewReason::AriWindow)
        );
    }

    #[test]
    fn jitter_sample_is_stable_and_in_range() {
        assert_eq!(jitter_sample("0a1b"), jitter_sample("0a1b"));
        assert_ne!(jitter_sample("0a1b"), jitter_sample("0a1c"));
        // Neighbouring serials land far apart: the spread over 256 of them covers [0, 1).
        let samples: Vec<f64> = (0..=255u8)
            .map(|b| jitter_sample(&format!("0a{b:02x}")))
            .collect();
        let below = samples.iter().filter(|s| **s < 0.5).count();
        assert!((96..=160).contains(&below), "{below} of 256 below 0.5");
        for s in ["", "x", "ff00ff", "example.com"] {
            let v = jitter_sample(s);
            assert!((0.0..1.0).contains(&v), "{s}: {v}");
        }
    }

    /// Reference: the rules of the module doc, written as plain arithmetic in seconds.
    fn reference(
        p: &RenewalPolicy,
        start: u64,
        life: u64,
        ari: Option<(u64, u64)>,
        now: u64,
        sample: f64,
    ) -> (bool, f64) {
        let (s, l, n) = (start as f64, life as f64, now as f64);
        let emergency = s + l - l * p.emergency_fraction;
        let planned = match ari {
            Some((a, b)) => a as f64 + (b - a) as f64 * sample,
            None => s + l * (p.renew_at_fraction - p.jitter_fraction * sample),
        };
        let at = planned.clamp(s, emergency);
        (life == 0 || n >= s + l || n >= emergency || n >= at, at)
    }

    proptest! {
        #[test]
        fn decide_matches_reference(
            life in 1u64..200 * 86_400,
            offset in 0u64..250 * 86_400,
            sample in 0.0f64..1.0,
            ari in proptest::option::of((0u64..200 * 86_400, 0u64..10 * 86_400)),
        ) {
            let p = RenewalPolicy::default();
            let v = validity(T0, life);
            let window = ari.map(|(a, w)| AriWindow { start: at(T0 + a), end: at(T0 + a + w) });
            let now = T0 + offset;
            let (renew, ref_at) = reference(&p, T0, life, ari.map(|(a, w)| (T0 + a, T0 + a + w)), now, sample);
            let got = p.decide(Some(v), true, window, at(now), sample);
            match got {
                // Within a microsecond of the boundary float rounding may go either way.
                Decision::Renew(_) => prop_assert!(renew || (ref_at - now as f64).abs() < 1e-3, "renewed too early: {got:?}"),
                Decision::Keep { recheck_at } => {
                    prop_assert!(!renew || (ref_at - now as f64).abs() < 1e-3, "kept a due certificate");
                    let secs = recheck_at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
                    prop_assert!((secs - ref_at).abs() < 1.0, "{secs} vs {ref_at}");
                    prop_assert!(recheck_at > at(now));
                }
                Decision::Retire => prop_assert!(false, "wanted certificate retired"),
            }
        }

        #[test]
        fn once_due_stays_due(life in 1u64..100 * 86_400, a in 0u64..200 * 86_400, b in 0u64..200 * 86_400, sample in 0.0f64..1.0) {
            let p = RenewalPolicy::default();
            let v = validity(T0, life);
            let (early, late) = (a.min(b), a.max(b));
            if matches!(p.decide(Some(v), true, None, at(T0 + early), sample), Decision::Renew(_)) {
                prop_assert!(matches!(p.decide(Some(v), true, None, at(T0 + late), sample), Decision::Renew(_)));
            }
        }

        #[test]
        fn renew_at_respects_bounds(life in 1u64..100 * 86_400, sample in 0.0f64..1.0) {
            let p = RenewalPolicy::default();
            let v = validity(T0, life);
            let r = p.renew_at(v, None, sample);
            prop_assert!(r >= v.not_before);
            prop_assert!(r <= p.emergency_at(v));
            let lo = v.not_before + v.lifetime().mul_f64(p.renew_at_fraction - p.jitter_fraction);
            prop_assert!(r + Duration::from_secs(1) >= lo);
        }
    }
}
