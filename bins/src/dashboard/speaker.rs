//! `fairway-speaker`'s part of the dashboard: each VIP's owner, the state of every node for it,
//! and its last failover with how long the VIP was without its previous owner.
//!
//! The speaker's status has no history, so [`VipHistory`] watches successive statuses and
//! remembers, per VIP, when the owner last changed. `duration_ms` of a failover is the time from
//! the last status that still showed the previous owner to the first status showing the new one
//! (an upper bound of the outage as seen from this node, at the status publishing granularity).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use hyper::{Response, StatusCode};
use ingress_proxy::dashboard::rfc3339;
use serde_json::{Value, json};
use tokio::sync::watch;
use vip_failover::Status;
use vip_failover::linux::SpeakerStatus;

use super::{API_VERSION, Body, error, json as json_response, page, problem};

/// One observed change of owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// The previous owner.
    pub from: String,
    /// The new owner.
    pub to: String,
    /// When the new owner was first seen.
    pub at: SystemTime,
    /// From the last sighting of `from` as owner to the first sighting of `to`.
    pub duration_ms: u64,
}

#[derive(Debug, Default)]
struct Track {
    owner: Option<String>,
    /// The last owner seen, and the last time it was seen owning the VIP.
    last_owner: Option<(String, SystemTime)>,
    last_failover: Option<Failover>,
}

/// Per-VIP owner history, fed with successive statuses.
#[derive(Debug, Default)]
pub struct VipHistory {
    vips: BTreeMap<IpAddr, Track>,
}

impl VipHistory {
    /// Records the owners in `status`, observed at `now`.
    pub fn observe(&mut self, status: &Status, now: SystemTime) {
        for v in &status.vips {
            let track = self.vips.entry(v.addr).or_default();
            let owner = v.owner.as_ref().map(|o| o.to_string());
            if let Some(new) = &owner {
                if let Some((prev, seen)) = &track.last_owner
                    && prev != new
                {
                    track.last_failover = Some(Failover {
                        from: prev.clone(),
                        to: new.clone(),
                        at: now,
                        duration_ms: now
                            .duration_since(*seen)
                            .map_or(0, |d| d.as_millis() as u64),
                    });
                }
                track.last_owner = Some((new.clone(), now));
            }
            track.owner = owner;
        }
    }

    /// The last failover of `vip`, if one was seen.
    pub fn last_failover(&self, vip: IpAddr) -> Option<&Failover> {
        self.vips.get(&vip)?.last_failover.as_ref()
    }

    /// Keeps a shared history up to date with `status` until the sender is dropped.
    pub fn track(mut status: watch::Receiver<Arc<SpeakerStatus>>) -> Arc<Mutex<VipHistory>> {
        let history = Arc::new(Mutex::new(VipHistory::default()));
        let h = history.clone();
        tokio::spawn(async move {
            loop {
                {
                    let s = status.borrow_and_update().clone();
                    h.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .observe(&s.machine, SystemTime::now());
                }
                if status.changed().await.is_err() {
                    break;
                }
            }
        });
        history
    }
}

/// The `/api/v1` index of the speaker.
pub fn index() -> Value {
    json!({
        "api_version": API_VERSION,
        "component": "speaker",
        "sections": ["problems", "vips"],
        "read_only": true,
    })
}

fn node_state(status: &Status, owner: Option<&str>, node: &str) -> &'static str {
    if owner == Some(node) {
        return "owner";
    }
    if status.node.to_string() == node {
        return if status.healthy {
            "standby"
        } else {
            "unhealthy"
        };
    }
    match status.peers.iter().find(|p| p.node.to_string() == node) {
        Some(p) if p.alive && p.healthy => "standby",
        Some(p) if p.alive => "unhealthy",
        _ => "down",
    }
}

/// `/api/v1/vips`: every VIP with its owner, each node's state for it, and the last failover.
pub fn vips(status: &Status, history: &VipHistory) -> Value {
    let mut nodes = vec![status.node.to_string()];
    nodes.extend(status.peers.iter().map(|p| p.node.to_string()));
    let vips: Vec<Value> = status
        .vips
        .iter()
        .map(|v| {
            let owner = v.owner.as_ref().map(|o| o.to_string());
            let per_node: Vec<Value> = nodes
                .iter()
                .map(|n| json!({ "node": n, "state": node_state(status, owner.as_deref(), n) }))
                .collect();
            let last = history.last_failover(v.addr).map(|f| {
                json!({
                    "from": f.from,
                    "to": f.to,
                    "at": rfc3339(f.at),
                    "duration_ms": f.duration_ms,
                })
            });
            json!({
                "address": v.addr.to_string(),
                "owner": owner,
                "local": v.local,
                "nodes": per_node,
                "last_failover": last,
            })
        })
        .collect();
    json!({
        "api_version": API_VERSION,
        "available": true,
        "node": status.node.to_string(),
        "healthy": status.healthy,
        "quorum": status.quorum,
        "vips": vips,
        "acme_leader": null,
    })
}

