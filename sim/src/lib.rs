//! Loopback simulators of the services switchyard talks to (ATSs and screening vendors).
//!
//! Every simulator is a real HTTP server (axum on tokio) bound to `127.0.0.1:0`, started
//! in-process by the test kit (`testkit/`: the tests, the benchmark and `switchyard-demo`). The simulators are deliberately kept apart from
//! the code under test: this crate does not depend on the host crate.
//!
//! - [`lever`]: Lever's REST API v1, Lever-style signed webhooks, and Lever's OAuth authorization
//!   server (authorize, token with rotating refresh tokens, revoke, app revocation).
//! - [`certn`]: Certn's v1 HR API (invite, application status, lookup by our reference) plus
//!   signed status callbacks.
//! - [`justifacts`]: the Justifacts orders API (lookup by our reference) and signed callbacks.
//! - [`canditech`]: the Canditech assessments API designed in `docs/canditech.md` (assessments,
//!   idempotent invitations, lookup by reference) and signed progress and verdict webhooks,
//!   including a reviewer changing a verdict.
//!
//! The vendor simulators can ignore idempotency keys (as a vendor without support would), inject
//! latency, failures and outages, and count invitations per reference and per email, so tests can
//! assert "no candidate invited twice".
//! - [`gem`]: Gem as a client of switchyard's Gem API, and its status-webhook handler
//!   (Standard Webhooks verification, dedupe by `webhook-id`).
//! - [`http_util`]: small helpers shared by the simulators (server handle, randomness, HMAC, time).

pub mod canditech;
pub mod certn;
pub mod gem;
pub mod http_util;
pub mod justifacts;
pub mod lever;
