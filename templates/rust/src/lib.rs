//! {{Name}}: a switchyard connector (contract `switchyard:connector@0.2.1`, world `connector`).
//!
//! The logic is in [`connector`], written against the SDK's `Host` trait so the unit tests run it
//! natively with `FakeHost`; the component glue below only exists on wasm32.

pub mod connector;

#[cfg(target_arch = "wasm32")]
mod component {
    use switchyard_connector::{
        CallbackResult, ConnectorError, Guest, HttpRequest, Manifest, Package, ScreeningRequest,
        Started, WasmHost,
    };

    struct Component;

    switchyard_connector::export!(Component);

    impl Guest for Component {
        fn manifest() -> Manifest {
            crate::connector::manifest()
        }

        fn list_packages() -> Result<Vec<Package>, ConnectorError> {
            crate::connector::list_packages(&WasmHost)
        }

        fn start_screening(request: ScreeningRequest) -> Result<Started, ConnectorError> {
            crate::connector::start_screening(&WasmHost, &request)
        }

        fn handle_callback(request: HttpRequest) -> Result<CallbackResult, ConnectorError> {
            crate::connector::handle_callback(&WasmHost, &request)
        }
    }
}
