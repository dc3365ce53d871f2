//! The HTTP API's route table and its OpenAPI 3.1 document, built from the
//! same list so they cannot disagree: each line of [`router`] mounts a
//! handler *and* adds its `#[utoipa::path]` annotation to the document.
//! Adding a route = annotate the handler, add one `.routes(routes!(..))`
//! line here. `tests/openapi.rs` fails on any `/api/v1` route mounted
//! elsewhere (with a plain `.route`), i.e. missing from the document.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{admin, documents, events, health};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard HTTP API",
        description = "Server-to-server API of Switchyard: publishing, history, telemetry, \
                       documents, health and administration. Publishing routes take a key of \
                       `API_KEYS`, admin routes one of `ADMIN_API_KEYS`, as `Authorization: Bearer`. \
                       Every refusal is `{ error: { code, message, details? } }`.",
        license(name = "MIT")
    ),
    modifiers(&Security),
    // Reached only through the untagged one-or-batch bodies, which do not
    // register what they wrap.
    components(schemas(super::schema::ErrorReply, super::schema::EventIn, super::schema::Reading)),
    tags(
        (name = "health", description = "Liveness, readiness, the node's state"),
        (name = "events", description = "Publishing, history and telemetry (API_KEYS)"),
        (name = "documents", description = "Last-write-wins documents (API_KEYS)"),
        (name = "admin", description = "Cluster-wide administration (ADMIN_API_KEYS)"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(what.to_string()))
                    .build(),
            )
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("apiKey", bearer("A key of API_KEYS"));
        components.add_security_scheme("adminKey", bearer("A key of ADMIN_API_KEYS"));
    }
}

/// Every HTTP route with its documentation: the one place routes are added.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(health::websocket))
        .routes(routes!(events::publish, events::history))
        .routes(routes!(events::telemetry))
        .routes(routes!(documents::get, documents::patch))
        .routes(routes!(documents::history))
        .routes(routes!(admin::connections))
        .routes(routes!(admin::kick))
        .routes(routes!(admin::stats))
        .routes(routes!(openapi_json))
}

/// The document (built once).
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| router().into_openapi())
}

/// This document, OpenAPI 3.1.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", operation_id = "openapiDocument", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| document().to_pretty_json().unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], body.as_str())
}
