//! Constructors and builders for the contract's types, so a connector writes
//! `Status::new(ScreeningState::Complete, LABEL).maybe_report_url(url).for_order(id)` instead of
//! spelling out every field of every record.
//!
//! The types themselves are the generated bindings, re-exported at the crate root.

use crate::{
    CallbackResult, ConfigField, ConnectorError, HttpResponse, Manifest, Note, Package,
    ResourceNeeds, ScreeningState, Started, Status, StatusUpdate,
};

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

impl Manifest {
    /// A manifest with no config fields, outbound hosts, labels or trigger stage, and the host's
    /// default limits; fill it in with the builder methods below.
    pub fn new(
        id: impl Into<String>,
        version: impl Into<String>,
        display_name: impl Into<String>,
    ) -> Self {
        Manifest {
            id: id.into(),
            version: version.into(),
            display_name: display_name.into(),
            config_fields: Vec::new(),
            outbound_hosts: Vec::new(),
            status_labels: Vec::new(),
            default_trigger_stage: None,
            verdict_labels: Vec::new(),
            limits: ResourceNeeds::default(),
        }
    }

    /// Every setting the connector reads.
    pub fn config_fields(mut self, fields: Vec<ConfigField>) -> Self {
        self.config_fields = fields;
        self
    }

    /// The hosts (`name` or `name:port`) the connector calls by default.
    pub fn outbound_hosts(mut self, hosts: &[&str]) -> Self {
        self.outbound_hosts = strings(hosts);
        self
    }

    /// Every status label the connector can return (the host keeps one at a time).
    pub fn status_labels(mut self, labels: &[&str]) -> Self {
        self.status_labels = strings(labels);
        self
    }

    /// Every verdict label the connector can return in `status.verdict` (empty for vendors
    /// without verdicts).
    pub fn verdict_labels(mut self, labels: &[&str]) -> Self {
        self.verdict_labels = strings(labels);
        self
    }

    /// The ATS stage that starts a screening when the operator configures none.
    pub fn default_trigger_stage(mut self, stage: impl Into<String>) -> Self {
        self.default_trigger_stage = Some(stage.into());
        self
    }

    /// What the connector needs from the sandbox ([`ResourceNeeds::default`]: the host's
    /// defaults, which fit Rust components).
    pub fn limits(mut self, limits: ResourceNeeds) -> Self {
        self.limits = limits;
        self
    }
}

impl Default for ResourceNeeds {
    /// Zeros: "the host's defaults" for memory and instances.
    fn default() -> Self {
        ResourceNeeds {
            memory_mib: 0,
            instances: 0,
        }
    }
}

impl ConfigField {
    /// A plain setting, read with `config.get` ([`crate::Host::setting`]).
    pub fn setting(key: &str, description: &str, required: bool) -> Self {
        ConfigField {
            key: key.into(),
            description: description.into(),
            secret: false,
            required,
        }
    }

    /// A secret setting, read with `config.secret` ([`crate::Host::secret`]); the host never
    /// shows or logs it.
    pub fn secret_setting(key: &str, description: &str, required: bool) -> Self {
        ConfigField {
            key: key.into(),
            description: description.into(),
            secret: true,
            required,
        }
    }
}

impl Package {
    /// A package (handy in tests).
    pub fn new(name: impl Into<String>, is_default: bool, params: &[(&str, &str)]) -> Self {
        Package {
            name: name.into(),
            is_default,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The value of parameter `key` (compared trimmed and ignoring ASCII case), if set.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(key.trim()))
            .map(|(_, v)| v.as_str())
    }
}

impl Note {
    /// A note every user who can see the candidacy can read.
    pub fn public(text: impl Into<String>) -> Self {
        Note {
            text: text.into(),
            secret: false,
        }
    }

    /// A note only users allowed to see secret notes can read (e.g. a background check result).
    pub fn secret(text: impl Into<String>) -> Self {
        Note {
            text: text.into(),
            secret: true,
        }
    }
}

impl Status {
    /// A status with a state and a label (one of the manifest's `status-labels`), and nothing
    /// else.
    pub fn new(state: ScreeningState, label: impl Into<String>) -> Self {
        Status {
            state,
            label: label.into(),
            report_url: None,
            score: None,
            verdict: None,
            note: None,
        }
    }

    /// With a link to the report.
    pub fn report_url(self, url: impl Into<String>) -> Self {
        self.maybe_report_url(Some(url.into()))
    }

