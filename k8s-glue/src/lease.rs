//! Leader election over a `coordination.k8s.io/v1` Lease, with client-go's semantics.
//!
//! The decision of one attempt is pure ([`LeaseDecision::decide`]): it takes the Lease as read,
//! what this replica last observed and *when* (local monotonic time), and says whether to write.
//! Followers judge expiry by their own observation time of the last change, as client-go does,
//! so clock offsets between nodes do not matter (clock *rates* still do). Every write is a `PUT`
//! carrying the `resourceVersion` that was read, so two replicas racing for an expired Lease
//! cannot both win: the API server answers `409 Conflict` to the loser.
//!
//! The fencing token is `spec.leaseTransitions`: it grows by one on every change of holder.
//! [`Leadership::epoch`] is `leaseTransitions + 1`, so it is never 0 for a leader (0 means
//! "never led" in `acme-issuer`).
//!
//! Like client-go, this cannot guarantee that a demoted leader stops acting at once: a leader
//! stops considering itself leader when it has not renewed for `renew_deadline`, which is shorter
//! than `lease_duration`, so with bounded clock-rate drift it steps down before anyone else may
//! take over. Work that writes must still carry the epoch (see the crate docs).

use std::time::Duration;

use acme_issuer::{LeaderElector, Leadership};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Error;
use crate::task::OwnedTask;

