//! The ATS side: one module per applicant tracking system, behind one seam, [`Ats`].
//!
//! The flow and the intake routes know an ATS only through this trait: the intake route
//! `POST /hooks/{integration}/{source}` asks [`Ats::verify_webhook`] to check and parse a webhook,
//! the flow asks [`Ats::trigger`] what a stored event means and [`Ats::screening_request`] for the
//! candidate's context, and [`Ats::sync`] to bring the ATS up to date with what is recorded.
//! Connectors never see an ATS: they get the neutral [`ScreeningRequest`].
//!
//! Modules: [`config`] ([`AtsConfig`], the `[integrations.ats]` section, one variant per ATS),
//! [`section`] (what each ATS's section answers: kind, checks, secrets, webhook URLs — the one
//! place the `/hooks/` path is spelled), [`form`] (the `ats` part of the admin API's integration
//! form, by kind), [`expiring`] (ATS reads kept for a short lifetime: Lever's postings and
//! stages), [`lever`], [`gem`].
//!
//! **Adding an ATS** (Greenhouse, Ashby, Workable, …) is one folder `ats/<name>/` — its config
//! section implementing [`section::AtsSection`] (`config.rs`), its admin form (`form.rs`: input,
//! view, stored), its routes if it has any (`routes.rs`) and its adapter implementing [`Ats`] —
//! plus one line in [`each_ats`] (which writes the variant of [`AtsConfig`] and of the [`form`]
//! enums, and their dispatch) and one arm in [`build`]. An ATS that needs a table adds it in
//! `crate::store` (a module of `store/`, on every backend): only `store/` reaches the connection.
//! An ATS that calls an API of ours instead of sending webhooks (Gem) mounts its `routes()` in
//! [`crate::http::router`].

/// Every ATS, once: its variant, its `kind` in the config and the admin API, its folder, and the
/// types of its config section and admin form (input, view, stored). [`AtsConfig`] and the
/// [`form`] enums, and every `match` over them but [`build`], are written from this list.
macro_rules! each_ats {
    ($then:ident) => {
        $then! {
            /// Lever: stage-change webhooks in, REST API writes out.
            Lever("lever", lever: LeverConfig, LeverInput, LeverView, StoredLever),
            /// Gem: Gem calls switchyard's Gem API (`/gem/<id>/...`) to list packages and send
            /// checks; status changes go back to Gem as signed webhooks.
            Gem("gem", gem: GemConfig, GemInput, GemView, StoredGem),
        }
    };
}
pub(crate) use each_ats;

pub mod config;
pub mod expiring;
pub mod form;
pub mod gem;
pub mod lever;
pub mod section;
pub mod status;
pub mod written;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use crate::config::IntegrationConfig;
use crate::store::{Event, Store, StoreError, WaitFor};
use crate::timeline::Timeline;
use crate::wasm::connector::ScreeningRequest;
pub use config::AtsConfig;
pub use status::StatusToRecord;

/// Builds the ATS adapter of an integration: the one place that matches on the ATS kind.
/// `lever_oauth` is the host's Lever OAuth app (used by Lever integrations with `oauth = true`).
pub fn build(
    config: &IntegrationConfig,
    http: &reqwest::Client,
    lever_oauth: &Arc<lever::oauth::LeverOAuth>,
) -> Arc<dyn Ats> {
    match &config.ats {
        AtsConfig::Lever(lever) => Arc::new(lever::LeverAts::new(
            lever.clone(),
            http.clone(),
            lever_oauth,
            &config.id,
            config
                .rules
                .iter()
                .filter_map(|r| r.posting.clone())
                .collect(),
        )),
        AtsConfig::Gem(gem) => Arc::new(gem::GemAts::new(gem.clone(), http.clone())),
    }
}

/// What an adapter's calls may use of the host. Plain references: an adapter holds no host state.
pub struct AtsCx<'a> {
    pub integration: &'a str,
    pub enabled: bool,
    pub store: &'a Store,
    pub timeline: &'a Timeline,
    /// Wakes the workers when an adapter queues an event (Gem's status webhooks).
    pub wake: &'a Notify,
    /// This host's writes to ATS records: whether a record read a moment ago may be reused.
    pub written: &'a written::Written,
}

