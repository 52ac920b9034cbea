//! Lever: stage-change webhooks in, REST API writes out.
//!
//! - [`config`]: the `[integrations.ats]` section (`kind = "lever"`) and its checks, and the host's
//!   `[lever_oauth]` app.
//! - [`form`]: Lever's `ats` fields in the admin API (input, view, storage form).
//! - [`error`]: [`LeverError`](error::LeverError), shared by the client and OAuth.
//! - [`webhook`]: the webhook body and the checks every delivery passes (signature, freshness).
//! - [`signature`]: Lever's HMAC over `token + triggeredAt`.
//! - [`client`]: the REST API (429/5xx backoff; a 403 names the missing permission).
//! - [`answers`]: its answers read straight into the fields used, as leniently as JSON values.
//! - [`permissions`]: the permission (OAuth scope) each call needs, and the app's default scopes.
//! - [`sync`]: writes an opportunity's recorded state back to Lever, idempotently.
//! - [`oauth`]: Lever as an authorized app (authorization-code flow, token refresh, revocation).
//! - [`routes`]: `GET /oauth/lever/callback`, where Lever sends the operator's browser back.
//!
//! [`LeverAts`] is the adapter the flow and the intake route use (see [`crate::ats::Ats`]).

pub mod answers;
pub mod client;
pub mod config;
pub mod error;
pub mod form;
pub mod oauth;
pub mod permissions;
pub mod routes;
pub mod signature;
pub mod sync;
pub mod webhook;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;

pub use client::{LeverClient, LeverError, Opportunity};

use super::{Ats, AtsCx, AtsError, Disconnected, Intake, Rejection, Role, StatusToRecord, Trigger};
use crate::ats::expiring::Expiring;
use crate::ats::section::AtsSection;
use crate::ats::written::Ticket;
use crate::config::{LeverAuth, LeverConfig};
use crate::store::{Event, WaitFor};
use crate::wasm::connector::ScreeningRequest;
use webhook::{StageChange, Verified};

/// Event kind of a Lever stage change.
pub const LEVER_STAGE_CHANGE: &str = "lever.stage_change";

/// A Lever integration's adapter: its settings, API client and stage-name cache.
pub struct LeverAts {
    config: LeverConfig,
    /// The host's OAuth app, for an integration connected through it (`ats.oauth = true`).
    oauth: Option<Arc<oauth::LeverOAuth>>,
    /// `None` when the integration has no usable credential (refused at config time).
    client: Option<LeverClient>,
    /// The postings the integration's rules name (by name or id): the only reason to read a
    /// posting (`postings:read:admin`).
    rule_postings: Vec<String>,
    /// `(stage id, name)` of the account, refreshed on a miss and after its lifetime.
    stages: Expiring<Arc<Vec<(String, String)>>>,
    /// Each posting's name and tags, read again after their lifetime (a tag fixed on Lever is
    /// seen within it).
    postings: Expiring<(Option<String>, Vec<String>)>,
    /// Opportunities read to start a screening, for its write-back a moment later (taken by
    /// it): used while this host wrote nothing to the opportunity since the read began
    /// ([`crate::ats::written`]).
    opened: Expiring<(Ticket, Opportunity)>,
}

/// Opportunities kept for their write-back.
const OPENED_CACHED: usize = 1024;
/// How long a read opportunity stands for Lever's for the write-back: a screening's start
/// (its vendor call) within it reuses the read; a slower one reads again under the lock.
const OPENED_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Postings kept per integration (the ones its recent candidates applied to).
const POSTINGS_CACHED: usize = 1024;

/// A verified delivery's body as it is stored: the request's own bytes, shared, not copied.
/// A body that parsed is UTF-8 but for the strings of fields the parse skipped, which are not
/// checked: such a body is stored as a lossy copy.
fn stored_body(body: &Bytes) -> Bytes {
    match std::str::from_utf8(body) {
        Ok(_) => body.clone(),
        Err(_) => Bytes::from(String::from_utf8_lossy(body).into_owned()),
    }
}

/// The key of the one stage list in its cache.
const STAGES: &str = "stages";

/// Opportunity `opportunity` of `integration` as a record of [`crate::ats::written`].
fn record(integration: &str, opportunity: &str) -> String {
    format!("lever\0{integration}\0{opportunity}")
}

