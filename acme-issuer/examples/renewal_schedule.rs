//! Print when certificates of the given lifetimes are renewed under the default policy: the
//! planned instant (2/3 of the lifetime, minus the per-certificate jitter) and the emergency
//! threshold (1/20 of the lifetime left).
//!
//! `cargo run -p acme-issuer --example renewal_schedule -- 90d 64d 45d 6d 1h`

use std::time::{Duration, SystemTime};

use acme_issuer::policy::renewal::{RenewalPolicy, Validity, jitter_sample};

fn parse(arg: &str) -> Option<Duration> {
    let (num, unit) = arg.split_at(arg.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(Duration::from_secs(match unit {
        "d" => n * 86_400,
        "h" => n * 3_600,
        "m" => n * 60,
        "s" => n,
        _ => return None,
    }))
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 86_400 {
        format!("{:.1} d", s as f64 / 86_400.0)
    } else if s >= 3_600 {
        format!("{:.1} h", s as f64 / 3_600.0)
    } else {
        format!("{s} s")
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        args = ["90d", "64d", "45d", "6d"].map(String::from).to_vec();
    }
    let policy = RenewalPolicy::default();
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    println!(
        "{:>10}  {:>22}  {:>22}",
        "lifetime", "renewed after (serial A/B)", "emergency after"
    );
    for arg in &args {
        let Some(life) = parse(arg) else {
            eprintln!("renewal_schedule: `{arg}` is not a duration like 90d, 6h, 30m");
            std::process::exit(2);
        };
        let validity = Validity {
            not_before: start,
            not_after: start + life,
        };
        let at = |serial: &str| {
            let t = policy.renew_at(validity, None, jitter_sample(serial));
            human(t.duration_since(start).unwrap_or_default())
        };
        let emergency = policy
            .emergency_at(validity)
            .duration_since(start)
            .unwrap_or_default();
        println!(
            "{:>10}  {:>22}  {:>22}",
            human(life),
            format!("{} / {}", at("0a"), at("0b")),
            human(emergency)
        );
    }
}
