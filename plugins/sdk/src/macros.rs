//! [`export_connector!`](crate::export_connector): the component glue for a connector whose
//! operations are plain functions taking a [`Host`](crate::Host).

/// Exports a connector whose four operations are functions of one module, written against
/// [`Host`](crate::Host) so the unit tests can call them with `testing::FakeHost`:
///
/// ```ignore
/// // src/connector.rs
/// pub fn manifest() -> Manifest { ... }
/// pub fn list_packages(host: &impl Host) -> Result<Vec<Package>, ConnectorError> { ... }
/// pub fn start_screening(host: &impl Host, request: &ScreeningRequest) -> Result<Started, ConnectorError> { ... }
/// pub fn handle_callback(host: &impl Host, request: &HttpRequest) -> Result<CallbackResult, ConnectorError> { ... }
///
/// // src/lib.rs
/// pub mod connector;
/// switchyard_connector::export_connector!(connector);
/// ```
///
/// It implements [`Guest`](crate::Guest) by calling them with [`WasmHost`](crate::WasmHost) and
/// invokes [`export!`](crate::export), on wasm32 only (natively there is nothing to export). The
/// crate must depend on this SDK under the name `switchyard-connector`. Write the [`Guest`]
/// implementation by hand instead when the operations do not have these shapes.
///
/// [`Guest`]: crate::Guest
#[macro_export]
macro_rules! export_connector {
    ($($module:ident)::+) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Connector;

            impl $crate::Guest for Connector {
                fn manifest() -> $crate::Manifest {
                    $($module)::+::manifest()
                }

                fn list_packages() -> ::core::result::Result<
                    ::std::vec::Vec<$crate::Package>,
                    $crate::ConnectorError,
                > {
                    $($module)::+::list_packages(&$crate::WasmHost)
                }

                fn start_screening(
                    request: $crate::ScreeningRequest,
                ) -> ::core::result::Result<$crate::Started, $crate::ConnectorError> {
                    $($module)::+::start_screening(&$crate::WasmHost, &request)
                }

                fn handle_callback(
                    request: $crate::HttpRequest,
                ) -> ::core::result::Result<$crate::CallbackResult, $crate::ConnectorError> {
                    $($module)::+::handle_callback(&$crate::WasmHost, &request)
                }
            }

            $crate::export!(Connector);
        };
    };
}
