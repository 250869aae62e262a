//! The HTTP surface: the two SSE routes, `/healthz`, `/readyz` and `/metrics`.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tributary_runtime::telemetry::Telemetry;

use crate::AppState;
use crate::error::HttpError;
use crate::session::{Session, Start};

/// How far before the time in an upload's id its history is looked for, milliseconds: the
/// id is minted before `UploadInitiated` is appended, but clocks of API hosts and brokers
/// differ a little.
const HISTORY_SLACK_MS: i64 = 60_000;

/// Query parameters of the SSE routes (EventSource can set neither headers nor a body).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventsQuery {
    /// The token, when no `Authorization` header can be sent.
    token: Option<String>,
    /// Resume point, when no `Last-Event-ID` header can be sent.
    last_event_id: Option<String>,
}

/// The bridge's routes.
pub fn router(app: AppState, telemetry: &Telemetry) -> Router {
    let streams = Router::new()
        .route("/v1/events", get(tenant_events))
        .route("/v1/uploads/{id}/events", get(upload_events))
        .layer(cors(&app.settings.cors_origins));
    Router::new()
        .merge(streams)
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(ready))
        .with_state(app)
        .merge(telemetry.metrics_router())
}

/// CORS for the configured browser origins: pages on the API's origins open EventSources
/// here, another origin. `Authorization` and `Last-Event-ID` are allowed for fetch-based
/// clients (a native EventSource sends neither cross-origin preflight-worthy header).
pub fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET])
        .allow_headers([
            header::AUTHORIZATION,
            header::CACHE_CONTROL,
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        return layer.allow_origin(AllowOrigin::any());
    }
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    layer.allow_origin(AllowOrigin::list(allowed))
}

async fn ready(State(app): State<AppState>) -> Response {
    if app.live.load(Ordering::SeqCst) {
        axum::Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        HttpError::unavailable("the kafka reader is not running").into_response()
    }
}

/// `GET /v1/events`: every upload of the token's tenant, live (or from `Last-Event-ID`).
async fn tenant_events(
    State(app): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    open(app, &headers, query, None).await
}

/// `GET /v1/uploads/{id}/events`: one upload, its history first (or from `Last-Event-ID`).
async fn upload_events(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let Path(id) = path.map_err(|e| HttpError::bad_request("invalid_path", e.body_text()))?;
    open(app, &headers, query, Some(id)).await
}

async fn open(
    app: AppState,
    headers: &HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
    upload: Option<String>,
) -> Result<Response, HttpError> {
    let session = start(app, headers, query, upload).await?;
    let mut response = Response::new(Body::from_stream(session.into_stream()));
    for (name, value) in STREAM_HEADERS {
        response
            .headers_mut()
            .insert(*name, HeaderValue::from_static(value));
    }
    Ok(response)
}

/// Headers of every stream response. `X-Accel-Buffering`: nginx and similar proxies would
/// otherwise buffer the stream.
pub(crate) const STREAM_HEADERS: &[(&str, &str)] = &[
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
];

/// Checks a stream request (token, ids) and starts its session; shared by the axum routes and
/// the lean HTTP/1.1 path.
pub(crate) async fn start(
    app: AppState,
    headers: &HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
    upload: Option<String>,
) -> Result<Session, HttpError> {
    let Query(query) =
        query.map_err(|e| HttpError::bad_request("invalid_query", e.body_text().to_lowercase()))?;
    let now = tributary_schemas::now_micros() / 1_000_000;
    let claims = crate::auth::authorize(
        &app.signer,
        crate::auth::presented(headers, query.token.as_deref()),
        now,
    )?;
    if !app.live.load(Ordering::SeqCst) {
        return Err(HttpError::unavailable("the kafka reader is not running"));
    }
    let mut after = last_event_id(headers, query.last_event_id.as_deref())?;
    let partition =
        tributary_runtime::kafka::partition_for(claims.tid.as_bytes(), app.hub.partitions());
    let history_expired = match after {
        Some(after) => resume_bound(&app, partition, after).await? == Bound::Expired,
        None => false,
    };
    if let Some(upload) = &upload {
        // Upload ids are UUIDv7s minted by the API; anything else names no upload. Which
        // tenant owns a well-formed id is never looked up: the stream only ever holds the
        // token's tenant's frames, so another tenant's upload is simply an empty stream.
        let id =
            uuid::Uuid::parse_str(upload).map_err(|_| HttpError::not_found("no such upload"))?;
        if after.is_none() {
            after = Some(history_start(&app, &claims.tid, &id).await? - 1);
        }
    }
    Ok(Session::new(
        app,
        Start {
            tenant: claims.tid,
            upload,
            after,
            history_expired,
            expires_at: claims.exp,
            now,
        },
    ))
}

/// Which stream a request path names: `Some(None)` for `/v1/events`, `Some(Some(id))` for
/// `/v1/uploads/{id}/events`, `None` for anything else.
pub(crate) fn stream_route(path: &str) -> Option<Option<String>> {
    if path == "/v1/events" {
        return Some(None);
    }
    let id = path.strip_prefix("/v1/uploads/")?.strip_suffix("/events")?;
    (!id.is_empty() && !id.contains('/')).then(|| Some(id.to_string()))
}

/// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
pub(crate) fn allowed_origin(origins: &[String], origin: &str) -> Option<String> {
    if origins.iter().any(|o| o == "*") {
        return Some("*".to_string());
    }
    origins.iter().find(|o| *o == origin).cloned()
}

/// `Last-Event-ID` (header, as browsers resend it) or `?last_event_id=`: a lifecycle offset.
fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Result<Option<i64>, HttpError> {
    let raw = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(query)
        .map(str::trim)
        .filter(|v| !v.is_empty());
    match raw {
        None => Ok(None),
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|&o| o >= -1)
            .map(Some)
            .ok_or_else(|| {
                HttpError::bad_request(
                    "invalid_last_event_id",
                    "last-event-id must be an event id sent by this stream",
                )
            }),
    }
}

/// Where a client's `Last-Event-ID` lies in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// Everything after it is still there (in the log or the resume window).
    Retained,
    /// Retention deleted records after it: the stream starts with `reset`.
    Expired,
}

/// Checks a client's `Last-Event-ID` (`after`) against the tenant's lifecycle partition.
/// Inside the resume window it is fine without asking Kafka (most resumes). Otherwise the
/// partition's watermarks decide: at or beyond the high watermark the id names no record of
/// this cluster (forged, or from another cluster), a 400 rather than a stream that waits for
/// an offset that may never come; below the low watermark retention deleted what follows it.
async fn resume_bound(app: &AppState, partition: i32, after: i64) -> Result<Bound, HttpError> {
    if app.hub.window().covers(partition, after) {
        return Ok(Bound::Retained);
    }
    let topic = &app.settings.bridge.lifecycle_topic;
    let (low, high) = {
        // A lookup opens a Kafka client, like a catch-up: both share the bound.
        let _permit = app
            .catchups
            .acquire()
            .await
            .map_err(|_| HttpError::unavailable("the bridge is shutting down"))?;
        crate::log::watermarks(&app.kafka, topic, partition)
            .await
            .map_err(|error| {
                tracing::warn!(%error, partition, "cannot read the log's watermarks");
                HttpError::unavailable("the event log is unreachable")
            })?
    };
    if after >= high {
        tracing::info!(
            partition,
            after,
            high,
            "last-event-id beyond the end of the log"
        );
        return Err(HttpError::bad_request(
            "last_event_id_ahead",
            format!(
                "last-event-id {after} is beyond the end of the event log (the next event \
                 will be {high}): it was not sent by this service; reconnect without it"
            ),
        ));
    }
    if after.saturating_add(1) < low {
        return Ok(Bound::Expired);
    }
    Ok(Bound::Retained)
}

/// First offset of the tenant's lifecycle partition that may hold the upload's events: the
/// log position at the time in its UUIDv7 id (minus some slack), bounded in age.
async fn history_start(app: &AppState, tenant: &str, id: &uuid::Uuid) -> Result<i64, HttpError> {
    let now_ms = tributary_schemas::now_micros() / 1000;
    let minted_ms = id
        .get_timestamp()
        .map(|ts| {
            let (secs, nanos) = ts.to_unix();
            i64::try_from(secs).unwrap_or(i64::MAX / 2) * 1000 + i64::from(nanos / 1_000_000)
        })
        .unwrap_or(now_ms);
    let max_age_ms = i64::try_from(
        app.settings
            .bridge
            .history_max_age_secs
            .saturating_mul(1000),
    )
    .unwrap_or(i64::MAX);
    let from_ms = (minted_ms - HISTORY_SLACK_MS).max(now_ms.saturating_sub(max_age_ms));
    let partition =
        tributary_runtime::kafka::partition_for(tenant.as_bytes(), app.hub.partitions());
    // A lookup opens a Kafka client, like a catch-up: both share the bound.
    let _permit = app
        .catchups
        .acquire()
        .await
        .map_err(|_| HttpError::unavailable("the bridge is shutting down"))?;
    let topic = &app.settings.bridge.lifecycle_topic;
    crate::log::offset_at(&app.kafka, topic, partition, from_ms)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "cannot find an upload's history in the log");
            HttpError::unavailable("the event log is unreachable")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_routes() {
        assert_eq!(stream_route("/v1/events"), Some(None));
        assert_eq!(
            stream_route("/v1/uploads/abc/events"),
            Some(Some("abc".to_string()))
        );
        for other in [
            "/v1/uploads//events",
            "/v1/uploads/a/b/events",
            "/healthz",
            "/v1/events/",
        ] {
            assert_eq!(stream_route(other), None, "{other}");
        }
        let origins = vec!["http://a".to_string()];
        assert_eq!(
            allowed_origin(&origins, "http://a").as_deref(),
            Some("http://a")
        );
        assert_eq!(allowed_origin(&origins, "http://b"), None);
        assert_eq!(
            allowed_origin(&["*".to_string()], "http://b").as_deref(),
            Some("*")
        );
    }

    #[test]
    fn last_event_ids_are_offsets() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers, None), Ok(None));
        assert_eq!(last_event_id(&headers, Some("12")), Ok(Some(12)));
        assert!(last_event_id(&headers, Some("abc")).is_err());
        assert!(last_event_id(&headers, Some("-5")).is_err());
        headers.insert("last-event-id", HeaderValue::from_static("7"));
        assert_eq!(last_event_id(&headers, Some("12")), Ok(Some(7)));
    }
}
