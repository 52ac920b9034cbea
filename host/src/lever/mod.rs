//! Lever: the webhook it sends us, its signature scheme, its REST API, and how a screening's
//! status is written back onto an opportunity.

pub mod client;
pub mod signature;
pub mod sync;
pub mod webhook;

pub use client::{LeverClient, LeverError, Opportunity};
