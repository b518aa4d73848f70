//! The issuer: a leader-gated loop that keeps every wanted certificate issued and renewed.
//!
//! While this replica leads, each round re-reads the store (another replica may have written since
//! the last round), decides per wanted certificate with [`RenewalPolicy`], skips certificates in
//! backoff, draws new orders from the account's [`OrderBudget`], runs up to `max_in_flight` orders
//! at once and sleeps until the next instant anything becomes due, a leadership change or a new
//! wanted list. Losing leadership ends the term; orders stop before their next ACME call.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use instant_acme::{Account, CertificateIdentifier};
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::account::{self, Eab};
use crate::challenge::{BoxFuture, ChallengeKind, ChallengeSolver};
use crate::client::{AcmeHttp, capture_retry_after};
use crate::elector::{LeaderElector, Leadership};
use crate::key::CertKeyType;
use crate::order::{OrderRequest, OrderRun, OrderTiming};
use crate::policy::backoff::{Backoff, BackoffPolicy};
use crate::policy::budget::OrderBudget;
use crate::policy::renewal::{AriWindow, Decision, RenewalPolicy, jitter_sample};
use crate::store::{ExistingCert, IssuerStore, PendingOrder, ResolverState, same_names};
use crate::{Error, Step};

/// One ACME resolver (Traefik's `certificatesResolvers.<name>`).
#[derive(Debug, Clone)]
pub struct ResolverSettings {
    /// Resolver name: the key in `acme.json` and in routers' `tls.cert_resolver`.
    pub name: String,
    /// ACME directory URL.
    pub directory_url: String,
    /// Contact e-mail for the account.
    pub email: Option<String>,
    /// HTTP client towards the CA (carries the trusted roots and the call timeout).
    pub http: AcmeHttp,
    /// External Account Binding, if the CA requires it.
    pub eab: Option<Eab>,
    /// Challenge type used for this resolver's orders.
    pub challenge: ChallengeKind,
    /// Default certificate key type.
    pub key_type: CertKeyType,
}

/// A certificate somebody wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedCert {
    /// The resolver that issues it.
    pub resolver: String,
    /// Main domain first, then SANs.
    pub domains: Vec<String>,
    /// Key type (default: the resolver's).
    pub key_type: Option<CertKeyType>,
}

/// Tunables of the issuer loop.
#[derive(Debug, Clone)]
pub struct IssuerOptions {
    /// When to renew.
    pub renewal: RenewalPolicy,
    /// How to back off failing certificates.
    pub backoff: BackoffPolicy,
    /// New orders per `budget_window` per resolver (account).
    pub budget_limit: usize,
    /// Window of the order budget.
    pub budget_window: Duration,
    /// Orders in flight at once.
    pub max_in_flight: usize,
    /// Upper bound of one whole order (all steps).
    pub order_timeout: Duration,
    /// Polling of validation and certificate.
    pub timing: OrderTiming,
    /// Longest sleep between rounds (re-reads the store at least this often).
    pub max_sleep: Duration,
}

impl Default for IssuerOptions {
    fn default() -> Self {
        Self {
            renewal: RenewalPolicy::default(),
            backoff: BackoffPolicy::default(),
            budget_limit: 10,
            budget_window: Duration::from_secs(10),
            max_in_flight: 4,
            order_timeout: Duration::from_secs(120),
            timing: OrderTiming::default(),
            max_sleep: Duration::from_secs(60),
        }
    }
}

/// Order outcomes counted in [`IssuerStatus::orders`].
pub mod outcome {
    /// A new order produced a certificate.
    pub const ISSUED: &str = "issued";
    /// A persisted order was resumed and produced a certificate.
    pub const RESUMED: &str = "resumed";
    /// The order failed (the certificate is in backoff).
    pub const FAILED: &str = "failed";
    /// The order stopped because leadership was lost.
    pub const INTERRUPTED: &str = "interrupted";
}

/// One managed certificate in the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertStatus {
    /// Resolver name.
    pub resolver: String,
    /// Main domain.
    pub main: String,
    /// `notAfter` of the stored certificate, if any.
    pub not_after: Option<SystemTime>,
    /// Consecutive failures.
    pub failures: u32,
}

/// What the issuer is doing (for metrics and the admin endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerStatus {
    /// Leadership as last seen.
    pub leadership: Leadership,
    /// Wanted certificates and their state (as of the last round of this leader).
    pub certificates: Vec<CertStatus>,
    /// Orders by outcome since start.
    pub orders: BTreeMap<&'static str, u64>,
    /// The most recent error, if any.
    pub last_error: Option<String>,
}