/// `/api/v1/problems`: VIPs without an owner, lost quorum, local ill health, unreachable peers.
pub fn problems(status: &Status, now: SystemTime) -> Value {
    let mut out = Vec::new();
    if !status.quorum {
        out.push(problem(
            "error",
            "quorum_lost",
            format!("node {}", status.node),
            "this node does not see a majority; it will not take VIPs".to_owned(),
        ));
    }
    if !status.healthy {
        out.push(problem(
            "warning",
            "node_unhealthy",
            format!("node {}", status.node),
            "the local health check fails; VIPs move away from this node".to_owned(),
        ));
    }
    for v in &status.vips {
        if v.owner.is_none() {
            out.push(problem(
                "error",
                "vip_unowned",
                format!("VIP {}", v.addr),
                "no node announces this address".to_owned(),
            ));
        }
    }
    for p in &status.peers {
        if !p.alive {
            out.push(problem(
                "warning",
                "peer_down",
                format!("node {}", p.node),
                "no heartbeat from this peer".to_owned(),
            ));
        }
    }
    json!({ "api_version": API_VERSION, "now": rfc3339(now), "problems": out })
}

/// Answers the dashboard's paths of the speaker (the unversioned `/api/...` paths as the current
/// version, [`ingress_proxy::dashboard::versioned`]); `None` for the paths the speaker serves
/// itself (`/status`, `/metrics`).
pub fn answer(
    path: &str,
    status: &SpeakerStatus,
    history: &Mutex<VipHistory>,
    now: SystemTime,
) -> Option<Response<Body>> {
    if let Some(r) = page(path) {
        return Some(r);
    }
    let doc = match &*ingress_proxy::dashboard::versioned(path) {
        "/api/v1" | "/api/v1/" => index(),
        "/api/v1/vips" => {
            let h = history.lock().unwrap_or_else(|e| e.into_inner());
            vips(&status.machine, &h)
        }
        "/api/v1/problems" => problems(&status.machine, now),
        p if p.starts_with("/api/") => {
            return Some(error(StatusCode::NOT_FOUND, "no such API path"));
        }
        _ => return None,
    };
    Some(json_response(StatusCode::OK, &doc))
}