/// Timing and identity of a [`LeaseElector`]. Defaults are client-go's: 15 s / 10 s / 2 s.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (`holderIdentity`), e.g. the pod name. Must be unique.
    pub identity: String,
    /// How long followers wait, after last seeing the Lease change, before taking it.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often every replica tries to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults for Lease `namespace/name` held as `identity`.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Checks client-go's rule `lease_duration > renew_deadline > 1.2 × retry_period` (and that
    /// the identity is set): a leader must give up before followers may take over.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |message: String| {
            Err(Error::Config {
                field: "lease",
                message,
            })
        };
        if self.identity.is_empty() {
            return bad(format!(
                "Lease {}/{}: identity is empty",
                self.namespace, self.name
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return bad(format!(
                "Lease {}/{}: lease_duration {:?} must exceed renew_deadline {:?}",
                self.namespace, self.name, self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline.as_secs_f64() <= 1.2 * self.retry_period.as_secs_f64() {
            return bad(format!(
                "Lease {}/{}: renew_deadline {:?} must exceed 1.2 × retry_period {:?}",
                self.namespace, self.name, self.renew_deadline, self.retry_period
            ));
        }
        if self.lease_duration.as_secs() < 1 {
            return bad(format!(
                "Lease {}/{}: lease_duration must be at least 1 s",
                self.namespace, self.name
            ));
        }
        Ok(())
    }
}

/// What a replica remembers of the Lease between attempts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The spec last read (compared whole: any change restarts the expiry clock).
    pub spec: Option<LeaseSpec>,
    /// Local time when `spec` was first seen.
    pub at: Option<Instant>,
}

/// The outcome of one acquire-or-renew attempt, before any write.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseDecision {
    /// Someone else holds an unexpired Lease: do nothing.
    Follow {
        /// The current holder.
        holder: String,
    },
    /// Write this spec (renewal when we hold it, takeover otherwise) with the read resourceVersion.
    Write(LeaseSpec),
}

impl LeaseDecision {
    /// Decides one attempt. `current` is the Lease spec just read, `observed` is updated in place
    /// (its clock restarts when the spec differs), `now`/`wall` are the local monotonic and wall
    /// clocks.
    pub fn decide(
        config: &LeaseConfig,
        current: &LeaseSpec,
        observed: &mut Observed,
        now: Instant,
        wall: Timestamp,
    ) -> LeaseDecision {
        if observed.spec.as_ref() != Some(current) {
            observed.spec = Some(current.clone());
            observed.at = Some(now);
        }
        let holder = current.holder_identity.clone().unwrap_or_default();
        let held_by_me = holder == config.identity;
        if !holder.is_empty() && !held_by_me {
            // The holder's own lease duration counts, not ours (it may be configured differently).
            let duration = current
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(config.lease_duration);
            let seen = observed.at.unwrap_or(now);
            if now < seen + duration {
                return LeaseDecision::Follow { holder };
            }
        }
        let transitions = current.lease_transitions.unwrap_or(0);
        let mut spec = current.clone();
        spec.holder_identity = Some(config.identity.clone());
        spec.lease_duration_seconds = Some(
            config
                .lease_duration
                .as_secs()
                .try_into()
                .unwrap_or(i32::MAX),
        );
        spec.renew_time = Some(MicroTime(wall));
        if !held_by_me {
            spec.acquire_time = Some(MicroTime(wall));
            // An empty holder (released Lease) still counts as a transition: the term changes.
            spec.lease_transitions = Some(transitions.saturating_add(1));
        }
        LeaseDecision::Write(spec)
    }
}

/// A client-go-style Lease elector: a background task acquires, renews, and reports leadership.
///
/// Dropping it stops the task without releasing the Lease (like a crash: others take over after
/// `lease_duration`); [`LeaseElector::release`] hands the Lease over at once.
#[derive(Debug)]
pub struct LeaseElector {
    tx: watch::Sender<Leadership>,
    task: OwnedTask,
    api: Api<Lease>,
    config: LeaseConfig,
}

impl LeaseElector {
    /// Validates `config` and starts electing in the background (on the current tokio runtime).
    pub fn start(client: Client, config: LeaseConfig) -> Result<Self, Error> {
        config.validate()?;
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let tx = watch::Sender::new(Leadership::default());
        let task = OwnedTask::spawn(run(api.clone(), config.clone(), tx.clone()));
        Ok(LeaseElector {
            tx,
            task,
            api,
            config,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Stops electing; if this replica holds the Lease, clears the holder and sets
    /// `leaseDurationSeconds: 1` (client-go's `ReleaseOnCancel`) so a follower takes over on its
    /// next retry instead of after a whole lease duration.
    pub async fn release(self) -> Result<(), Error> {
        self.task.abort();
        let _ = self.tx.send(Leadership {
            is_leader: false,
            epoch: self.tx.borrow().epoch,
        });
        let lease = self
            .api
            .get(&self.config.name)
            .await
            .map_err(|e| lease_err(&self.config, "get", e))?;
        let Some(spec) = lease.spec.as_ref() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        let mut released = lease.clone();
        let now = MicroTime(Timestamp::now());
        released.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            renew_time: Some(now.clone()),
            acquire_time: Some(now),
            ..spec.clone()
        });
        self.api
            .replace(&self.config.name, &PostParams::default(), &released)
            .await
            .map_err(|e| lease_err(&self.config, "release", e))?;
        Ok(())
    }
}

impl LeaderElector for LeaseElector {
    fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.tx.subscribe()
    }
}

fn lease_err(config: &LeaseConfig, op: &'static str, source: kube::Error) -> Error {
    Error::Kube {
        what: format!("Lease {}/{}: {op}", config.namespace, config.name),
        source,
    }
}

/// One acquire-or-renew attempt against the API server. `Ok(Some(epoch))` when we hold the
/// Lease after it, `Ok(None)` when someone else does (or we lost a write race).
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Observed,
) -> Result<Option<u64>, Error> {
    let epoch =
        |spec: &LeaseSpec| u64::try_from(spec.lease_transitions.unwrap_or(0)).unwrap_or(0) + 1;
    let wall = Timestamp::now();
    let existing = api
        .get_opt(&config.name)
        .await
        .map_err(|e| lease_err(config, "get", e))?;
    let Some(mut lease) = existing else {
        let spec = LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(
                config
                    .lease_duration
                    .as_secs()
                    .try_into()
                    .unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(wall)),
            renew_time: Some(MicroTime(wall)),
            lease_transitions: Some(0),
            ..Default::default()
        };
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(spec.clone()),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                *observed = Observed {
                    spec: created.spec.clone(),
                    at: Some(Instant::now()),
                };
                Ok(Some(epoch(&spec)))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(lease_err(config, "create", e)),
        };
    };
    let current = lease.spec.clone().unwrap_or_default();
    match LeaseDecision::decide(config, &current, observed, Instant::now(), wall) {
        LeaseDecision::Follow { .. } => Ok(None),
        LeaseDecision::Write(spec) => {
            lease.spec = Some(spec.clone());
            // `lease.metadata.resourceVersion` is the one just read: the PUT is a compare-and-swap.
            match api
                .replace(&config.name, &PostParams::default(), &lease)
                .await
            {
                Ok(written) => {
                    *observed = Observed {
                        spec: written.spec.clone(),
                        at: Some(Instant::now()),
                    };
                    Ok(Some(epoch(&spec)))
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
                Err(e) => Err(lease_err(config, "update", e)),
            }
        }
    }
}

