//! The wit-bindgen bindings of `wit/connector.wit` (`switchyard:connector@0.2.1`, world
//! `connector`), generated here once so that connector crates never run wit-bindgen themselves.
//!
//! Connectors rarely need this module by name: the crate root re-exports every type, the
//! [`Guest`](crate::Guest) trait and the [`export!`](crate::export) macro. The raw import
//! functions live under [`switchyard::connector`]; prefer the [`Host`](crate::Host) trait, which
//! the unit tests can replace with `testing::FakeHost`.
#![allow(missing_docs, clippy::all)]

wit_bindgen::generate!({
    path: "../../wit/connector.wit",
    world: "connector",
    // The `export!` macro is used by the connector crate, not by this one.
    pub_export_macro: true,
    default_bindings_module: "switchyard_connector::bindings",
    // Records compare and clone in tests; `Debug` comes with wit-bindgen already.
    additional_derives: [PartialEq, Clone],
    generate_unused_types: true,
});