/// Serves the speaker's admin listener: the dashboard and `/api/v1` (VIPs, per-node state,
/// failovers) from the latest `status`, and every other path from `other` (the binary's
/// `/status` and `/metrics`). Through [`super::serve`]: read-only (`GET`/`HEAD`, else 405) and
/// behind the bearer `token` when set, like the proxy's and the controller's listeners.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    token: Option<Arc<str>>,
    status: watch::Receiver<Arc<SpeakerStatus>>,
    other: F,
) where
    F: Fn(&str, &SpeakerStatus) -> Response<Body> + Send + Sync + 'static,
{
    let history = VipHistory::track(status.clone());
    super::serve(listener, token, move |path| {
        let snapshot = status.borrow().clone();
        answer(path, &snapshot, &history, SystemTime::now())
            .unwrap_or_else(|| other(path, &snapshot))
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use vip_failover::machine::{PeerStatus, VipStatus};
    use vip_failover::{MachineStats, NodeId};

    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_893_456_000_000 + ms)
    }

    fn peer(name: &str, alive: bool, healthy: bool) -> PeerStatus {
        PeerStatus {
            node: NodeId::new(name),
            alive,
            healthy,
            hears_us: alive,
            last_heard_ms: Some(10),
            rtt_us: Some(100),
            received: 1,
            lost: 0,
        }
    }

    fn status(owner_a: Option<&str>, b_alive: bool) -> Status {
        Status {
            node: NodeId::new("node-a"),
            healthy: true,
            quorum: true,
            vips: vec![
                VipStatus {
                    addr: "198.51.100.10".parse().unwrap(),
                    owner: owner_a.map(NodeId::new),
                    local: owner_a == Some("node-a"),
                },
                VipStatus {
                    addr: "2001:db8::10".parse().unwrap(),
                    owner: Some(NodeId::new("node-c")),
                    local: false,
                },
            ],
            peers: vec![peer("node-b", b_alive, true), peer("node-c", true, false)],
            stats: MachineStats::default(),
        }
    }

    #[test]
    fn history_measures_failovers() {
        let mut h = VipHistory::default();
        let v4: IpAddr = "198.51.100.10".parse().unwrap();
        h.observe(&status(Some("node-b"), true), at(0));
        h.observe(&status(Some("node-b"), true), at(1_000));
        assert!(
            h.last_failover(v4).is_none(),
            "the first owner is no failover"
        );
        // node-b dies: the VIP is vacant for a while, then node-a takes it.
        h.observe(&status(None, false), at(1_500));
        h.observe(&status(Some("node-a"), false), at(3_200));
        let f = h.last_failover(v4).unwrap();
        assert_eq!((f.from.as_str(), f.to.as_str()), ("node-b", "node-a"));
        assert_eq!(f.duration_ms, 2_200);
        assert_eq!(f.at, at(3_200));
        // Staying put changes nothing.
        h.observe(&status(Some("node-a"), true), at(9_000));
        assert_eq!(h.last_failover(v4).unwrap().at, at(3_200));
    }

    #[test]
    fn vips_show_owner_and_every_node() {
        let mut h = VipHistory::default();
        h.observe(&status(Some("node-b"), true), at(0));
        h.observe(&status(Some("node-a"), false), at(800));
        let doc = vips(&status(Some("node-a"), false), &h);
        let v = &doc["vips"][0];
        assert_eq!(v["address"], "198.51.100.10");
        assert_eq!(v["owner"], "node-a");
        assert_eq!(v["local"], true);
        assert_eq!(
            v["nodes"],
            json!([
                { "node": "node-a", "state": "owner" },
                { "node": "node-b", "state": "down" },
                { "node": "node-c", "state": "unhealthy" },
            ])
        );
        assert_eq!(v["last_failover"]["from"], "node-b");
        assert_eq!(v["last_failover"]["duration_ms"], 800);
        assert_eq!(doc["vips"][1]["last_failover"], Value::Null);
        assert_eq!(doc["vips"][1]["nodes"][0]["state"], "standby");
        assert_eq!(index()["sections"], json!(["problems", "vips"]));
    }

    #[tokio::test]
    async fn unversioned_paths_are_the_current_version() {
        use http_body_util::BodyExt as _;
        use vip_failover::linux::{AddressMode, IoCounters};
        let mut h = VipHistory::default();
        h.observe(&status(Some("node-b"), true), at(0));
        h.observe(&status(Some("node-a"), false), at(800));
        let history = Mutex::new(h);
        let speaker = SpeakerStatus {
            machine: status(Some("node-a"), false),
            interface: "eth0".into(),
            mac: "02:00:00:00:00:0a".into(),
            address_mode: AddressMode::Kernel,
            io: IoCounters::default(),
        };
        let get = |path: &str| answer(path, &speaker, &history, at(1_000)).unwrap();
        for doc in ["", "/vips", "/problems"] {
            let v1 = get(&format!("/api/v1{doc}"));
            let alias = get(&format!("/api{doc}"));
            assert_eq!(alias.status(), StatusCode::OK, "/api{doc}");
            let v1 = v1.into_body().collect().await.unwrap().to_bytes();
            let alias = alias.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(alias, v1, "/api{doc}");
        }
        assert_eq!(get("/api/routes").status(), StatusCode::NOT_FOUND);
        assert!(answer("/status", &speaker, &history, at(0)).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_listener_is_read_only_and_answers_the_current_version() {
        use std::io::{Read, Write};
        use vip_failover::linux::{AddressMode, IoCounters};
        let speaker = Arc::new(SpeakerStatus {
            machine: status(Some("node-a"), true),
            interface: "eth0".into(),
            mac: "02:00:00:00:00:0a".into(),
            address_mode: AddressMode::Kernel,
            io: IoCounters::default(),
        });
        let (_tx, rx) = watch::channel(speaker);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, None, rx, |path, s| {
            super::super::text(
                StatusCode::OK,
                "text/plain",
                format!("{path} of {}", s.machine.node),
            )
        }));
        let exchange = move |request: String| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            s.write_all(request.as_bytes()).unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        };
        let replies = tokio::task::spawn_blocking(move || {
            let req = |method: &str, path: &str| {
                exchange(format!(
                    "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ))
            };
            [
                req("POST", "/api/v1/vips"),
                req("DELETE", "/status"),
                req("GET", "/api/vips"),
                req("GET", "/status"),
            ]
        })
        .await
        .unwrap();
        assert!(replies[0].starts_with("HTTP/1.1 405"), "{}", replies[0]);
        assert!(replies[1].starts_with("HTTP/1.1 405"), "{}", replies[1]);
        assert!(replies[2].starts_with("HTTP/1.1 200"), "{}", replies[2]);
        assert!(replies[2].contains("\"198.51.100.10\""), "{}", replies[2]);
        assert!(replies[3].ends_with("/status of node-a"), "{}", replies[3]);
        task.abort();
    }

    #[test]
    fn problems_name_vacant_vips_and_dead_peers() {
        let doc = problems(&status(None, false), at(0));
        let kinds: Vec<&str> = doc["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["vip_unowned", "peer_down"]);
        let mut s = status(Some("node-a"), true);
        s.quorum = false;
        s.healthy = false;
        let doc = problems(&s, at(0));
        assert_eq!(doc["problems"][0]["kind"], "quorum_lost");
        assert_eq!(doc["problems"][1]["kind"], "node_unhealthy");
    }
}
