//! The read-only subset of the Confluent Schema Registry REST API, served from the schema
//! manifest compiled into the binary, so `kcat -s value=avro -r http://127.0.0.1:8080` and
//! other registry clients decode Tributary's topics without a separate registry.
//!
//! When `SCHEMA_REGISTRY_URL` is configured, ids come from that registry instead and these
//! routes answer 404 pointing there.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tributary_schemas::Manifest;
use tributary_schemas::registry::{CONTENT_TYPE, RegistryErrorBody, SchemaByIdResponse};

use crate::state::AppState;

/// Routes: `/schemas/ids/{id}`, `/subjects`, `/subjects/{subject}/versions[/{version}]`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}/versions", get(versions))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(subject_version),
        )
}

/// A registry-style answer: its own content type and Confluent's error bodies.
fn registry_json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response(),
        Err(error) => {
            tracing::error!(%error, "registry response did not serialize");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn not_found(body: RegistryErrorBody) -> Response {
    registry_json(StatusCode::NOT_FOUND, &body)
}

/// Why the manifest is not served.
enum Unavailable {
    /// Ids come from the configured external registry.
    External(String),
    /// The compiled-in manifest is broken (a build problem).
    Broken,
}

impl IntoResponse for Unavailable {
    fn into_response(self) -> Response {
        match self {
            Self::External(url) => not_found(RegistryErrorBody {
                error_code: 40401,
                message: format!("schemas are served by the configured registry {url}"),
            }),
            Self::Broken => registry_json(
                StatusCode::SERVICE_UNAVAILABLE,
                &RegistryErrorBody {
                    error_code: 50001,
                    message: "schema manifest unavailable".into(),
                },
            ),
        }
    }
}

/// The manifest to serve.
fn manifest(state: &AppState) -> Result<&'static Manifest, Unavailable> {
    if let Some(url) = &state.config.kafka.schema_registry_url {
        return Err(Unavailable::External(url.clone()));
    }
    Manifest::embedded().map_err(|error| {
        tracing::error!(%error, "embedded schema manifest unusable");
        Unavailable::Broken
    })
}

async fn schema_by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Unavailable> {
    let manifest = manifest(&state)?;
    Ok(
        match id.parse::<u32>().ok().and_then(|id| manifest.by_id(id)) {
            Some(version) => registry_json(
                StatusCode::OK,
                &SchemaByIdResponse {
                    schema: version.schema.clone(),
                    schema_type: None,
                },
            ),
            None => not_found(RegistryErrorBody::schema_not_found(&id)),
        },
    )
}

async fn subjects(State(state): State<AppState>) -> Result<Response, Unavailable> {
    Ok(registry_json(StatusCode::OK, &manifest(&state)?.subjects()))
}

async fn versions(
    State(state): State<AppState>,
    Path(subject): Path<String>,
) -> Result<Response, Unavailable> {
    Ok(match manifest(&state)?.versions(&subject) {
        Some(versions) => registry_json(StatusCode::OK, &versions),
        None => not_found(RegistryErrorBody::subject_not_found(&subject)),
    })
}

async fn subject_version(
    State(state): State<AppState>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, Unavailable> {
    let manifest = manifest(&state)?;
    if manifest.versions(&subject).is_none() {
        return Ok(not_found(RegistryErrorBody::subject_not_found(&subject)));
    }
    Ok(match manifest.by_subject_version_str(&subject, &version) {
        Some(found) => registry_json(StatusCode::OK, found),
        None => not_found(RegistryErrorBody::version_not_found(&version)),
    })
}
