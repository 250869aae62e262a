//! The API's routes.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};

use crate::error::ApiError;
use crate::state::AppState;
use crate::{health, registry, tenants, uploads};

/// Builds the router of every route the API serves.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.max_body_bytes;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
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
        .route("/v1/uploads", post(uploads::initiate))
        .route("/v1/uploads/{upload_id}", delete(uploads::delete))
        .route("/v1/uploads/{upload_id}/parts", get(uploads::part_urls))
        .route(
            "/v1/uploads/{upload_id}/parts/{part_number}",
            put(uploads::confirm_part),
        )
        .route("/v1/uploads/{upload_id}/complete", post(uploads::complete))
        .merge(registry::router())
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
        .with_state(state)
}
