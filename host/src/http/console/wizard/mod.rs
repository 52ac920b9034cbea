//! The setup wizard at `/console/wizard`: the seeds' "Settings > Integrations > Lever > Connect"
//! and "Attach Assessment to Stage: position → stage → assessment" as a few server-rendered
//! steps, for operators. Each step is a form with its CSRF token and works without the script;
//! nothing is trusted from a field: every step re-reads the integration and re-checks what it is
//! given against the live lists. The integration is created **paused** at the end of the
//! settings step, through the admin API's own validation (`create_from`), so the later steps read
//! the live lists with its credentials; the last step runs Verify Connection and enables it.
//! Every step that changes something is audited (never a secret's value).
//!
//! - [`start`]: step 1, the id, the ATS and the connector (a GET form: nothing changes yet).
//! - [`settings`]: step 2, the ATS's credentials, the connector's `config-fields` (secrets
//!   write-only), the packages where the operator gives them; creates the integration.
//! - [`connect`]: Lever through the host's OAuth app: a fresh connect link; the wizard goes on
//!   once Lever's callback stored the grant.
//! - [`rules`]: the trigger stage and `(posting, stage) → package` rules from live lists.
//! - [`finish`]: the URLs to copy, Gem's API key, Verify Connection, enable.
//! - [`form`]: fields with their problems beside them, the steps bar, the shared lookups.

pub mod connect;
pub mod finish;
pub mod form;
pub mod rules;
pub mod settings;
pub mod start;
