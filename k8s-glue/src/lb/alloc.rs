//! LoadBalancer IP allocation as pure logic (MetalLB-compatible annotations), no API calls.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service};

use crate::Error;

/// `metallb.io/loadBalancerIPs`: comma-separated requested IPs.
pub const ANNOTATION_IPS: &str = "metallb.io/loadBalancerIPs";
/// `metallb.io/address-pool`: the pool to allocate from.
pub const ANNOTATION_POOL: &str = "metallb.io/address-pool";
/// Deprecated spelling of [`ANNOTATION_IPS`], still read.
pub const LEGACY_ANNOTATION_IPS: &str = "metallb.universe.tf/loadBalancerIPs";
/// Deprecated spelling of [`ANNOTATION_POOL`], still read.
pub const LEGACY_ANNOTATION_POOL: &str = "metallb.universe.tf/address-pool";

/// One address pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Name, matched by the `metallb.io/address-pool` annotation.
    pub name: String,
    /// The address ranges (network and broadcast addresses of IPv4 nets wider than /31 are skipped).
    pub cidrs: Vec<IpNet>,
    /// Inclusive `first-last` ranges, every address usable (MetalLB's range form: an operator
    /// who writes `.40-.47` means all eight, not the six hosts of `.40/29`).
    pub ranges: Vec<AddressRange>,
    /// Whether Services that request nothing may get addresses from it.
    pub auto_assign: bool,
}

impl Pool {
    /// A pool from MetalLB-style address strings: a CIDR (`198.51.100.0/28`), an inclusive range
    /// (`198.51.100.40-198.51.100.49`) or one address. The error names the bad entry.
    pub fn from_addresses<S: AsRef<str>>(
        name: impl Into<String>,
        addresses: &[S],
        auto_assign: bool,
    ) -> Result<Pool, String> {
        let mut pool = Pool {
            name: name.into(),
            cidrs: Vec::new(),
            ranges: Vec::new(),
            auto_assign,
        };
        for a in addresses {
            let a = a.as_ref().trim();
            if a.contains('/') {
                let net: IpNet = a.parse().map_err(|e| format!("`{a}`: {e}"))?;
                pool.cidrs.push(net.trunc());
            } else {
                pool.ranges.push(a.parse()?);
            }
        }
        Ok(pool)
    }

    /// Whether `ip` is one of the pool's usable addresses' ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidrs.iter().any(|c| c.contains(&ip)) || self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Every CIDR and range as an inclusive `(is_v6, low, high)` interval.
    fn intervals(&self) -> impl Iterator<Item = (bool, u128, u128)> + '_ {
        self.cidrs
            .iter()
            .map(|c| {
                (
                    c.addr().is_ipv6(),
                    ip_num(c.network()),
                    ip_num(c.broadcast()),
                )
            })
            .chain(self.ranges.iter().map(|r| r.interval()))
    }

    /// Usable addresses, lowest first per entry: the CIDRs, then the ranges.
    fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.cidrs
            .iter()
            .flat_map(hosts)
            .chain(self.ranges.iter().flat_map(|r| r.iter()))
    }
}

/// An inclusive address range `first-last` (one address: `first == last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    first: IpAddr,
    last: IpAddr,
}

fn ip_num(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl AddressRange {
    /// The range `first..=last`; both of one family, `first <= last`.
    pub fn new(first: IpAddr, last: IpAddr) -> Result<Self, String> {
        if first.is_ipv4() != last.is_ipv4() {
            return Err(format!("`{first}-{last}` mixes IPv4 and IPv6"));
        }
        if ip_num(first) > ip_num(last) {
            return Err(format!("`{first}-{last}` ends before it starts"));
        }
        Ok(AddressRange { first, last })
    }

    /// The first address.
    pub fn first(&self) -> IpAddr {
        self.first
    }

    /// The last address (inclusive).
    pub fn last(&self) -> IpAddr {
        self.last
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.first.is_ipv4()
            && (ip_num(self.first)..=ip_num(self.last)).contains(&ip_num(ip))
    }

    fn interval(&self) -> (bool, u128, u128) {
        (self.first.is_ipv6(), ip_num(self.first), ip_num(self.last))
    }

    /// Every address, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + use<> {
        let v6 = self.first.is_ipv6();
        (ip_num(self.first)..=ip_num(self.last)).map(move |n| {
            if v6 {
                IpAddr::V6(n.into())
            } else {
                // In range: both ends are IPv4, so `n` fits in 32 bits.
                IpAddr::V4(std::net::Ipv4Addr::from(n as u32))
            }
        })
    }
}

