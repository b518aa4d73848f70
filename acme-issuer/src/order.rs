//! One certificate order, from `newOrder` (or a persisted order URL) to a PEM chain.
//!
//! The flow is crash-safe: right after `newOrder` the new private key and the order URL are saved
//! as a [`PendingOrder`]; a restarted process or a new leader finds it and re-attaches with
//! `account.order(url)`, continuing from whatever state the CA reports (pending, ready,
//! processing, valid). Before every ACME call the flow checks that this replica still leads in the
//! same term, so a deposed leader stops before its next call. Challenge responses are withdrawn on
//! every exit path.

use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeStatus, Identifier, NewOrder, Order, OrderStatus,
    RetryPolicy,
};
use tokio::sync::watch;

use crate::challenge::{BoxFuture, ChallengeData, ChallengeSolver};
use crate::elector::Leadership;
use crate::key::{self, CertKeyType, SecretPem};
use crate::store::PendingOrder;
use crate::{Error, Step};

const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";

/// What to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    /// Main domain first, then SANs.
    pub domains: Vec<String>,
    /// Certificate key type.
    pub key_type: CertKeyType,
    /// ARI identifier of the certificate this order replaces (only sent when the CA offers ARI).
    pub replaces: Option<instant_acme::CertificateIdentifier<'static>>,
}

impl OrderRequest {
    /// The main domain (for errors and logs).
    pub fn main(&self) -> &str {
        self.domains.first().map(String::as_str).unwrap_or("")
    }
}

/// An issued certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    /// PEM chain, leaf first.
    pub chain_pem: String,
    /// The certificate's private key.
    pub key_pem: SecretPem,
    /// Whether a persisted order was resumed (rather than a new one created).
    pub resumed: bool,
}

/// Timing of the polling loops.
#[derive(Debug, Clone, Copy)]
pub struct OrderTiming {
    /// First poll delay (doubles by `backoff`).
    pub poll_initial: Duration,
    /// Poll delay growth factor.
    pub poll_backoff: f32,
    /// Give up on validation / certificate after this long.
    pub poll_timeout: Duration,
}

impl Default for OrderTiming {
    fn default() -> Self {
        Self {
            poll_initial: Duration::from_millis(100),
            poll_backoff: 1.5,
            poll_timeout: Duration::from_secs(60),
        }
    }
}

/// The context of one order run.
pub(crate) struct OrderRun<'a> {
    pub(crate) account: &'a Account,
    pub(crate) solver: &'a dyn ChallengeSolver,
    pub(crate) request: &'a OrderRequest,
    pub(crate) leadership: watch::Receiver<Leadership>,
    pub(crate) epoch: u64,
    pub(crate) timing: OrderTiming,
    /// Persist a pending order (called before any challenge is presented).
    /// A future, so the (blocking, fsyncing) store write runs off the task driving the orders.
    pub(crate) save_pending:
        &'a (dyn Fn(PendingOrder) -> BoxFuture<'static, Result<(), Error>> + Send + Sync),
}

/// Retry an instant-acme call when the CA rejects the nonce (instant-acme itself retries 3×;
/// this adds 3 more rounds so Pebble's default 5 % rejection never fails an order).
macro_rules! nonce_retry {
    ($call:expr) => {{
        let mut rounds = 0;
        loop {
            match $call {
                Err(instant_acme::Error::Api(p))
                    if rounds < 3 && p.r#type.as_deref() == Some(BAD_NONCE) =>
                {
                    rounds += 1;
                }
                other => break other,
            }
        }
    }};
}

