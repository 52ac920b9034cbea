//! Tools for connector authors that need no server: `switchyard connector new` (a project from a
//! template). The offline harness (`connector test`) lives with the runtime, in
//! [`crate::wasm::harness`].

pub mod new;
