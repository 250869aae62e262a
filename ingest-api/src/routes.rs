//! The API's routes.

use axum::Router;
use axum::routing::get;

use crate::state::AppState;
use crate::{error::ApiError, health, registry};

/// Builds the router of every route the API serves.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(registry::router())
        .merge(state.telemetry.metrics_router())
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}