impl LeverAts {
    /// The adapter of integration `integration`; `rule_postings` are the postings its rules name.
    pub fn new(
        config: LeverConfig,
        http: reqwest::Client,
        oauth: &Arc<oauth::LeverOAuth>,
        integration: &str,
        rule_postings: Vec<String>,
    ) -> LeverAts {
        let client = config.auth().map(|auth| match auth {
            LeverAuth::OAuth => {
                LeverClient::with_tokens(http, &config.api_base, oauth.tokens_for(integration))
            }
            auth => LeverClient::new(http, &config.api_base, auth),
        });
        LeverAts {
            oauth: config.oauth.then(|| oauth.clone()),
            config,
            client,
            rule_postings,
            stages: Expiring::new(1),
            postings: Expiring::new(POSTINGS_CACHED),
            opened: Expiring::with_clock(OPENED_CACHED, OPENED_FOR, crate::clock::now_ms),
        }
    }

    fn client(&self) -> Result<&LeverClient, AtsError> {
        self.client
            .as_ref()
            .ok_or_else(|| AtsError::fatal("the Lever integration has no usable credential"))
    }

    /// The name of stage `stage_id`, from the cache refreshed on a miss and after its lifetime.
    async fn stage_name(&self, stage_id: &str) -> Result<Option<String>, AtsError> {
        let named = |stages: &[(String, String)]| {
            stages
                .iter()
                .find(|(id, _)| id == stage_id)
                .map(|(_, name)| name.clone())
        };
        if let Some(name) = self.stages.get(STAGES).and_then(|s| named(&s)) {
            return Ok(Some(name));
        }
        let stages = self.client()?.stages().await?;
        let name = named(&stages);
        self.stages.put(STAGES, Arc::new(stages));
        Ok(name)
    }

    /// Posting `id`'s name and tags, from the cache while fresh.
    async fn posting(
        &self,
        client: &LeverClient,
        id: &str,
    ) -> Result<(Option<String>, Vec<String>), AtsError> {
        if let Some(posting) = self.postings.get(id) {
            return Ok(posting);
        }
        let posting = client.posting(id).await?;
        self.postings.put(id, posting.clone());
        Ok(posting)
    }
}

/// What the flow reads of a stored stage change (verified at intake): its token and change,
/// read in one pass, with no `Value` of `data` in between.
#[derive(Deserialize)]
struct Stored {
    token: String,
    data: StageChange,
}

fn stored(event: &Event) -> Result<Stored, AtsError> {
    serde_json::from_str(&event.payload)
        .map_err(|e| AtsError::fatal(format!("stored stage change is unreadable: {e}")))
}

impl From<LeverError> for AtsError {
    fn from(e: LeverError) -> Self {
        match e {
            // Retrying cannot help until someone grants the permission: the event waits, named.
            LeverError::Forbidden { .. } => AtsError::waiting(e.to_string(), WaitFor::Permission),
            e => AtsError::new(e.to_string(), e.retryable()),
        }
    }
}

impl From<sync::SyncError> for AtsError {
    fn from(e: sync::SyncError) -> Self {
        match e {
            sync::SyncError::Lever(e) => e.into(),
            sync::SyncError::Store(e) => e.into(),
        }
    }
}