/// A verified webhook, as the intake route should treat it.
#[derive(Debug)]
pub enum Intake {
    /// A test ping ("Verify Connection"): answer 2xx, store nothing.
    Ping,
    /// An event of no interest: answer 2xx with its name, store nothing.
    Ignored(String),
    /// Store this event (deduplicated on `dedupe_key`) before answering.
    Event {
        kind: &'static str,
        dedupe_key: String,
        /// What is stored: the request's body itself (shared, not copied), UTF-8.
        payload: Bytes,
    },
}

/// Why a webhook is refused; nothing is stored.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// 400.
    #[error("{0}")]
    Malformed(String),
    /// 401 (bad signature, stale).
    #[error("{0}")]
    Unauthorized(String),
}

/// What a stored ATS event asks the flow to do.
#[derive(Debug)]
pub enum Trigger {
    /// Nothing to do; why.
    Skip(String),
    /// A candidate reached the named stage: the flow decides, by the integration's trigger
    /// stage, whether a screening starts, then asks [`Ats::screening_request`].
    StageReached(String),
    /// The ATS asked for this screening explicitly (Gem's send): start it as is.
    Explicit(Box<ScreeningRequest>),
}

/// The role of an event kind an adapter queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Asks for a screening ([`Ats::trigger`]).
    Trigger,
    /// An outbound delivery to the ATS ([`Ats::deliver`]): processed even while the integration
    /// is disabled (it reports what already happened), with the delivery retry budget.
    Delivery,
}

/// Why an adapter's step failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AtsError {
    pub message: String,
    pub retryable: bool,
    /// The least wait the ATS asked for (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// Retrying cannot help until this changes (a permission the ATS refused): the event waits
    /// for it (see [`crate::store::waiting`]) instead of being retried or dead-lettered.
    pub wait: Option<WaitFor>,
}

impl AtsError {
    pub fn new(message: impl Into<String>, retryable: bool) -> AtsError {
        AtsError {
            message: message.into(),
            retryable,
            retry_after: None,
            wait: None,
        }
    }
    pub fn fatal(message: impl Into<String>) -> AtsError {
        AtsError::new(message, false)
    }
    /// The event must wait for `what` (e.g. a permission, named in `message`).
    pub fn waiting(message: impl Into<String>, what: WaitFor) -> AtsError {
        AtsError {
            wait: Some(what),
            ..AtsError::new(message, false)
        }
    }
}

/// Why an integration cannot reach its ATS now ([`Ats::disconnected`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnected {
    /// Never connected yet: its events wait for the first connect.
    NotYet(String),
    /// Access was revoked (in the ATS, or disconnected by the operator): the integration is
    /// off, its triggers are recorded as not sent (see `flow::process`). Says when and why.
    Revoked(String),
}

impl std::fmt::Display for Disconnected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Disconnected::NotYet(why) => f.write_str(why),
            Disconnected::Revoked(why) => f.write_str(why),
        }
    }
}

impl From<StoreError> for AtsError {
    fn from(e: StoreError) -> Self {
        AtsError::new(e.to_string(), true)
    }
}

/// One applicant tracking system, as the flow and the intake routes see it.
#[async_trait]
pub trait Ats: Send + Sync {
    /// `lever`, `gem`: the config's `ats.kind`.
    fn kind(&self) -> &'static str;

