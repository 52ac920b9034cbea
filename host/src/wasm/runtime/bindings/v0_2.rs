//! Contract `switchyard:connector@0.2.*` (`wit/connector.wit`, 0.2.1): adds the `crypto` import
//! (implemented in [`crate::wasm::runtime::crypto`]), the manifest's `verdict-labels` and
//! `limits`, and (0.2.1) `state.set-for-screening`. A 0.2.0 component links to the same
//! bindings: it simply does not import the newer function.

wasmtime::component::bindgen!({
    path: "../wit/connector.wit",
    world: "connector",
    imports: { default: async | trappable },
    exports: { default: async },
});

use self::switchyard::connector::{config, crypto, log, outbound_http, state, types};
use crate::wasm::runtime::crypto as host_crypto;

super::shared_glue! {
    "switchyard:connector/screening@0.2.1";
    async fn set_for_screening(
        &mut self,
        idempotency_key: String,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        self.ctx.state_set_for_screening(&idempotency_key, &key, &value)
    }
}

fn manifest_from(m: types::Manifest) -> crate::wasm::types::Manifest {
    crate::wasm::types::Manifest {
        id: m.id,
        version: m.version,
        display_name: m.display_name,
        config_fields: config_fields(m.config_fields),
        outbound_hosts: m.outbound_hosts,
        status_labels: m.status_labels,
        default_trigger_stage: m.default_trigger_stage,
        verdict_labels: m.verdict_labels,
        limits: crate::wasm::types::Limits {
            memory_mib: m.limits.memory_mib,
            instances: m.limits.instances,
        },
    }
}

fn encoding(e: crypto::Encoding) -> host_crypto::Encoding {
    match e {
        crypto::Encoding::Hex => host_crypto::Encoding::Hex,
        crypto::Encoding::Base64 => host_crypto::Encoding::Base64,
    }
}

impl crypto::Host for Invocation {
    async fn sha256(&mut self, data: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        Ok(host_crypto::sha256(&data))
    }
    async fn hmac_sha256(&mut self, key: Vec<u8>, message: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        Ok(host_crypto::hmac_sha256(&key, &message))
    }
    async fn constant_time_eq(&mut self, a: Vec<u8>, b: Vec<u8>) -> wasmtime::Result<bool> {
        Ok(host_crypto::constant_time_eq(&a, &b))
    }
    async fn verify_hmac_sha256(
        &mut self,
        key: Vec<u8>,
        message: Vec<u8>,
        signature: String,
        enc: crypto::Encoding,
    ) -> wasmtime::Result<bool> {
        Ok(host_crypto::verify_hmac_sha256(
            &key,
            &message,
            &signature,
            encoding(enc),
        ))
    }
    async fn encode(&mut self, data: Vec<u8>, enc: crypto::Encoding) -> wasmtime::Result<String> {
        Ok(host_crypto::encode(&data, encoding(enc)))
    }
    async fn decode(
        &mut self,
        text: String,
        enc: crypto::Encoding,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(host_crypto::decode(&text, encoding(enc)))
    }
}
