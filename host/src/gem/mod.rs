//! Gem: the ATS is the client. Gem calls switchyard's Gem API (per integration, with an API key
//! switchyard issued) to list packages, send a screening and read its status; switchyard sends
//! each status change back to Gem's webhook handler as a signed webhook (Standard Webhooks).
//!
//! - [`keys`]: API keys (issued once, stored as SHA-256, revocable, several active at once).
//! - [`api`]: the routes under `/gem/{integration}/`.
//! - [`screening`]: a screening Gem asked for, and the `gem.send` step that starts it through the
//!   integration's connector (the same `start-screening` call the Lever flow makes).
//! - [`delivery`]: status webhooks to Gem: enqueued durably on the event queue, one per distinct
//!   status, and sent by the workers with retries.
//! - [`signature`]: Standard Webhooks signing (and verification, for tests).
//!
//! Documented for Gem-side developers in `docs/gem.md`.

pub mod api;
pub mod delivery;
pub mod keys;
pub mod screening;
pub mod signature;