/// Everything [`Issuer::spawn`] needs.
pub struct IssuerParts {
    /// The resolvers.
    pub resolvers: Vec<ResolverSettings>,
    /// Initially wanted certificates (replace with [`Issuer::set_wanted`]).
    pub wanted: Vec<WantedCert>,
    /// Loop tunables.
    pub options: IssuerOptions,
    /// Storage.
    pub store: Arc<dyn IssuerStore>,
    /// Leader election.
    pub elector: Arc<dyn LeaderElector>,
    /// One solver per challenge kind in use.
    pub solvers: Vec<Arc<dyn ChallengeSolver>>,
}

/// A running issuer. Dropping it stops the loop.
#[derive(Debug)]
pub struct Issuer {
    task: JoinHandle<()>,
    status: watch::Receiver<IssuerStatus>,
    wanted: watch::Sender<Vec<WantedCert>>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Issuer {
    /// Validate `parts` and start the issuer loop on the current Tokio runtime.
    ///
    /// This is the entry point for `fairway-controller` and for `fairway-proxy` embedding the
    /// issuer on a single node (with [`crate::AlwaysLeader`] and the proxy's HTTP-01 registry).
    pub fn spawn(parts: IssuerParts) -> Result<Self, Error> {
        let mut solvers = HashMap::new();
        for s in &parts.solvers {
            solvers.insert(s.kind(), s.clone());
        }
        for r in &parts.resolvers {
            if !solvers.contains_key(&r.challenge) {
                return Err(Error::Config {
                    field: format!("acme.resolvers.{}.challenge", r.name),
                    reason: format!("no {} solver is configured", r.challenge.as_str()),
                });
            }
        }
        let resolvers: HashMap<String, ResolverSettings> = parts
            .resolvers
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        check_wanted(&parts.wanted, &resolvers)?;
        let (status_tx, status) = watch::channel(IssuerStatus::default());
        let (wanted, wanted_rx) = watch::channel(parts.wanted);
        let worker = Worker {
            resolvers,
            options: parts.options,
            store: parts.store,
            elector: parts.elector,
            solvers,
            status: status_tx,
            wanted: wanted_rx,
            backoff: HashMap::new(),
            budgets: HashMap::new(),
            accounts: HashMap::new(),
            ari: HashMap::new(),
        };
        let task = tokio::spawn(worker.run());
        Ok(Self {
            task,
            status,
            wanted,
        })
    }

    /// Status updates.
    pub fn status(&self) -> watch::Receiver<IssuerStatus> {
        self.status.clone()
    }

    /// Replace the wanted certificates (e.g. after a router reload). Certificates no longer
    /// wanted are not renewed.
    pub fn set_wanted(&self, wanted: Vec<WantedCert>) {
        self.wanted.send_replace(wanted);
    }
}

fn check_wanted(
    wanted: &[WantedCert],
    resolvers: &HashMap<String, ResolverSettings>,
) -> Result<(), Error> {
    for w in wanted {
        if !resolvers.contains_key(&w.resolver) {
            return Err(Error::Config {
                field: format!("certificate {:?}", w.domains),
                reason: format!("unknown resolver `{}`", w.resolver),
            });
        }
        if w.domains.is_empty() {
            return Err(Error::Config {
                field: format!("certificate of resolver {}", w.resolver),
                reason: "no domains".into(),
            });
        }
    }
    Ok(())
}

type CertKey = (String, Vec<String>);

struct AriEntry {
    serial: String,
    window: Option<AriWindow>,
    next_fetch: SystemTime,
}

struct Worker {
    resolvers: HashMap<String, ResolverSettings>,
    options: IssuerOptions,
    store: Arc<dyn IssuerStore>,
    elector: Arc<dyn LeaderElector>,
    solvers: HashMap<ChallengeKind, Arc<dyn ChallengeSolver>>,
    status: watch::Sender<IssuerStatus>,
    wanted: watch::Receiver<Vec<WantedCert>>,
    backoff: HashMap<CertKey, Backoff>,
    budgets: HashMap<String, OrderBudget>,
    accounts: HashMap<String, (u64, Account)>,
    ari: HashMap<CertKey, AriEntry>,
}

struct Job {
    key: CertKey,
    request: OrderRequest,
    pending: Option<PendingOrder>,
}

impl Worker {
    async fn run(mut self) {
        let mut leadership = self.elector.subscribe();
        loop {
            let lead = *leadership.borrow_and_update();
            self.status.send_modify(|s| s.leadership = lead);
            if !lead.is_leader {
                if leadership.changed().await.is_err() {
                    return;
                }
                continue;
            }
            tracing::info!(epoch = lead.epoch, "leading: issuing certificates");
            self.term(lead.epoch, &mut leadership).await;
        }
    }

