//! Rust bindings of every contract version the host serves, one `bindgen!` per version:
//! [`v0_1`] from the frozen `wit/0.1.0/connector.wit`, [`v0_2`] from `wit/connector.wit` (0.2.1;
//! wasmtime matches a 0.2.0 component's imports and exports to it by semver).
//!
//! Each version module holds only glue: its generated types, its `Host` trait impls (which
//! convert to the host-neutral types of [`super::imports`] and delegate there) and its calls into
//! the exports (which convert to the host-neutral types of [`crate::wasm::connector`]). Nothing
//! outside `wasm/runtime` and `wasm/connector.rs` names a version.
//!
//! Imports are async (outbound HTTP awaits the network) and trappable (a host failure such as a
//! broken database aborts the invocation instead of lying to the guest).
//!
//! Exports are called through [`Linked`]: the component's `InstancePre` with its four exports'
//! indices found once at link time. A call instantiates the bare component and type-checks only
//! the export it calls (the `manifest` call, which validates a version, checks all four); the generated `ConnectorPre::instantiate_async` would look up and
//! type-check all four on every instance (about 0.7 µs of a 10 µs call, per the profile).

pub mod v0_1;
pub mod v0_2;

use wasmtime::component::{ComponentExportIndex, InstancePre};

/// A version's pre-instantiated component with the indices of its `screening` exports.
pub struct Linked<P> {
    pub pre: P,
    pub exports: Exports,
}

/// Where a component's `screening` exports are, looked up once per component (names, not types:
/// each call type-checks the one export it calls, [`Linked`]).
#[derive(Debug, Clone, Copy)]
pub struct Exports {
    pub manifest: ComponentExportIndex,
    pub list_packages: ComponentExportIndex,
    pub start_screening: ComponentExportIndex,
    pub handle_callback: ComponentExportIndex,
}

impl Exports {
    /// Finds the functions of `interface` (e.g. `switchyard:connector/screening@0.2.1`; a
    /// semver-compatible export matches, as in the generated bindings) in `pre`'s component.
    pub fn find<T>(pre: &InstancePre<T>, interface: &str) -> wasmtime::Result<Exports> {
        let component = pre.component();
        let instance = component
            .get_export_index(None, interface)
            .ok_or_else(|| wasmtime::format_err!("no exported instance named `{interface}`"))?;
        let func = |name: &str| {
            component
                .get_export_index(Some(&instance), name)
                .ok_or_else(|| {
                    wasmtime::format_err!(
                        "instance export `{interface}` does not have export `{name}`"
                    )
                })
        };
        Ok(Exports {
            manifest: func("manifest")?,
            list_packages: func("list-packages")?,
            start_screening: func("start-screening")?,
            handle_callback: func("handle-callback")?,
        })
    }
}