    /// What the operator gives the ATS (webhook URL, API base), for the start-up log and the
    /// admin API: `(name, url)` pairs below `public_url`.
    fn endpoints(&self, public_url: &str, integration: &str) -> Vec<(&'static str, String)>;

    /// Why the integration cannot reach the ATS now (an OAuth grant not given yet, or revoked),
    /// or `None`. The flow then holds or skips its events (see [`Disconnected`]).
    fn disconnected(&self, _cx: &AtsCx<'_>) -> Option<Disconnected> {
        None
    }

    /// Checks that the integration's credential works against the ATS (a cheap authenticated
    /// read). An ATS that calls us has nothing to check.
    async fn check_connection(&self) -> Result<(), AtsError> {
        Ok(())
    }

    /// The ATS's pipeline stages as `(id, name)`, read live, for a rule's stage picker. `None`:
    /// this ATS has no stages to pick (it calls us with what to screen).
    async fn stages(&self) -> Option<Result<Vec<(String, String)>, AtsError>> {
        None
    }

    /// The ATS's job postings as `(id, name)`, read live, for a rule's posting picker. `None`:
    /// this ATS has no postings to pick.
    async fn postings(&self) -> Option<Result<Vec<(String, String)>, AtsError>> {
        None
    }

    /// The role of an event kind this ATS queues, or `None` when it is not one of its kinds.
    fn role(&self, kind: &str) -> Option<Role>;

    /// Checks and parses a webhook this ATS sent to `/hooks/{integration}/{source}`. `None`:
    /// this ATS sends no webhooks there (404).
    fn verify_webhook(
        &self,
        _source: &str,
        _body: &Bytes,
        _now_ms: i64,
        _max_age_secs: u64,
    ) -> Option<Result<Intake, Rejection>> {
        None
    }

    /// One line for the timeline about a webhook this ATS sent (`kind` and `payload` of its
    /// [`Intake::Event`]): built only when someone follows the timeline, not on every webhook.
    fn summary(&self, kind: &str, _payload: &[u8]) -> String {
        kind.to_owned()
    }

    /// What a stored [`Role::Trigger`] event asks for. `default_stage` is the connector's default
    /// trigger stage, used when the integration configures none.
    async fn trigger(
        &self,
        cx: &AtsCx<'_>,
        event: &Event,
        default_stage: Option<&str>,
    ) -> Result<Trigger, AtsError>;

    /// The integration's trigger stage, if the ATS has stages and one is configured.
    fn trigger_stage(&self) -> Option<&str> {
        None
    }

    /// The candidate's context for a [`Trigger::StageReached`] event the flow decided to start:
    /// reads the candidacy and its posting from the ATS. `stage` is the stage's name.
    async fn screening_request(
        &self,
        _cx: &AtsCx<'_>,
        event: &Event,
        _stage: &str,
    ) -> Result<ScreeningRequest, AtsError> {
        Err(AtsError::fatal(format!(
            "{} events of kind `{}` do not start screenings by stage",
            self.kind(),
            event.kind
        )))
    }

    /// Called once the connector started the screening of `event` as vendor order `order_ref`,
    /// before the order is recorded (Gem links its screening to the order here).
    fn started(&self, _cx: &AtsCx<'_>, _event: &Event, _order_ref: &str) -> Result<(), AtsError> {
        Ok(())
    }

    /// Brings the ATS up to date with what is recorded for `order_ref` on `opportunity_id`.
    /// Must be idempotent: it runs again after every crash and retry. `status_labels` and
    /// `verdict_labels` are every label the connector may use (from its manifest): one status
    /// tag and at most one verdict tag are shown, each replacing the connector's others.
    /// `status`, the status the flow just learned, is recorded (and marked so) before anything
    /// is written to the ATS: with the adapter's store lock, or alone first.
    async fn sync(
        &self,
        cx: &AtsCx<'_>,
        order_ref: &str,
        opportunity_id: &str,
        status_labels: &[String],
        verdict_labels: &[String],
        status: Option<&StatusToRecord>,
    ) -> Result<(), AtsError>;

    /// Sends a [`Role::Delivery`] event. Returns what was done, for the timeline.
    async fn deliver(&self, _cx: &AtsCx<'_>, event: &Event) -> Result<String, AtsError> {
        Err(AtsError::fatal(format!(
            "{} has no deliveries (event kind `{}`)",
            self.kind(),
            event.kind
        )))
    }

    /// After a [`Role::Trigger`] event was dead-lettered: tell the ATS if it waits for an answer
    /// (Gem shows "error" instead of "queued" forever). Idempotent.
    fn gave_up(&self, _cx: &AtsCx<'_>, _event: &Event) -> Result<(), AtsError> {
        Ok(())
    }
}