    /// One leadership term.
    async fn term(&mut self, epoch: u64, leadership: &mut watch::Receiver<Leadership>) {
        loop {
            let wake = self.round(epoch, leadership.clone()).await;
            let sleep = wake
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(50), self.options.max_sleep);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                changed = leadership.changed() => {
                    if changed.is_err() { return; }
                }
                _ = self.wanted.changed() => {}
            }
            let lead = *leadership.borrow();
            if !lead.is_leader || lead.epoch != epoch {
                tracing::info!(epoch, "leadership lost: issuer paused");
                return;
            }
        }
    }

    /// Plan and run one round; returns when the next round is due.
    async fn round(&mut self, epoch: u64, leadership: watch::Receiver<Leadership>) -> SystemTime {
        let now = SystemTime::now();
        let mut wake = now + self.options.max_sleep;
        let wanted = self.wanted.borrow_and_update().clone();
        let mut states: HashMap<String, ResolverState> = HashMap::new();
        for name in self.resolvers.keys() {
            match self.store.load(name) {
                Ok(state) => {
                    states.insert(name.clone(), state);
                }
                Err(e) => self.note_error(&e),
            }
        }
        let mut jobs = Vec::new();
        let mut certs = Vec::new();
        for w in &wanted {
            let Some(state) = states.get(&w.resolver) else {
                continue;
            };
            let key: CertKey = (w.resolver.clone(), w.domains.clone());
            let best = state.best_for(&w.domains);
            let backoff = self.backoff.get(&key).copied().unwrap_or_default();
            certs.push(CertStatus {
                resolver: w.resolver.clone(),
                main: w.domains[0].clone(),
                not_after: best.map(|b| b.validity.not_after),
                failures: backoff.failures(),
            });
            let ari = best.and_then(|b| {
                self.ari
                    .get(&key)
                    .filter(|e| e.serial == b.serial_hex)
                    .and_then(|e| e.window)
            });
            let identity = best.map_or_else(|| w.domains.join(","), |b| b.serial_hex.clone());
            let decision = self.options.renewal.decide(
                best.map(|b| b.validity),
                true,
                ari,
                now,
                jitter_sample(&identity),
            );
            let pending = state.pending_for(&w.domains).cloned();
            let due = matches!(decision, Decision::Renew(_)) || pending.is_some();
            if let Decision::Keep { recheck_at } = decision {
                wake = wake.min(recheck_at);
            }
            if !due {
                continue;
            }
            if !backoff.ready(now) {
                if let Some(t) = backoff.next_attempt() {
                    wake = wake.min(t);
                }
                continue;
            }
            let replaces = best.and_then(|b| {
                CertificateIdentifier::try_from(&CertificateDer::from(b.leaf_der.as_slice()))
                    .ok()
                    .map(CertificateIdentifier::into_owned)
            });
            let key_type = w.key_type.unwrap_or(self.resolvers[&w.resolver].key_type);
            if let Decision::Renew(reason) = decision {
                tracing::info!(domain = %w.domains[0], reason = reason.as_str(), "certificate due");
            }
            jobs.push(Job {
                key,
                request: OrderRequest {
                    domains: w.domains.clone(),
                    key_type,
                    replaces: if ari.is_some() { replaces } else { None },
                },
                pending,
            });
        }
        self.status.send_modify(|s| s.certificates = certs);
        self.refresh_ari(&wanted, &states, epoch, &leadership, &mut wake)
            .await;

        // Run the due orders, at most `max_in_flight` at once, within the order budget.
        let mut queue = jobs.into_iter();
        let mut running = FuturesUnordered::new();
        let mut budget_blocked = false;
        loop {
            while running.len() < self.options.max_in_flight.max(1) && !budget_blocked {
                let Some(job) = queue.next() else { break };
                let resolver = job.key.0.clone();
                let budget = self.budgets.entry(resolver.clone()).or_insert_with(|| {
                    OrderBudget::new(self.options.budget_limit, self.options.budget_window)
                });
                if job.pending.is_none()
                    && let Err(at) = budget.try_take(Instant::now())
                {
                    budget_blocked = true;
                    let delay = at.saturating_duration_since(Instant::now());
                    wake = wake.min(SystemTime::now() + delay);
                    break;
                }
                let account = match self.account(&resolver, epoch).await {
                    Ok(a) => a,
                    Err(e) => {
                        self.note_error(&e);
                        self.fail(&job.key, &e);
                        continue;
                    }
                };
                let settings = &self.resolvers[&resolver];
                let solver = self.solvers[&settings.challenge].clone();
                running.push(run_job(
                    job,
                    account,
                    solver,
                    self.store.clone(),
                    leadership.clone(),
                    epoch,
                    self.options.timing,
                    self.options.order_timeout,
                ));
            }
            let Some((key, result)) = running.next().await else {
                break;
            };
            match result {
                Ok(Done { resumed, not_after }) => {
                    // Report the new certificate's expiry now, not a round later: a scrape
                    // that follows the first handshake with the new certificate must see it.
                    self.status.send_modify(|s| {
                        for c in s
                            .certificates
                            .iter_mut()
                            .filter(|c| c.resolver == key.0 && c.main == key.1[0])
                        {
                            c.not_after = not_after.or(c.not_after);
                            c.failures = 0;
                        }
                    });
                    // Re-plan at once: the next round re-reads the store for every certificate.
                    wake = SystemTime::now();
                    self.backoff.remove(&key);
                    self.count(if resumed {
                        outcome::RESUMED
                    } else {
                        outcome::ISSUED
                    });
                    tracing::info!(domain = %key.1[0], resolver = %key.0, resumed, "certificate issued");
                }
                Err(Error::LostLeadership { .. }) => self.count(outcome::INTERRUPTED),
                Err(e) => {
                    self.note_error(&e);
                    self.fail(&key, &e);
                    if matches!(
                        &e,
                        Error::Acme {
                            step: Step::Account,
                            ..
                        }
                    ) {
                        self.accounts.remove(&key.0);
                    }
                }
            }
            let lead = *leadership.borrow();
            if !lead.is_leader || lead.epoch != epoch {
                budget_blocked = true;
            }
        }
        for t in self.backoff.values().filter_map(Backoff::next_attempt) {
            wake = wake.min(t);
        }
        // Anything still queued (budget) is retried as soon as the budget allows.
        if queue.next().is_some() && !budget_blocked {
            wake = SystemTime::now();
        }
        wake
    }

    fn fail(&mut self, key: &CertKey, e: &Error) {
        let next = self.backoff.entry(key.clone()).or_default().record_failure(
            &self.options.backoff,
            SystemTime::now(),
            e.retry_after(),
        );
        self.count(outcome::FAILED);
        tracing::warn!(domain = %key.1[0], resolver = %key.0, error = %e,
            retry_in_s = next.duration_since(SystemTime::now()).unwrap_or_default().as_secs(),
            "order failed");
    }

    fn count(&self, outcome: &'static str) {
        self.status
            .send_modify(|s| *s.orders.entry(outcome).or_default() += 1);
    }

    fn note_error(&self, e: &Error) {
        let text = e.to_string();
        self.status.send_modify(|s| s.last_error = Some(text));
    }

    /// The resolver's account for this term (loaded or created once per term).
    async fn account(&mut self, resolver: &str, epoch: u64) -> Result<Account, Error> {
        if let Some((e, a)) = self.accounts.get(resolver)
            && *e == epoch
        {
            return Ok(a.clone());
        }
        let s = &self.resolvers[resolver];
        let (result, retry_after) = capture_retry_after(account::load_or_create(
            &s.name,
            &s.directory_url,
            s.email.as_deref(),
            s.eab.as_ref(),
            &s.http,
            self.store.as_ref(),
        ))
        .await;
        let account = result.map_err(|e| with_retry_after(e, retry_after))?;
        self.accounts
            .insert(resolver.to_owned(), (epoch, account.clone()));
        Ok(account)
    }

    /// Fetch ARI windows for stored certificates whose window is unknown or stale.
    async fn refresh_ari(
        &mut self,
        wanted: &[WantedCert],
        states: &HashMap<String, ResolverState>,
        epoch: u64,
        leadership: &watch::Receiver<Leadership>,
        wake: &mut SystemTime,
    ) {
        let now = SystemTime::now();
        for w in wanted {
            let Some(best) = states.get(&w.resolver).and_then(|s| s.best_for(&w.domains)) else {
                continue;
            };
            let key: CertKey = (w.resolver.clone(), w.domains.clone());
            if let Some(entry) = self.ari.get(&key)
                && entry.serial == best.serial_hex
                && entry.next_fetch > now
            {
                continue;
            }
            if !leadership.borrow().is_leader {
                return;
            }
            let Ok(account) = self.account(&w.resolver, epoch).await else {
                continue;
            };
            let Ok(id) =
                CertificateIdentifier::try_from(&CertificateDer::from(best.leaf_der.as_slice()))
            else {
                continue;
            };
            let (window, next_fetch) = match account.renewal_info(&id).await {
                Ok((info, retry)) => {
                    let window = AriWindow {
                        start: info.suggested_window.start.into(),
                        end: info.suggested_window.end.into(),
                    };
                    // RFC 9773 §4.3.2: poll again per Retry-After, clamped to [1 h, 7 d].
                    let retry =
                        retry.clamp(Duration::from_secs(3600), Duration::from_secs(7 * 86_400));
                    (Some(window), now + retry)
                }
                // No ARI at this CA (Pebble 2.4.0): remember until the certificate changes.
                Err(instant_acme::Error::Unsupported(_)) => (None, best.validity.not_after),
                Err(e) => {
                    tracing::debug!(domain = %w.domains[0], error = %e, "renewalInfo failed");
                    (None, now + Duration::from_secs(6 * 3600))
                }
            };
            if let Some(win) = window {
                *wake = (*wake).min(win.start.max(now));
            }
            self.ari.insert(
                key,
                AriEntry {
                    serial: best.serial_hex.clone(),
                    window,
                    next_fetch,
                },
            );
        }
    }
}

