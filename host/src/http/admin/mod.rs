//! The admin API under `/admin`: connector versions ([`connectors`]), integrations
//! ([`integrations`]) with their health and the resumption of their waiting events ([`health`]),
//! the API keys of Gem integrations ([`gem_keys`]), Lever OAuth connect/disconnect ([`lever`]),
//! the event queue with each event's attempt history, inbound headers and outbound calls
//! ([`events`], filtered by [`criteria`]), bulk replay jobs ([`replay`]), a candidate's timeline
//! ([`timeline`]), the console's numbers ([`stats`]) and the setup wizard's live lists
//! ([`live`]). Mounted only when `server.admin_token` is set; every route requires
//! `Authorization: Bearer <token>`, compared in constant time (401 otherwise). Errors are
//! [`ApiError`]s, `{"error": "...", "code": "..."}` with a 4xx for bad input, and a rejected
//! request changes nothing.
//!
//! Each handler carries its `#[utoipa::path]` and each module registers its routes through
//! [`OpenApiRouter`], so the router and the OpenAPI document ([`document`], served at
//! `GET /admin/openapi.json` behind the same token) come from the same list and cannot drift.

mod connectors;
// The console filters and replays events with the API's criteria, cap and messages.
pub(crate) mod criteria;
mod events;
mod gem_keys;
mod health;
// The console shows an integration as the API does and pauses it the same way.
pub(crate) mod integrations;
mod lever;
pub(crate) mod live;
pub mod replay;
mod stats;
mod timeline;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::http::error::{ApiError, ErrorBody};

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/admin/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "switchyard admin API",
        description = "Connector versions, integrations, Gem API keys, Lever OAuth and the event \
            queue. Every route requires `Authorization: Bearer <server.admin_token>`; every \
            error is `{\"error\": \"<message>\", \"code\": \"<code>\"}`."
    ),
    modifiers(&AdminToken),
    security(("admin_token" = [])),
    components(schemas(ErrorBody))
)]
struct AdminApi;

/// Declares the bearer token every route requires.
struct AdminToken;

impl utoipa::Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every admin route with its documentation.
fn api() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(AdminApi::openapi())
        .merge(connectors::routes())
        .merge(integrations::routes())
        .merge(health::routes())
        .merge(gem_keys::routes())
        .merge(events::routes())
        .merge(lever::routes())
        .merge(replay::routes())
        .merge(timeline::routes())
        .merge(stats::routes())
        .merge(live::routes())
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of the admin API.
pub fn document() -> utoipa::openapi::OpenApi {
    with_unauthorized(api().split_for_parts().1)
}

/// Adds the 401 every route answers without the token (said once here, not on each handler).
fn with_unauthorized(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let unauthorized = ResponseBuilder::new()
        .description("missing or wrong admin token")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            operation
                .responses
                .responses
                .entry("401".into())
                .or_insert_with(|| unauthorized.clone().into());
        }
    }
    document
}

/// The admin routes, or None when no admin token is configured (the API is off).
pub fn router(app: Arc<App>) -> Option<Router<Arc<App>>> {
    app.config.server.admin_token.as_ref()?;
    let limit = app.config.server.admin_max_upload_bytes;
    let (router, document) = api().split_for_parts();
    let document = with_unauthorized(document);
    // Rendered once: the document does not change while the host runs.
    let document = match document.to_json() {
        Ok(json) => Rendered(Arc::from(json)),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the admin API's OpenAPI document");
            Rendered(Arc::from("{}"))
        }
    };
    Some(
        router
            .layer(Extension(document))
            .layer(DefaultBodyLimit::max(limit))
            .layer(middleware::from_fn_with_state(app, authorize)),
    )
}

/// The document as served.
#[derive(Clone)]
struct Rendered(Arc<str>);

/// This document (OpenAPI 3.1, JSON).
#[utoipa::path(get, path = "/admin/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
async fn openapi_json(Extension(Rendered(json)): Extension<Rendered>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
        .into_response()
}

/// Lets a request through only with the right bearer token.
async fn authorize(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(expected) = &app.config.server.admin_token else {
        return ApiError::not_found("the admin API is off").into_response();
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !expected.matches(given) {
        tracing::warn!(path = %request.uri().path(), "admin request with a missing or wrong token");
        return ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong admin token")
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every route of the module docs, as `METHOD path`.
    const ROUTES: &[&str] = &[
        "GET /admin/connectors",
        "GET /admin/connectors/{id}",
        "POST /admin/connectors/versions",
        "POST /admin/connectors/{id}/versions",
        "POST /admin/connectors/{id}/versions/{hash}/activate",
        "POST /admin/connectors/{id}/rollback",
        "DELETE /admin/connectors/{id}/versions/{hash}",
        "GET /admin/integrations",
        "POST /admin/integrations",
        "GET /admin/integrations/{id}",
        "PATCH /admin/integrations/{id}",
        "DELETE /admin/integrations/{id}",
        "POST /admin/integrations/{id}/enable",
        "POST /admin/integrations/{id}/disable",
        "POST /admin/integrations/{id}/resume",
        "GET /admin/integrations/{id}/gem-keys",
        "POST /admin/integrations/{id}/gem-keys",
        "DELETE /admin/integrations/{id}/gem-keys/{key_id}",
        "POST /admin/integrations/{id}/lever/connect",
        "GET /admin/integrations/{id}/lever/connect",
        "POST /admin/integrations/{id}/lever/disconnect",
        "DELETE /admin/integrations/{id}/lever/disconnect",
        "GET /admin/events",
        "GET /admin/events/{id}",
        "DELETE /admin/events/{id}",
        "POST /admin/events/{id}/retry",
        "GET /admin/replays",
        "POST /admin/replays",
        "GET /admin/replays/{id}",
        "POST /admin/replays/{id}/cancel",
        "POST /admin/integrations/{id}/replay",
        "GET /admin/integrations/{id}/timeline",
        "GET /admin/stats",
        "GET /admin/integrations/{id}/stages",
        "GET /admin/integrations/{id}/postings",
        "GET /admin/integrations/{id}/packages",
        "GET /admin/openapi.json",
    ];

    #[test]
    fn the_document_lists_exactly_the_routes_the_router_serves() {
        let doc = serde_json::to_value(document()).unwrap_or_default();
        let mut listed = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                listed.insert(format!("{} {path}", method.to_uppercase()));
                // Every operation says it needs the token.
                assert_eq!(
                    op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path}"
                );
            }
        }
        let expected: BTreeSet<String> = ROUTES.iter().map(|r| r.to_string()).collect();
        assert_eq!(listed, expected);
        assert!(doc["components"]["securitySchemes"]["admin_token"].is_object());
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    }
}