impl OrderRun<'_> {
    fn err(&self, step: Step) -> impl Fn(instant_acme::Error) -> Error + '_ {
        move |e| acme_error(self.request.main(), step, e)
    }

    fn ensure_leader(&self) -> Result<(), Error> {
        let l = *self.leadership.borrow();
        if l.is_leader && l.epoch == self.epoch {
            Ok(())
        } else {
            Err(Error::LostLeadership {
                domain: self.request.main().to_owned(),
            })
        }
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy::new()
            .initial_delay(self.timing.poll_initial)
            .backoff(self.timing.poll_backoff)
            .timeout(self.timing.poll_timeout)
    }

    /// Run the order, resuming `pending` if given.
    pub(crate) async fn run(&self, pending: Option<PendingOrder>) -> Result<Issued, Error> {
        let mut presented = Vec::new();
        let result = self.run_inner(pending, &mut presented).await;
        for challenge in &presented {
            self.solver.cleanup(challenge).await;
        }
        result
    }

    async fn run_inner(
        &self,
        pending: Option<PendingOrder>,
        presented: &mut Vec<ChallengeData>,
    ) -> Result<Issued, Error> {
        let main = self.request.main().to_owned();
        let mut resumed = None;
        if let Some(p) = pending.filter(|p| p.key_type == self.request.key_type) {
            self.ensure_leader()?;
            match nonce_retry!(self.account.order(p.order_url.clone()).await) {
                Ok(mut order) => {
                    if order.state().status == OrderStatus::Invalid {
                        tracing::info!(domain = %main, "persisted order is invalid; starting over");
                    } else {
                        tracing::info!(domain = %main, url = %p.order_url, "resuming persisted order");
                        resumed = Some((order, p.key_pem));
                    }
                }
                Err(e) => {
                    tracing::info!(domain = %main, error = %e, "persisted order unavailable; starting over")
                }
            }
        }
        let was_resumed = resumed.is_some();
        let (mut order, key_pem) = match resumed {
            Some(r) => r,
            None => self.new_order().await?,
        };
        let key = key::from_pem(&key_pem, &main)?;

        let mut status = order.state().status;
        if status == OrderStatus::Pending {
            self.authorize(&mut order, presented).await?;
            self.ensure_leader()?;
            status = order
                .poll_ready(&self.policy())
                .await
                .map_err(self.err(Step::Validation))?;
            if status == OrderStatus::Invalid {
                return Err(self.invalid_detail(&mut order).await);
            }
        }
        if status == OrderStatus::Ready {
            self.ensure_leader()?;
            let csr = key::csr_der(&key, &self.request.domains)?;
            nonce_retry!(order.finalize_csr(&csr).await).map_err(self.err(Step::Finalize))?;
        } else if status == OrderStatus::Invalid {
            return Err(self.invalid_detail(&mut order).await);
        }
        self.ensure_leader()?;
        let chain_pem = order
            .poll_certificate(&self.policy())
            .await
            .map_err(self.err(Step::Certificate))?;
        Ok(Issued {
            chain_pem,
            key_pem,
            resumed: was_resumed,
        })
    }

    async fn new_order(&self) -> Result<(Order, SecretPem), Error> {
        let main = self.request.main();
        let key = key::generate(self.request.key_type, main)?;
        let key_pem = SecretPem::new(key.serialize_pem());
        let identifiers: Vec<Identifier> = self
            .request
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        self.ensure_leader()?;
        let mut result = match &self.request.replaces {
            Some(id) => nonce_retry!(
                self.account
                    .new_order(&NewOrder::new(&identifiers).replaces(id.clone()))
                    .await
            ),
            None => Err(instant_acme::Error::Unsupported("replaces")),
        };
        // Without ARI, or when the CA says the certificate was already replaced (cert-manager
        // retries once without `replaces` too), order plainly.
        let retry_plain = match &result {
            Err(instant_acme::Error::Unsupported(_)) => true,
            Err(instant_acme::Error::Api(p)) => p
                .r#type
                .as_deref()
                .is_some_and(|t| t.ends_with(":alreadyReplaced")),
            _ => false,
        };
        if retry_plain {
            result = nonce_retry!(self.account.new_order(&NewOrder::new(&identifiers)).await);
        }
        let order = result.map_err(self.err(Step::NewOrder))?;
        tracing::info!(domain = %main, url = %order.url(), epoch = self.epoch, "order created");
        (self.save_pending)(PendingOrder {
            domains: self.request.domains.clone(),
            order_url: order.url().to_owned(),
            key_pem: key_pem.clone(),
            key_type: self.request.key_type,
            epoch: self.epoch,
        })
        .await?;
        Ok((order, key_pem))
    }

    async fn authorize(
        &self,
        order: &mut Order,
        presented: &mut Vec<ChallengeData>,
    ) -> Result<(), Error> {
        let kind = self.solver.kind();
        let mut authorizations = order.authorizations();
        while let Some(next) = authorizations.next().await {
            let mut authz = next.map_err(self.err(Step::Authorization))?;
            let domain = match &authz.identifier().identifier {
                Identifier::Dns(d) => d.clone(),
                other => format!("{other:?}"),
            };
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(Error::Challenge {
                        domain,
                        reason: format!("authorization is {other:?}"),
                    });
                }
            }
            let offered: Vec<String> = authz
                .challenges
                .iter()
                .map(|c| format!("{:?}", c.r#type))
                .collect();
            let Some(mut challenge) = authz.challenge(kind.to_acme()) else {
                return Err(Error::NoChallenge {
                    domain,
                    wanted: kind.as_str().to_owned(),
                    offered: offered.join(", "),
                });
            };
            let key_auth = challenge.key_authorization();
            let mut digest = [0u8; 32];
            digest.copy_from_slice(key_auth.digest().as_ref());
            let data = ChallengeData {
                domain: domain.clone(),
                token: challenge.token.clone(),
                key_authorization: key_auth.as_str().to_owned(),
                digest,
                dns_value: key_auth.dns_value(),
            };
            self.solver
                .present(&data)
                .await
                .map_err(|reason| Error::Challenge {
                    domain: domain.clone(),
                    reason: format!("presenting {}: {reason}", kind.as_str()),
                })?;
            presented.push(data);
            // A resumed order may already have asked for validation; asking again is an error.
            if challenge.status == ChallengeStatus::Pending {
                self.ensure_leader()?;
                nonce_retry!(challenge.set_ready().await)
                    .map_err(|e| acme_error(&domain, Step::Validation, e))?;
            }
        }
        Ok(())
    }

    /// Explain an invalid order with the failing challenge's problem document.
    async fn invalid_detail(&self, order: &mut Order) -> Error {
        let main = self.request.main().to_owned();
        let mut details = Vec::new();
        if let Some(problem) = &order.state().error {
            details.push(problem.to_string());
        }
        let mut authorizations = order.authorizations();
        while let Some(Ok(authz)) = authorizations.next().await {
            for c in &authz.challenges {
                if let Some(problem) = &c.error {
                    let id = match &authz.identifier().identifier {
                        Identifier::Dns(d) => d.clone(),
                        other => format!("{other:?}"),
                    };
                    details.push(format!("{id} {:?}: {problem}", c.r#type));
                }
            }
        }
        if details.is_empty() {
            details.push("order became invalid without a problem document".into());
        }
        Error::Acme {
            domain: main,
            step: Step::Validation,
            detail: details.join("; "),
            problem_type: None,
            retry_after: None,
        }
    }
}

/// Turn an instant-acme error into ours, naming the domain, the step and the problem document.
pub(crate) fn acme_error(domain: &str, step: Step, e: instant_acme::Error) -> Error {
    let (problem_type, detail) = match &e {
        instant_acme::Error::Api(p) => (
            p.r#type.clone(),
            match p.status {
                Some(status) => format!("{p} (HTTP {status})"),
                None => p.to_string(),
            },
        ),
        instant_acme::Error::Timeout(_) => (
            None,
            "timed out waiting for the CA to update the order".to_owned(),
        ),
        other => (None, error_chain(other)),
    };
    Error::Acme {
        domain: domain.to_owned(),
        step,
        detail,
        problem_type,
        retry_after: None,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