    /// With a link to the report, if there is one.
    pub fn maybe_report_url(mut self, url: Option<String>) -> Self {
        self.report_url = url;
        self
    }

    /// With a score (assessments).
    pub fn score(mut self, score: f64) -> Self {
        self.score = Some(score);
        self
    }

    /// With a verdict (shown as a tag when it is one of the manifest's `verdict-labels`).
    pub fn verdict(self, verdict: impl Into<String>) -> Self {
        self.maybe_verdict(Some(verdict.into()))
    }

    /// With a verdict, if there is one.
    pub fn maybe_verdict(mut self, verdict: Option<String>) -> Self {
        self.verdict = verdict;
        self
    }

    /// With a note to add to the candidacy once.
    pub fn note(self, note: Note) -> Self {
        self.maybe_note(Some(note))
    }

    /// With a note, if there is one.
    pub fn maybe_note(mut self, note: Option<Note>) -> Self {
        self.note = note;
        self
    }

    /// This status as the update of one vendor order (for [`CallbackResult::with_updates`]).
    pub fn for_order(self, order_ref: impl Into<String>) -> StatusUpdate {
        StatusUpdate {
            order_ref: order_ref.into(),
            status: self,
        }
    }
}

impl Started {
    /// An order was placed (or found): its reference and the status to show now.
    pub fn order(order_ref: impl Into<String>, status: Status) -> Self {
        Started {
            order_ref: Some(order_ref.into()),
            status,
        }
    }

    /// No vendor call was made (e.g. "no email"); the status says why.
    pub fn without_order(status: Status) -> Self {
        Started {
            order_ref: None,
            status,
        }
    }
}

impl HttpResponse {
    /// A response with one `content-type` header.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// A JSON response (`content-type: application/json`).
    pub fn json(status: u16, body: &str) -> Self {
        Self::new(status, "application/json", body.as_bytes())
    }

    /// A plain-text response (`content-type: text/plain`).
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "text/plain", body)
    }

    /// The first header named `name` (ignoring ASCII case).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::text::header(&self.headers, name)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl CallbackResult {
    /// Answer the vendor and change nothing (a refused, ignored or malformed callback).
    pub fn reply(response: HttpResponse) -> Self {
        CallbackResult {
            response,
            updates: Vec::new(),
        }
    }

    /// Answer the vendor and apply `updates` (the host applies them only when `response` is
    /// 2xx).
    pub fn with_updates(response: HttpResponse, updates: Vec<StatusUpdate>) -> Self {
        CallbackResult { response, updates }
    }
}

impl ConnectorError {
    /// `config`, `transient` or `rejected`.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorError::Config(_) => "config",
            ConnectorError::Transient(_) => "transient",
            ConnectorError::Rejected(_) => "rejected",
        }
    }

    /// The error's text.
    pub fn message(&self) -> &str {
        match self {
            ConnectorError::Config(m)
            | ConnectorError::Transient(m)
            | ConnectorError::Rejected(m) => m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_defaults_ask_for_nothing() {
        let m = Manifest::new("acme", "1.0.0", "Acme").status_labels(&["A - Pending"]);
        assert_eq!(m.limits, ResourceNeeds::default());
        assert_eq!((m.limits.memory_mib, m.limits.instances), (0, 0));
        assert!(m.verdict_labels.is_empty());
        assert_eq!(m.status_labels, vec!["A - Pending".to_string()]);
        assert_eq!(m.default_trigger_stage, None);
    }

    #[test]
    fn status_builder_and_update() {
        let u = Status::new(ScreeningState::Complete, "Done")
            .maybe_report_url(Some("https://r/1".into()))
            .verdict("Clear")
            .note(Note::secret("result"))
            .for_order("o-1");
        assert_eq!(u.order_ref, "o-1");
        assert_eq!(u.status.report_url.as_deref(), Some("https://r/1"));
        assert_eq!(u.status.verdict.as_deref(), Some("Clear"));
        assert_eq!(u.status.note, Some(Note::secret("result")));
        assert_eq!(u.status.score, None);
    }

    #[test]
    fn package_params_ignore_case() {
        let p = Package::new("Basic", true, &[(" Checks ", "criminal")]);
        assert_eq!(p.param("checks"), Some("criminal"));
        assert_eq!(p.param("code"), None);
    }

    #[test]
    fn responses_and_errors() {
        let r = HttpResponse::json(401, r#"{"error":"x"}"#);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert!(!r.is_success());
        let e = ConnectorError::Transient("later".into());
        assert_eq!((e.kind(), e.message()), ("transient", "later"));
    }
}
