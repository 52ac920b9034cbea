//! The benchmark's twin connector: the same logic (`connector`) as a component (this crate built
//! for wasm32-wasip2, `twin.wasm`) and natively (the host's benchmark links it as an rlib and
//! calls [`connector`] with a `Host` over the host's imports), so "native vs Wasm" compares
//! one piece of code. It invites at a Certn-compatible API (the Certn simulator in the
//! benchmark) and maps the answer to a status; it keeps no state and ignores callbacks.
//! Not meant to be deployed.

pub mod connector;

// The component glue (wasm32 only): `Guest` calling `connector`'s functions with `WasmHost`.
switchyard_connector::export_connector!(connector);
