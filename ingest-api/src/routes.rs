//! The API's routes.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::routing::{delete, get, post, put};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;
use crate::state::AppState;
use crate::{health, registry, session, tenants, uploads, web};

/// Builds the router of every route the API serves.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.max_body_bytes;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi))
        .route("/v1/admin/tenants", post(tenants::create_tenant))
        .route("/v1/admin/tenants/{tenant_id}", get(tenants::get_tenant))
        .route(
            "/v1/admin/tenants/{tenant_id}/keys",
            post(tenants::rotate_key),
        )
        .route(
            "/v1/admin/tenants/{tenant_id}/keys/{key_id}",
            delete(tenants::revoke_key),
        )
        .route(
            "/v1/admin/tenants/{tenant_id}/policy",
            put(tenants::set_policy),
        )
        .route("/v1/tokens", post(tenants::create_token))
        .route("/v1/policy", get(tenants::own_policy))
        .route("/v1/session", post(session::create).delete(session::delete))
        .route(
            "/v1/uploads",
            post(uploads::initiate).get(uploads::status::list),
        )
        .route(
            "/v1/uploads/{upload_id}",
            get(uploads::status::status).delete(uploads::delete),
        )
        .route("/v1/uploads/{upload_id}/parts", get(uploads::part_urls))
        .route(
            "/v1/uploads/{upload_id}/parts/{part_number}",
            put(uploads::confirm_part),
        )
        .route("/v1/uploads/{upload_id}/complete", post(uploads::complete))
        .merge(uploads::uppy::routes())
        .nest("/v1/uppy/{token}", uploads::uppy::routes())
        .merge(registry::router())
        .merge(web::router())
        .merge(state.telemetry.metrics_router())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(crate::trace::request_span))
        .layer(cors(&state.settings.cors_origins))
        .with_state(state)
}

/// The public contract, kept in `ingest-api/api/openapi.json`.
const OPENAPI: &str = include_str!("../api/openapi.json");

async fn openapi() -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// CORS for the configured browser origins: the page calls the API directly.
fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        return layer.allow_origin(AllowOrigin::any());
    }
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    layer.allow_origin(AllowOrigin::list(allowed))
}

#[cfg(test)]
mod tests {
    use super::OPENAPI;

    /// Every route this file registers is documented in openapi.json, with its method, and the
    /// document names no route that does not exist.
    #[test]
    fn openapi_documents_exactly_the_routes() {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        let documented = spec["paths"].as_object().expect("paths");
        let source = include_str!("routes.rs");
        let mut registered = Vec::new();
        // Skip this test's own text, which mentions the pattern.
        let router_source = source.split("#[cfg(test)]").next().unwrap_or_default();
        for chunk in router_source.split(".route(").skip(1) {
            let mut quoted = chunk.splitn(3, '"');
            let path = quoted.nth(1).expect("quoted path");
            let rest = quoted.next().unwrap_or_default();
            // The route's handlers, up to the next `.route(`: every `get(`/`post(`/... named.
            let methods: Vec<&str> = ["get", "post", "put", "delete", "patch"]
                .into_iter()
                .filter(|m| {
                    rest.match_indices(&format!("{m}("))
                        .any(|(at, _)| at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric())
                })
                .collect();
            assert!(!methods.is_empty(), "no method found for {path}");
            registered.push(path.to_string());
            let entry = documented
                .get(path)
                .unwrap_or_else(|| panic!("{path} is not in openapi.json"));
            for method in methods {
                assert!(
                    entry.get(method).is_some(),
                    "{method} {path} is not in openapi.json"
                );
            }
        }
        for path in [
            "/metrics",
            "/schemas/ids/{id}",
            "/subjects",
            "/subjects/{subject}/versions",
            "/subjects/{subject}/versions/{version}",
            // uploads::uppy::routes(), merged at the root and nested under /v1/uppy/{token}.
            "/s3/multipart",
            "/s3/multipart/{upload_id}",
            "/s3/multipart/{upload_id}/complete",
            "/s3/multipart/{upload_id}/{part_number}",
            "/s3/params",
        ] {
            registered.push(path.to_string());
        }
        for path in documented.keys() {
            assert!(
                registered.contains(path),
                "openapi.json documents {path}, which is not routed"
            );
        }
    }
}