/// A completed order, as the planning loop needs it.
struct Done {
    /// The order was resumed from a persisted one rather than created.
    resumed: bool,
    /// `notAfter` of the new certificate (`None` only if its leaf does not parse, which the
    /// store would then report).
    not_after: Option<SystemTime>,
}

#[allow(clippy::too_many_arguments)]
async fn run_job(
    job: Job,
    account: Account,
    solver: Arc<dyn ChallengeSolver>,
    store: Arc<dyn IssuerStore>,
    leadership: watch::Receiver<Leadership>,
    epoch: u64,
    timing: OrderTiming,
    order_timeout: Duration,
) -> (CertKey, Result<Done, Error>) {
    let resolver = job.key.0.clone();
    let save_pending = {
        let store = store.clone();
        let resolver = resolver.clone();
        move |p: PendingOrder| -> BoxFuture<'static, Result<(), Error>> {
            let store = store.clone();
            let resolver = resolver.clone();
            Box::pin(blocking(resolver.clone(), move || {
                store.save_pending(&resolver, &p)
            }))
        }
    };
    let run = OrderRun {
        account: &account,
        solver: solver.as_ref(),
        request: &job.request,
        leadership,
        epoch,
        timing,
        save_pending: &save_pending,
    };
    let main = job.request.main().to_owned();
    let fut = capture_retry_after(run.run(job.pending.clone()));
    let result = match tokio::time::timeout(order_timeout, fut).await {
        Err(_) => Err(Error::Timeout {
            domain: main,
            step: Step::Validation,
            timeout: order_timeout,
        }),
        Ok((Err(e), retry_after)) => Err(with_retry_after(e, retry_after)),
        Ok((Ok(issued), _)) => {
            let domains = job.request.domains.clone();
            let done = Done {
                resumed: issued.resumed,
                not_after: ExistingCert::from_chain_pem(Vec::new(), &issued.chain_pem)
                    .ok()
                    .map(|c| c.validity.not_after),
            };
            blocking(resolver.clone(), move || {
                store.save_certificate(&resolver, &domains, &issued.chain_pem, &issued.key_pem)
            })
            .await
            .map(|()| done)
        }
    };
    (job.key, result)
}

/// Run a store call on the blocking pool: it locks, rewrites and fsyncs a file, and every order
/// in flight is driven by the same task, so running it inline would stall them all (and leave
/// nothing for [`AcmeJsonStore`](crate::AcmeJsonStore)'s group commit to batch).
async fn blocking(
    resolver: String,
    f: impl FnOnce() -> Result<(), Error> + Send + 'static,
) -> Result<(), Error> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(crate::store::store_error(&resolver, "write", e)),
    }
}

fn with_retry_after(e: Error, captured: Option<SystemTime>) -> Error {
    match e {
        Error::Acme {
            domain,
            step,
            detail,
            problem_type,
            retry_after,
        } => Error::Acme {
            domain,
            step,
            detail,
            problem_type,
            retry_after: retry_after.or(captured),
        },
        other => other,
    }
}

/// Whether `names` is among `wanted` for `resolver` (used by embedders to dedupe).
pub fn is_wanted(wanted: &[WantedCert], resolver: &str, names: &[String]) -> bool {
    wanted
        .iter()
        .any(|w| w.resolver == resolver && same_names(&w.domains, names))
}