async fn run(api: Api<Lease>, config: LeaseConfig, tx: watch::Sender<Leadership>) {
    let mut observed = Observed::default();
    let mut last_epoch = 0;
    loop {
        // Follower: retry until we hold the Lease.
        let epoch = loop {
            match try_acquire_or_renew(&api, &config, &mut observed).await {
                Ok(Some(epoch)) => break epoch,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "lease acquire attempt failed"),
            }
            tokio::time::sleep(jittered(config.retry_period)).await;
        };
        last_epoch = last_epoch.max(epoch);
        tracing::info!(lease = %config.name, identity = %config.identity, epoch, "became leader");
        let _ = tx.send(Leadership {
            is_leader: true,
            epoch,
        });
        let mut last_renew = Instant::now();
        // Leader: renew every retry period; step down when renew_deadline passes without success.
        loop {
            tokio::time::sleep(config.retry_period).await;
            let deadline = last_renew + config.renew_deadline;
            let attempt = tokio::time::timeout_at(
                deadline,
                try_acquire_or_renew(&api, &config, &mut observed),
            )
            .await;
            match attempt {
                Ok(Ok(Some(e))) if e == epoch => last_renew = Instant::now(),
                Ok(Ok(_)) => break, // someone else holds it now
                Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        tracing::warn!(lease = %config.name, identity = %config.identity, "lost leadership");
        let _ = tx.send(Leadership {
            is_leader: false,
            epoch: last_epoch,
        });
    }
}

/// client-go's `wait.Jitter(period, 1.2)`: period × [1, 2.2), so followers do not retry in step.
fn jittered(period: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    let frac = (h.finish() % 1000) as f64 / 1000.0;
    period.mul_f64(1.0 + 1.2 * frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: &str) -> LeaseConfig {
        LeaseConfig::new("ns", "l", id)
    }

    #[test]
    fn client_go_defaults_validate_and_bad_timings_do_not() {
        config("a").validate().unwrap();
        let mut c = config("a");
        c.renew_deadline = Duration::from_secs(15);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("renew_deadline")
        );
        let mut c = config("a");
        c.retry_period = Duration::from_secs(9);
        assert!(c.validate().is_err());
        assert!(config("").validate().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn follower_waits_a_lease_duration_from_its_own_observation() {
        let c = config("b");
        let held = LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(3),
            ..Default::default()
        };
        let mut seen = Observed::default();
        let t0 = Instant::now();
        let wall = Timestamp::now();
        assert_eq!(
            LeaseDecision::decide(&c, &held, &mut seen, t0, wall),
            LeaseDecision::Follow { holder: "a".into() }
        );
        // Same spec 14 s later: still following; 15 s after first seeing it: take over.
        assert!(matches!(
            LeaseDecision::decide(&c, &held, &mut seen, t0 + Duration::from_secs(14), wall),
            LeaseDecision::Follow { .. }
        ));
        let LeaseDecision::Write(spec) =
            LeaseDecision::decide(&c, &held, &mut seen, t0 + Duration::from_secs(15), wall)
        else {
            panic!("expected takeover")
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(
            spec.lease_transitions,
            Some(4),
            "a takeover is a transition: the fencing token grows"
        );
        assert!(spec.acquire_time.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_restarts_the_followers_clock_and_keeps_the_epoch_for_the_holder() {
        let c = config("b");
        let mut spec = LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            ..Default::default()
        };
        let mut seen = Observed::default();
        let t0 = Instant::now();
        let wall = Timestamp::now();
        LeaseDecision::decide(&c, &spec, &mut seen, t0, wall);
        spec.renew_time = Some(MicroTime(wall));
        assert!(matches!(
            LeaseDecision::decide(&c, &spec, &mut seen, t0 + Duration::from_secs(10), wall),
            LeaseDecision::Follow { .. }
        ));
        assert!(matches!(
            LeaseDecision::decide(&c, &spec, &mut seen, t0 + Duration::from_secs(24), wall),
            LeaseDecision::Follow { .. }
        ));
        // The holder renews without a transition.
        let LeaseDecision::Write(renewed) =
            LeaseDecision::decide(&config("a"), &spec, &mut seen, t0, wall)
        else {
            panic!("holder must renew")
        };
        assert_eq!(renewed.lease_transitions, spec.lease_transitions);
        assert_eq!(renewed.acquire_time, spec.acquire_time);
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_lease_is_taken_at_once() {
        let released = LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            ..Default::default()
        };
        let mut seen = Observed::default();
        let LeaseDecision::Write(spec) = LeaseDecision::decide(
            &config("b"),
            &released,
            &mut seen,
            Instant::now(),
            Timestamp::now(),
        ) else {
            panic!("released lease must be taken")
        };
        assert_eq!(spec.lease_transitions, Some(1));
    }
}