impl std::str::FromStr for AddressRange {
    type Err = String;

    /// `first-last` or one address.
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |a: &str| -> Result<IpAddr, String> {
            a.trim()
                .parse()
                .map_err(|_| format!("`{s}`: `{}` is not an IP address", a.trim()))
        };
        match s.split_once('-') {
            Some((a, b)) => AddressRange::new(parse(a)?, parse(b)?),
            None => {
                let ip = parse(s)?;
                AddressRange::new(ip, ip)
            }
        }
    }
}

impl std::fmt::Display for AddressRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Which Services are ours and where their addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbConfig {
    /// Our `spec.loadBalancerClass`.
    pub class: String,
    /// Also handle class-less Services (we are the cluster's default implementation).
    pub default_class: bool,
    /// The pools, tried in order.
    pub pools: Vec<Pool>,
}

/// The default `loadBalancerClass` handled by Fairway.
pub const DEFAULT_LB_CLASS: &str = "fairway.dev/lb";

impl LbConfig {
    /// Checks pool names are unique and non-empty and pools do not overlap.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |message: String| {
            Err(Error::Config {
                field: "load_balancer.pools",
                message,
            })
        };
        for (i, p) in self.pools.iter().enumerate() {
            if p.name.is_empty() {
                return bad(format!("pool #{i} has no name"));
            }
            if p.cidrs.is_empty() && p.ranges.is_empty() {
                return bad(format!("pool {} has no addresses", p.name));
            }
            for q in &self.pools[..i] {
                if q.name == p.name {
                    return bad(format!("pool name {} is used twice", p.name));
                }
                for a in p.intervals() {
                    if q.intervals()
                        .any(|b| a.0 == b.0 && a.1 <= b.2 && b.1 <= a.2)
                    {
                        return bad(format!(
                            "pool {} overlaps pool {} (a range or CIDR of one contains addresses of the other)",
                            p.name, q.name
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `svc` is a LoadBalancer Service we implement: `type: LoadBalancer` and our class,
    /// or no class when we are the default. (The field is immutable, so this never flips.)
    pub fn is_ours(&self, svc: &Service) -> bool {
        let Some(spec) = &svc.spec else { return false };
        if spec.type_.as_deref() != Some("LoadBalancer") {
            return false;
        }
        match spec.load_balancer_class.as_deref() {
            Some(class) => class == self.class,
            None => self.default_class,
        }
    }
}

/// What a Service asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Specific addresses (annotation or the deprecated `spec.loadBalancerIP`).
    pub ips: Vec<IpAddr>,
    /// A pool name.
    pub pool: Option<String>,
    /// Whether a deprecated spelling was used (worth a Warning event).
    pub deprecated: bool,
}

/// Why a Service gets no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// The request itself is malformed or contradictory.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A requested address is in no pool (or not in the requested pool).
    #[error("{ip} is not in {}", pool.as_deref().map(|p| format!("pool {p}")).unwrap_or_else(|| "any pool".into()))]
    NotInPool {
        /// The address.
        ip: IpAddr,
        /// The requested pool, if any.
        pool: Option<String>,
    },
    /// A requested address belongs to another Service.
    #[error("{ip} is already used by {owner}")]
    InUse {
        /// The address.
        ip: IpAddr,
        /// `namespace/name` of its Service.
        owner: String,
    },
    /// The named pool does not exist.
    #[error("no pool named {0}")]
    UnknownPool(String),
    /// Nothing is left.
    #[error("no free address in {0}")]
    Exhausted(String),
}

/// Reads the requested addresses and pool from annotations and `spec.loadBalancerIP`.
pub fn request(svc: &Service) -> Result<Request, AllocError> {
    let ann = svc.metadata.annotations.as_ref();
    let get = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str);
    let mut deprecated = false;
    let ips_text = match (get(ANNOTATION_IPS), get(LEGACY_ANNOTATION_IPS)) {
        (Some(t), _) => Some(t),
        (None, Some(t)) => {
            deprecated = true;
            Some(t)
        }
        (None, None) => None,
    };
    let spec_ip = svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .filter(|s| !s.is_empty());
    if ips_text.is_some() && spec_ip.is_some() {
        return Err(AllocError::Invalid(format!(
            "both the {ANNOTATION_IPS} annotation and spec.loadBalancerIP are set"
        )));
    }
    let mut ips = Vec::new();
    if let Some(text) = ips_text.or(spec_ip) {
        deprecated |= spec_ip.is_some();
        for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let ip: IpAddr = part
                .parse()
                .map_err(|_| AllocError::Invalid(format!("`{part}` is not an IP address")))?;
            if ips.iter().any(|i: &IpAddr| i.is_ipv4() == ip.is_ipv4()) {
                return Err(AllocError::Invalid(format!(
                    "more than one IPv{} address requested",
                    if ip.is_ipv4() { 4 } else { 6 }
                )));
            }
            ips.push(ip);
        }
    }
    let pool = match (get(ANNOTATION_POOL), get(LEGACY_ANNOTATION_POOL)) {
        (Some(p), _) => Some(p.to_string()),
        (None, Some(p)) => {
            deprecated = true;
            Some(p.to_string())
        }
        (None, None) => None,
    };
    Ok(Request {
        ips,
        pool,
        deprecated,
    })
}

/// The addresses currently in `status.loadBalancer.ingress[].ip`.
pub fn status_ips(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ing| {
            ing.iter()
                .filter_map(|i| i.ip.as_deref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The status to write for `ips` (`ipMode: VIP`: traffic arrives with the VIP as destination).
pub fn lb_status(ips: &[IpAddr]) -> LoadBalancerStatus {
    LoadBalancerStatus {
        ingress: (!ips.is_empty()).then(|| {
            ips.iter()
                .map(|ip| LoadBalancerIngress {
                    ip: Some(ip.to_string()),
                    ip_mode: Some("VIP".into()),
                    ..Default::default()
                })
                .collect()
        }),
    }
}

/// Usable addresses of a range, lowest first.
fn hosts(net: &IpNet) -> Box<dyn Iterator<Item = IpAddr> + '_> {
    match net {
        // `hosts()` skips the network and broadcast addresses of nets wider than /31.
        IpNet::V4(n) => Box::new(n.hosts().map(IpAddr::V4)),
        IpNet::V6(n) => Box::new(n.hosts().map(IpAddr::V6)),
    }
}

/// The allocation state: which Service holds which address. Deterministic: lowest free first.
#[derive(Debug, Clone, Default)]
pub struct Allocator {
    pools: Vec<Pool>,
    owner: HashMap<IpAddr, String>,
    held: BTreeMap<String, Vec<IpAddr>>,
}

impl Allocator {
    /// An allocator over `pools` with nothing allocated.
    pub fn new(pools: Vec<Pool>) -> Self {
        Allocator {
            pools,
            owner: HashMap::new(),
            held: BTreeMap::new(),
        }
    }

    /// The pool containing `ip`.
    pub fn pool_of(&self, ip: IpAddr) -> Option<&Pool> {
        self.pools.iter().find(|p| p.contains(ip))
    }

    /// The addresses `key` (`namespace/name`) holds.
    pub fn held(&self, key: &str) -> &[IpAddr] {
        self.held.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Who holds `ip`.
    pub fn owner(&self, ip: IpAddr) -> Option<&str> {
        self.owner.get(&ip).map(String::as_str)
    }

    /// Frees what `key` holds.
    pub fn release(&mut self, key: &str) {
        for ip in self.held.remove(key).unwrap_or_default() {
            self.owner.remove(&ip);
        }
    }

    fn free_for(&self, ip: IpAddr, key: &str) -> Result<(), AllocError> {
        match self.owner.get(&ip) {
            Some(o) if o != key => Err(AllocError::InUse {
                ip,
                owner: o.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn in_pool(&self, ip: IpAddr, pool: Option<&str>) -> Result<(), AllocError> {
        match (self.pool_of(ip), pool) {
            (Some(p), Some(want)) if p.name == want => Ok(()),
            (Some(_), None) => Ok(()),
            _ => Err(AllocError::NotInPool {
                ip,
                pool: pool.map(str::to_string),
            }),
        }
    }

    /// Decides the addresses of Service `key` given what it requests and what its status shows.
    /// Order (MetalLB's): keep still-valid current addresses; else the requested ones; else a free
    /// one from the requested pool; else from any auto-assign pool. On success `key` holds
    /// exactly the returned addresses; on failure it holds nothing.
    pub fn assign(
        &mut self,
        key: &str,
        req: &Request,
        current: &[IpAddr],
    ) -> Result<Vec<IpAddr>, AllocError> {
        let result = self.choose(key, req, current);
        self.release(key);
        if let Ok(ips) = &result {
            for ip in ips {
                self.owner.insert(*ip, key.to_string());
            }
            self.held.insert(key.to_string(), ips.clone());
        }
        result
    }

    fn choose(
        &self,
        key: &str,
        req: &Request,
        current: &[IpAddr],
    ) -> Result<Vec<IpAddr>, AllocError> {
        if let Some(pool) = &req.pool
            && !self.pools.iter().any(|p| &p.name == pool)
        {
            return Err(AllocError::UnknownPool(pool.clone()));
        }
        if !req.ips.is_empty() {
            for ip in &req.ips {
                self.in_pool(*ip, req.pool.as_deref())?;
                self.free_for(*ip, key)?;
            }
            return Ok(req.ips.clone());
        }
        let keep = !current.is_empty()
            && current.iter().all(|ip| {
                self.in_pool(*ip, req.pool.as_deref()).is_ok() && self.free_for(*ip, key).is_ok()
            });
        if keep {
            return Ok(current.to_vec());
        }
        let candidates: Vec<&Pool> = match &req.pool {
            Some(name) => self.pools.iter().filter(|p| &p.name == name).collect(),
            None => self.pools.iter().filter(|p| p.auto_assign).collect(),
        };
        for pool in &candidates {
            if let Some(ip) = pool.addresses().find(|ip| !self.owner.contains_key(ip)) {
                return Ok(vec![ip]);
            }
        }
        Err(AllocError::Exhausted(match &req.pool {
            Some(p) => format!("pool {p}"),
            None => "the auto-assign pools".into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;
    use kube::api::ObjectMeta;
    use proptest::prelude::*;

    fn pools() -> Vec<Pool> {
        vec![
            Pool {
                name: "a".into(),
                cidrs: vec!["198.51.100.0/30".parse().unwrap()],
                ranges: vec![],
                auto_assign: true,
            },
            Pool {
                name: "b".into(),
                cidrs: vec!["203.0.113.8/29".parse().unwrap()],
                ranges: vec![],
                auto_assign: false,
            },
        ]
    }

    fn svc(class: Option<&str>, ann: &[(&str, &str)], spec_ip: Option<&str>) -> Service {
        Service {
            metadata: ObjectMeta {
                annotations: Some(
                    ann.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                load_balancer_class: class.map(str::to_string),
                load_balancer_ip: spec_ip.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn class_selection_follows_metallb() {
        let mut cfg = LbConfig {
            class: DEFAULT_LB_CLASS.into(),
            default_class: false,
            pools: pools(),
        };
        assert!(cfg.is_ours(&svc(Some(DEFAULT_LB_CLASS), &[], None)));
        assert!(!cfg.is_ours(&svc(None, &[], None)));
        assert!(!cfg.is_ours(&svc(Some("other"), &[], None)));
        cfg.default_class = true;
        assert!(cfg.is_ours(&svc(None, &[], None)));
        assert!(
            !cfg.is_ours(&svc(Some("other"), &[], None)),
            "a default ignores classed Services"
        );
        let mut cluster_ip = svc(None, &[], None);
        cluster_ip.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        assert!(!cfg.is_ours(&cluster_ip));
    }

    #[test]
    fn requests_are_read_and_contradictions_rejected() {
        let r = request(&svc(
            None,
            &[(ANNOTATION_IPS, "203.0.113.9, 2001:db8::1")],
            None,
        ))
        .unwrap();
        assert_eq!(r.ips.len(), 2);
        assert!(!r.deprecated);
        let r = request(&svc(None, &[], Some("203.0.113.9"))).unwrap();
        assert!(r.deprecated);
        assert!(matches!(
            request(&svc(
                None,
                &[(ANNOTATION_IPS, "203.0.113.9")],
                Some("203.0.113.10")
            )),
            Err(AllocError::Invalid(_))
        ));
        assert!(request(&svc(None, &[(ANNOTATION_IPS, "nope")], None)).is_err());
        assert!(
            request(&svc(
                None,
                &[(ANNOTATION_IPS, "203.0.113.9,203.0.113.10")],
                None
            ))
            .is_err()
        );
        let r = request(&svc(None, &[(LEGACY_ANNOTATION_POOL, "b")], None)).unwrap();
        assert_eq!((r.pool.as_deref(), r.deprecated), (Some("b"), true));
    }

    #[test]
    fn allocation_order_and_conflicts() {
        let mut a = Allocator::new(pools());
        let none = Request::default();
        // 198.51.100.0/30 has two hosts: .1 and .2.
        assert_eq!(
            a.assign("ns/x", &none, &[]).unwrap(),
            vec!["198.51.100.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            a.assign("ns/y", &none, &[]).unwrap(),
            vec!["198.51.100.2".parse::<IpAddr>().unwrap()]
        );
        assert!(matches!(
            a.assign("ns/z", &none, &[]),
            Err(AllocError::Exhausted(_))
        ));
        // Re-assigning keeps the current address.
        let x = a.held("ns/x").to_vec();
        assert_eq!(a.assign("ns/x", &none, &x).unwrap(), x);
        // Requested pool b (not auto-assign) works when named.
        let pool_b = Request {
            pool: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(
            a.assign("ns/z", &pool_b, &[]).unwrap(),
            vec!["203.0.113.9".parse::<IpAddr>().unwrap()]
        );
        // A requested address held by another Service conflicts; outside pools is refused.
        let want_x = Request {
            ips: x.clone(),
            ..Default::default()
        };
        assert!(matches!(
            a.assign("ns/w", &want_x, &[]),
            Err(AllocError::InUse { .. })
        ));
        let outside = Request {
            ips: vec!["192.0.2.1".parse().unwrap()],
            ..Default::default()
        };
        assert!(matches!(
            a.assign("ns/w", &outside, &[]),
            Err(AllocError::NotInPool { .. })
        ));
        assert!(a.held("ns/w").is_empty());
        // Releasing frees for others.
        a.release("ns/x");
        assert_eq!(a.assign("ns/w", &want_x, &[]).unwrap(), x);
        assert!(matches!(
            a.assign(
                "ns/v",
                &Request {
                    pool: Some("nope".into()),
                    ..Default::default()
                },
                &[]
            ),
            Err(AllocError::UnknownPool(_))
        ));
    }

    #[test]
    fn overlapping_pools_are_rejected() {
        let mut cfg = LbConfig {
            class: "c".into(),
            default_class: false,
            pools: pools(),
        };
        cfg.validate().unwrap();
        cfg.pools[1].cidrs.push("198.51.100.0/24".parse().unwrap());
        assert!(cfg.validate().unwrap_err().to_string().contains("overlaps"));
    }

    #[test]
    fn ranges_use_every_address_and_parse_metallb_forms() {
        let pool = Pool::from_addresses(
            "r",
            &[
                "198.51.100.40-198.51.100.41",
                "198.51.100.64/30",
                "2001:db8::5",
            ],
            true,
        )
        .unwrap();
        assert_eq!(pool.cidrs, ["198.51.100.64/30".parse::<IpNet>().unwrap()]);
        assert_eq!(pool.ranges.len(), 2);
        assert_eq!(pool.ranges[0].to_string(), "198.51.100.40-198.51.100.41");
        assert_eq!(pool.ranges[1].to_string(), "2001:db8::5");
        // A range's first address is usable (no network-address skip as for CIDRs).
        let all: Vec<String> = pool.addresses().map(|ip| ip.to_string()).collect();
        assert_eq!(
            all,
            [
                "198.51.100.65",
                "198.51.100.66",
                "198.51.100.40",
                "198.51.100.41",
                "2001:db8::5"
            ]
        );
        assert!(pool.contains("198.51.100.41".parse().unwrap()));
        assert!(!pool.contains("198.51.100.42".parse().unwrap()));
        for bad in [
            "198.51.100.9-198.51.100.1",
            "198.51.100.1-2001:db8::1",
            "nope",
            "198.51.100.0/33",
        ] {
            assert!(Pool::from_addresses("x", &[bad], true).is_err(), "{bad}");
        }
        let mut cfg = LbConfig {
            class: "c".into(),
            default_class: false,
            pools: vec![pool],
        };
        cfg.validate().unwrap();
        cfg.pools
            .push(Pool::from_addresses("s", &["198.51.100.41-198.51.100.50"], true).unwrap());
        assert!(cfg.validate().unwrap_err().to_string().contains("overlaps"));
        cfg.pools[1] = Pool::from_addresses("s", &["198.51.100.42-198.51.100.50"], true).unwrap();
        cfg.validate().unwrap();
    }

    proptest! {
        /// Any range parses back from its Display form and yields exactly its addresses.
        #[test]
        fn range_round_trips_and_counts(a in any::<u32>(), len in 0u32..64) {
            let first = std::net::Ipv4Addr::from(a);
            let last = std::net::Ipv4Addr::from(a.saturating_add(len));
            let r = AddressRange::new(first.into(), last.into()).unwrap();
            prop_assert_eq!(r.to_string().parse::<AddressRange>().unwrap(), r);
            let ips: Vec<IpAddr> = r.iter().collect();
            prop_assert_eq!(ips.len() as u64, u64::from(u32::from(last) - a) + 1);
            prop_assert!(ips.iter().all(|ip| r.contains(*ip)));
        }

        /// Against a reference: no address is ever held by two Services, every held address is in
        /// a pool, and a Service's holdings equal what the last assign returned.
        #[test]
        fn never_double_allocates(ops in proptest::collection::vec((0u8..6, any::<bool>(), 0u8..12), 1..60)) {
            let mut a = Allocator::new(pools());
            let mut model: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
            for (svc, release, want) in ops {
                let key = format!("ns/s{svc}");
                if release {
                    a.release(&key);
                    model.remove(&key);
                    continue;
                }
                let req = if want < 8 {
                    Request { ips: vec![format!("203.0.113.{}", 8 + want).parse().unwrap()], pool: Some("b".into()), deprecated: false }
                } else { Request::default() };
                let current = model.get(&key).cloned().unwrap_or_default();
                match a.assign(&key, &req, &current) {
                    Ok(ips) => { model.insert(key.clone(), ips); }
                    Err(_) => { model.remove(&key); }
                }
                let mut seen = std::collections::HashSet::new();
                for (k, ips) in &model {
                    prop_assert_eq!(a.held(k), ips.as_slice());
                    for ip in ips {
                        prop_assert!(seen.insert(*ip), "{} held twice", ip);
                        prop_assert!(a.pool_of(*ip).is_some());
                    }
                }
            }
        }
    }
}