#[async_trait]
impl Ats for LeverAts {
    fn kind(&self) -> &'static str {
        "lever"
    }

    fn endpoints(&self, public_url: &str, integration: &str) -> Vec<(&'static str, String)> {
        self.config.webhook_urls(public_url, integration)
    }

    fn disconnected(&self, cx: &AtsCx<'_>) -> Option<Disconnected> {
        let oauth = self.oauth.as_ref()?;
        // A store error is not a disconnection: the step runs and fails (and retries) on its own.
        oauth.not_connected(cx.integration).ok().flatten()
    }

    async fn check_connection(&self) -> Result<(), AtsError> {
        self.client()?.stages().await?;
        Ok(())
    }

    async fn stages(&self) -> Option<Result<Vec<(String, String)>, AtsError>> {
        let client = match self.client() {
            Ok(client) => client,
            Err(e) => return Some(Err(e)),
        };
        Some(client.stages().await.map_err(AtsError::from))
    }

    async fn postings(&self) -> Option<Result<Vec<(String, String)>, AtsError>> {
        let client = match self.client() {
            Ok(client) => client,
            Err(e) => return Some(Err(e)),
        };
        Some(client.postings().await.map_err(AtsError::from))
    }

    fn role(&self, kind: &str) -> Option<Role> {
        (kind == LEVER_STAGE_CHANGE).then_some(Role::Trigger)
    }

    fn verify_webhook(
        &self,
        source: &str,
        body: &Bytes,
        now_ms: i64,
        max_age_secs: u64,
    ) -> Option<Result<Intake, Rejection>> {
        if source != "lever" {
            return None;
        }
        let key = self.config.signature_token.expose();
        Some(match webhook::verify(body, key, max_age_secs, now_ms) {
            Err(r @ webhook::Rejection::Malformed(_)) => Err(Rejection::Malformed(r.to_string())),
            Err(r) => Err(Rejection::Unauthorized(r.to_string())),
            Ok((_, Verified::Ping)) => Ok(Intake::Ping),
            Ok((_, Verified::Ignored(event))) => Ok(Intake::Ignored(event)),
            Ok((hook, Verified::StageChange(_))) => Ok(Intake::Event {
                kind: LEVER_STAGE_CHANGE,
                dedupe_key: format!("lever:{}", hook.token),
                payload: stored_body(body),
            }),
        })
    }

    fn summary(&self, _kind: &str, payload: &[u8]) -> String {
        match serde_json::from_slice::<Stored>(payload) {
            Ok(Stored { data, .. }) => format!(
                "candidateStageChange opportunity {} → stage {}",
                data.opportunity_id, data.to_stage_id
            ),
            Err(_) => "candidateStageChange".into(),
        }
    }

    async fn trigger(
        &self,
        cx: &AtsCx<'_>,
        event: &Event,
        _default_stage: Option<&str>,
    ) -> Result<Trigger, AtsError> {
        if !cx.enabled {
            return Ok(Trigger::Skip("integration is disabled".into()));
        }
        let change = stored(event)?.data;
        Ok(match self.stage_name(&change.to_stage_id).await? {
            Some(name) => Trigger::StageReached(name),
            None => Trigger::Skip(format!("stage {:?} is unknown", change.to_stage_id)),
        })
    }

    fn trigger_stage(&self) -> Option<&str> {
        self.config.trigger_stage.as_deref()
    }

    async fn screening_request(
        &self,
        cx: &AtsCx<'_>,
        event: &Event,
        stage: &str,
    ) -> Result<ScreeningRequest, AtsError> {
        let Stored {
            token,
            data: change,
        } = stored(event)?;
        let client = self.client()?;
        let ticket = cx.written.before_read();
        let opp = client.opportunity(&change.opportunity_id).await?;
        if let Some(ticket) = ticket {
            self.opened.put(&opp.id, (ticket, opp.clone()));
        }
        let mut posting_tags = Vec::new();
        let mut posting_name = None;
        // A posting's tags are already on the opportunities that applied to it: the posting is
        // read only for its name, when a rule names a posting other than by this one's id.
        let by_name = self
            .rule_postings
            .iter()
            .any(|p| !opp.posting_ids.iter().any(|id| id == p.trim()));
        for posting in opp.posting_ids.iter().filter(|_| by_name) {
            let (text, tags) = self.posting(client, posting).await?;
            // The first posting is the one `posting_id` names.
            posting_name = posting_name.or(text);
            for tag in tags {
                if !posting_tags.contains(&tag) {
                    posting_tags.push(tag);
                }
            }
        }
        Ok(ScreeningRequest {
            idempotency_key: format!("lever:{token}"),
            posting_id: opp.posting_ids.into_iter().next(),
            name: opp.name,
            emails: opp.emails,
            phones: opp.phones,
            opportunity_id: opp.id,
            opportunity_tags: opp.tags,
            posting_name,
            posting_tags,
            stage: Some(stage.to_string()),
            package: None,
        })
    }

    async fn sync(
        &self,
        cx: &AtsCx<'_>,
        _order_ref: &str,
        opportunity_id: &str,
        status_labels: &[String],
        verdict_labels: &[String],
        status: Option<&StatusToRecord>,
    ) -> Result<(), AtsError> {
        // Every host on the database writes to this opportunity in turn (see `store::locks`);
        // what to write is read under the lock, with it, and the status is recorded with it
        // (one round trip on PostgreSQL), before any write. Marked as soon as it is committed:
        // a wait for the lock that fails after that leaves it recorded, and the flow must know.
        let recorded = || {
            if let Some(status) = status {
                status.mark_recorded(cx.timeline);
            }
        };
        let (held, orders, notes) = cx
            .store
            .lock_opportunity(
                cx.integration,
                opportunity_id,
                status.map(StatusToRecord::write),
                recorded,
            )
            .await?;
        let client = self.client()?;
        // Under the lock: no write of this host to it can start until the reconciliation ends.
        let record = record(cx.integration, opportunity_id);
        let opened = self
            .opened
            .take(opportunity_id)
            .filter(|(ticket, _)| cx.written.unchanged_since(&record, *ticket))
            .map(|(_, opp)| opp);
        sync::reconcile(
            (client, opened),
            (&held, cx.written.writing(&record)),
            (orders, notes),
            cx.store,
            cx.integration,
            opportunity_id,
            status_labels,
            verdict_labels,
            cx.timeline,
        )
        .await
        .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::secret::Secret;
    use crate::store::locks::LockName;
    use crate::store::{testing, Order, StatusRecord, Store};
    use crate::timeline::{Timeline, TimelineEvent};

    /// An adapter whose Lever is unreachable: the step below fails before any Lever call.
    fn adapter(store: &Store) -> LeverAts {
        let config = LeverConfig {
            api_base: "http://127.0.0.1:9".into(),
            api_key: Some(Secret::new("key")),
            oauth_access_token: None,
            oauth: false,
            signature_token: Secret::new("token"),
            trigger_stage: None,
        };
        let http = reqwest::Client::new();
        let metrics = Arc::new(Metrics::default());
        let oauth =
            oauth::LeverOAuth::new(None, "http://127.0.0.1:9", store.clone(), http, metrics);
        let oauth = Arc::new(oauth.expect("no OAuth app"));
        LeverAts::new(config, reqwest::Client::new(), &oauth, "i", Vec::new())
    }

    fn first_status() -> StatusRecord {
        StatusRecord {
            order: Order {
                integration: "i".into(),
                order_ref: "o1".into(),
                connector: "certn".into(),
                opportunity_id: "opp".into(),
                seq: 0,
                state: "pending".into(),
                label: "Pending".into(),
                report_url: None,
                score: None,
                verdict: None,
            },
            verdict: None,
            seq: 1,
            note: None,
            idempotency_key: Some("lever:t1".into()),
        }
    }

    /// On PostgreSQL a status goes out with its opportunity's lock and is committed whether or
    /// not another host holds the lock. When the wait for that host's lock then fails (here its
    /// session ends), the status is recorded, and is marked so and shown once: the flow then
    /// takes the step as started (no second write of the call's `state`, and a revoked
    /// integration's event waits for the connect instead of showing "not sent"), and the retry,
    /// which finds the order, records and shows nothing again.
    #[tokio::test(flavor = "multi_thread")]
    async fn on_postgres_a_status_whose_lock_wait_fails_is_marked_recorded_once() {
        let url = testing::postgres_url();
        let [a, b] = [(); 2].map(|_| Store::open_postgres(&url, None).unwrap());
        let opportunity = LockName::Opportunity {
            integration: "i",
            opportunity: "opp",
        };
        let held = b.lock(opportunity).await.unwrap();
        let lever = adapter(&a);
        let (timeline, wake, written) = (
            Timeline::default(),
            tokio::sync::Notify::new(),
            crate::ats::written::Written::new(false),
        );
        let mut shown = timeline.subscribe();
        let cx = AtsCx {
            integration: "i",
            enabled: true,
            store: &a,
            timeline: &timeline,
            wake: &wake,
            written: &written,
        };
        let status = StatusToRecord::new(first_status(), Vec::new(), "Pending".into());
        let labels = ["Pending".to_string()];
        let synced = lever.sync(&cx, "o1", "opp", &labels, &[], Some(&status));
        let end_the_wait = tokio::task::spawn_blocking({
            let b = b.clone();
            move || {
                testing::wait_for_lock_waiters(&b, 1);
                testing::end_lock_waiters(&b)
            }
        });
        let (synced, ended) = tokio::join!(synced, end_the_wait);
        assert_eq!(ended.unwrap(), 1, "host a waited for b's lock");
        assert!(synced.is_err(), "the wait failed");
        assert!(a.order_for_key("i", "lever:t1").unwrap().is_some());
        assert!(status.recorded(), "committed before the wait, and known so");
        let recorded = std::iter::from_fn(|| shown.try_recv().ok())
            .filter(|e| matches!(e, TimelineEvent::StatusRecorded { .. }))
            .count();
        assert_eq!(recorded, 1, "shown once");
        drop(held);
    }
}
