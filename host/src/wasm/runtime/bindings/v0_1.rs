//! Contract `switchyard:connector@0.1.*` (frozen, `wit/0.1.0/connector.wit`): no `crypto`
//! import, and a manifest without `verdict-labels` or `limits` (they read as empty / zeros, i.e.
//! the operator's defaults).

wasmtime::component::bindgen!({
    path: "../wit/0.1.0/connector.wit",
    world: "connector",
    imports: { default: async | trappable },
    exports: { default: async },
});

use self::switchyard::connector::{config, log, outbound_http, state, types};

super::shared_glue!("switchyard:connector/screening@0.1.0";);

fn manifest_from(m: types::Manifest) -> crate::wasm::types::Manifest {
    crate::wasm::types::Manifest {
        id: m.id,
        version: m.version,
        display_name: m.display_name,
        config_fields: config_fields(m.config_fields),
        outbound_hosts: m.outbound_hosts,
        status_labels: m.status_labels,
        default_trigger_stage: m.default_trigger_stage,
        verdict_labels: Vec::new(),
        limits: crate::wasm::types::Limits::default(),
    }
}
