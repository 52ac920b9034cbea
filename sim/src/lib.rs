//! Loopback simulators of the services switchyard talks to (ATSs and screening vendors).
//!
//! Every simulator is a real HTTP server (axum on tokio) bound to `127.0.0.1:0`, started
//! in-process by tests and by `switchyard demo`. The simulators are deliberately kept apart from
//! the code under test: this crate does not depend on the host crate.
//!
//! - [`lever`]: Lever's REST API v1 plus Lever-style signed webhooks.
//! - [`certn`]: Certn's v1 HR API (invite + application status) plus signed status callbacks.
//! - [`gem`]: Gem as a client of switchyard's Gem API, and its status-webhook handler
//!   (Standard Webhooks verification, dedupe by `webhook-id`).
//! - [`http_util`]: small helpers shared by the simulators (server handle, randomness, HMAC, time).

pub mod canditech;
pub mod certn;
pub mod gem;
pub mod http_util;
pub mod justifacts;
pub mod lever;
