//! Rust bindings of the `switchyard:connector` world, generated from `wit/`.
//!
//! Imports are async (outbound HTTP awaits the network) and trappable (a host failure such as a
//! broken database aborts the invocation instead of lying to the guest).

wasmtime::component::bindgen!({
    path: "../wit/0.1.0",
    world: "connector",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::exports::switchyard::connector::screening;
pub use self::switchyard::connector::types;