/// The imports and export calls whose WIT is the same in every served version: `types` (no
/// functions), `outbound-http`, `config`, `state` (`get`, `set`, `delete`; a version's further
/// `state` functions are passed in as `$state_extra`), `log`, and the `list-packages`,
/// `start-screening` and `handle-callback` calls. Expanded inside each version module, where
/// `types`, `outbound_http`, `config`, `state`, `log` and `ConnectorPre` name that version's
/// generated items; `$screening` is the version's exported interface with its version.
macro_rules! shared_glue {
    ($screening:literal; $($state_extra:item)*) => {
        use std::sync::Arc;

        use wasmtime::component::Instance;

        use $crate::wasm::runtime::bindings::{Exports, Linked};
        use $crate::wasm::runtime::imports::{self, LogLevel};
        use $crate::wasm::runtime::{
            CallContext, Grant, Instantiate, Invocation, InvokeError, Runtime,
        };
        use $crate::wasm::types::{
            CallError, Package, RawHttp, ScreeningRequest, Started, Status, StatusUpdate,
        };

        /// The component linked with this version's bindings, its exports found.
        pub(crate) fn link(pre: ConnectorPre<Invocation>) -> wasmtime::Result<Linked<ConnectorPre<Invocation>>> {
            let exports = Exports::find(pre.instance_pre(), $screening)?;
            Ok(Linked { pre, exports })
        }

        impl Instantiate for Linked<ConnectorPre<Invocation>> {
            type Instance = Instance;
            fn instantiate<'a>(
                &'a self,
                store: &'a mut wasmtime::Store<Invocation>,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = wasmtime::Result<Instance>> + Send + 'a>,
            > {
                Box::pin(self.pre.instance_pre().instantiate_async(store))
            }
        }

        impl types::Host for Invocation {}

        impl outbound_http::Host for Invocation {
            async fn send(
                &mut self,
                request: outbound_http::OutgoingRequest,
            ) -> wasmtime::Result<Result<types::HttpResponse, outbound_http::HttpError>> {
                use imports::HttpError as E;
                use outbound_http::HttpError as W;
                let request = imports::OutgoingRequest {
                    method: request.method,
                    url: request.url,
                    headers: request.headers,
                    body: request.body,
                    timeout_ms: request.timeout_ms,
                };
                Ok(match self.ctx.send(request).await {
                    Ok(r) => Ok(types::HttpResponse {
                        status: r.status,
                        headers: r.headers,
                        body: r.body,
                    }),
                    Err(E::Denied(m)) => Err(W::Denied(m)),
                    Err(E::Timeout) => Err(W::Timeout),
                    Err(E::Connection(m)) => Err(W::Connection(m)),
                    Err(E::Invalid(m)) => Err(W::Invalid(m)),
                })
            }
        }

        impl config::Host for Invocation {
            async fn integration_id(&mut self) -> wasmtime::Result<String> {
                Ok(self.ctx.integration_id.clone())
            }
            async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
                Ok(self.ctx.settings.get(&key).cloned())
            }
            async fn secret(&mut self, key: String) -> wasmtime::Result<Option<String>> {
                Ok(self.ctx.secrets.get(&key).map(|s| s.expose().to_string()))
            }
            async fn packages(&mut self) -> wasmtime::Result<Vec<types::Package>> {
                Ok(self.ctx.packages.iter().map(to_wit_package).collect())
            }
            async fn callback_url(&mut self) -> wasmtime::Result<String> {
                Ok(self.ctx.callback_url.clone())
            }
        }

        impl state::Host for Invocation {
            async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
                self.ctx.state_get(&key)
            }
            async fn set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
                self.ctx.state_set(&key, &value)
            }
            async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
                self.ctx.state_delete(&key)
            }
            $($state_extra)*
        }

        impl log::Host for Invocation {
            async fn log(
                &mut self,
                level: log::Level,
                message: String,
                fields: Vec<(String, String)>,
            ) -> wasmtime::Result<()> {
                let level = match level {
                    log::Level::Trace => LogLevel::Trace,
                    log::Level::Debug => LogLevel::Debug,
                    log::Level::Info => LogLevel::Info,
                    log::Level::Warn => LogLevel::Warn,
                    log::Level::Error => LogLevel::Error,
                };
                self.ctx.log(level, &message, &fields)
            }
        }

        fn to_wit_package(p: &Package) -> types::Package {
            types::Package {
                name: p.name.clone(),
                is_default: p.is_default,
                params: p.params.clone(),
            }
        }

        fn status(s: types::Status) -> Status {
            use types::ScreeningState as S;
            let state = match s.state {
                S::Pending => "pending",
                S::Analyzing => "analyzing",
                S::Partial => "partial",
                S::Complete => "complete",
                S::Error => "error",
                S::Cancelled => "cancelled",
            };
            Status {
                state: state.into(),
                label: s.label,
                report_url: s.report_url.filter(|u| !u.is_empty()),
                score: s.score,
                verdict: s.verdict,
                note: s.note.map(|n| $crate::wasm::types::Note {
                    text: n.text,
                    secret: n.secret,
                }),
            }
        }

        fn connector_error(e: types::ConnectorError) -> CallError {
            match e {
                types::ConnectorError::Config(m) => CallError::Config(m),
                types::ConnectorError::Transient(m) => CallError::Transient(m),
                types::ConnectorError::Rejected(m) => CallError::Rejected(m),
            }
        }

        /// Calls `manifest` (in a fresh sandbox with `grant`), after type-checking all four
        /// exports: the manifest call is how a version is validated (upload, start-up,
        /// `--watch`), so a component whose other exports have the wrong types is refused
        /// there, not at its first event (the other calls check only their own export).
        pub(crate) async fn manifest(
            runtime: &Runtime,
            pre: &Linked<ConnectorPre<Invocation>>,
            grant: Grant,
            ctx: Arc<CallContext>,
        ) -> Result<$crate::wasm::types::Manifest, InvokeError> {
            let exports = pre.exports;
            let m = runtime
                .invoke(pre, grant, ctx, move |instance, store| {
                    Box::pin(async move {
                        // Named, so that a wrongly typed export is refused as a contract
                        // mismatch saying which one, not as a trap.
                        let mistyped = |export| move |e: wasmtime::Error| {
                            wasmtime::Error::new($crate::wasm::types::ExportMismatch {
                                export,
                                cause: format!("{e:#}"),
                            })
                        };
                        instance.get_typed_func::<
                            (),
                            (Result<Vec<types::Package>, types::ConnectorError>,),
                        >(&mut *store, exports.list_packages)
                        .map_err(mistyped("list-packages"))?;
                        instance.get_typed_func::<
                            (&types::ScreeningRequest,),
                            (Result<types::Started, types::ConnectorError>,),
                        >(&mut *store, exports.start_screening)
                        .map_err(mistyped("start-screening"))?;
                        instance.get_typed_func::<
                            (&types::HttpRequest,),
                            (Result<types::CallbackResult, types::ConnectorError>,),
                        >(&mut *store, exports.handle_callback)
                        .map_err(mistyped("handle-callback"))?;
                        let f = instance.get_typed_func::<(), (types::Manifest,)>(
                            &mut *store,
                            exports.manifest,
                        )
                        .map_err(mistyped("manifest"))?;
                        Ok(f.call_async(store, ()).await?.0)
                    })
                })
                .await?;
            Ok(manifest_from(m))
        }

        /// Calls `list-packages`.
        pub(crate) async fn list_packages(
            runtime: &Runtime,
            pre: &Linked<ConnectorPre<Invocation>>,
            grant: Grant,
            ctx: Arc<CallContext>,
        ) -> Result<Vec<Package>, CallError> {
            let export = pre.exports.list_packages;
            let result = runtime
                .invoke(pre, grant, ctx, move |instance, store| {
                    Box::pin(async move {
                        let f = instance.get_typed_func::<
                            (),
                            (Result<Vec<types::Package>, types::ConnectorError>,),
                        >(&mut *store, export)?;
                        Ok(f.call_async(store, ()).await?.0)
                    })
                })
                .await?;
            Ok(result
                .map_err(connector_error)?
                .into_iter()
                .map(|p| Package {
                    name: p.name,
                    is_default: p.is_default,
                    params: p.params,
                })
                .collect())
        }

        /// Calls `start-screening`.
        pub(crate) async fn start_screening(
            runtime: &Runtime,
            pre: &Linked<ConnectorPre<Invocation>>,
            grant: Grant,
            ctx: Arc<CallContext>,
            req: &ScreeningRequest,
        ) -> Result<Started, CallError> {
            let wit_req = types::ScreeningRequest {
                idempotency_key: req.idempotency_key.clone(),
                candidate: types::Candidate {
                    name: req.name.clone(),
                    emails: req.emails.clone(),
                    phones: req.phones.clone(),
                },
                opportunity_id: req.opportunity_id.clone(),
                opportunity_tags: req.opportunity_tags.clone(),
                posting_id: req.posting_id.clone(),
                posting_tags: req.posting_tags.clone(),
                stage: req.stage.clone(),
                package: req.package.clone(),
            };
            let export = pre.exports.start_screening;
            let result = runtime
                .invoke(pre, grant, ctx, move |instance, store| {
                    Box::pin(async move {
                        let f = instance.get_typed_func::<
                            (&types::ScreeningRequest,),
                            (Result<types::Started, types::ConnectorError>,),
                        >(&mut *store, export)?;
                        Ok(f.call_async(store, (&wit_req,)).await?.0)
                    })
                })
                .await?;
            let started = result.map_err(connector_error)?;
            Ok(Started {
                order_ref: started.order_ref,
                status: status(started.status),
            })
        }

        /// Calls `handle-callback`.
        pub(crate) async fn handle_callback(
            runtime: &Runtime,
            pre: &Linked<ConnectorPre<Invocation>>,
            grant: Grant,
            ctx: Arc<CallContext>,
            req: RawHttp,
        ) -> Result<(RawHttp, Vec<StatusUpdate>), CallError> {
            let wit_req = types::HttpRequest {
                method: req.method,
                path: req.path,
                query: req.query,
                headers: req.headers,
                body: req.body,
            };
            let export = pre.exports.handle_callback;
            let result = runtime
                .invoke(pre, grant, ctx, move |instance, store| {
                    Box::pin(async move {
                        let f = instance.get_typed_func::<
                            (&types::HttpRequest,),
                            (Result<types::CallbackResult, types::ConnectorError>,),
                        >(&mut *store, export)?;
                        Ok(f.call_async(store, (&wit_req,)).await?.0)
                    })
                })
                .await?;
            let out = result.map_err(connector_error)?;
            let response = RawHttp {
                status: out.response.status,
                headers: out.response.headers,
                body: out.response.body,
                ..RawHttp::default()
            };
            let updates = out
                .updates
                .into_iter()
                .map(|u| StatusUpdate {
                    order_ref: u.order_ref,
                    status: status(u.status),
                })
                .collect();
            Ok((response, updates))
        }

        fn config_fields(fields: Vec<types::ConfigField>) -> Vec<$crate::wasm::types::ConfigField> {
            fields
                .into_iter()
                .map(|f| $crate::wasm::types::ConfigField {
                    key: f.key,
                    description: f.description,
                    secret: f.secret,
                    required: f.required,
                })
                .collect()
        }
    };
}
use shared_glue;
