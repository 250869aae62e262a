//! Trace context of HTTP requests. A request about an upload (`/v1/uploads/{id}/...`, and
//! Companion's `/s3/multipart/{id}/...` with or without the `/v1/uppy/{token}` prefix) runs
//! in that upload's trace, whose id is the upload id (see
//! `tributary_runtime::telemetry::join_upload_trace`), so initiation, part confirmations,
//! completion and every processor's work on the upload form one trace. Other requests
//! continue the caller's `traceparent`, or start a trace.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;
use tributary_runtime::telemetry;

/// Middleware: runs the request inside an `http.request` span in the right trace.
pub async fn request_span(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let span = tracing::info_span!(
        "http.request",
        method = %request.method(),
        route = route_of(path),
    );
    let joined = upload_of(path).is_some_and(|id| telemetry::join_upload_trace(&span, id));
    if !joined
        && let Some(traceparent) = request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
    {
        telemetry::adopt_traceparent(&span, traceparent);
    }
    next.run(request).instrument(span).await
}

/// A span for work on a new upload whose id the handler just chose (initiation).
pub fn upload_span(route: &'static str, upload_id: &str) -> tracing::Span {
    let span = tracing::info_span!("http.request", route, upload_id);
    telemetry::join_upload_trace(&span, upload_id);
    span
}

/// The upload id of `/v1/uploads/{id}[/...]`, `/s3/multipart/{id}[/...]` and
/// `/v1/uppy/{token}/s3/multipart/{id}[/...]`.
fn upload_of(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/v1/uploads/")
        .or_else(|| path.strip_prefix("/s3/multipart/"))
        .or_else(|| {
            let after_token = path.strip_prefix("/v1/uppy/")?.split_once('/')?.1;
            after_token.strip_prefix("s3/multipart/")
        })?;
    let id = rest.split('/').next()?;
    (!id.is_empty()).then_some(id)
}

/// The route template of `path` for the span (ids replaced, so spans group by route).
fn route_of(path: &str) -> &'static str {
    match path
        .strip_prefix("/v1/uploads/")
        .map(|r| r.split('/').count())
    {
        Some(1) => "/v1/uploads/{id}",
        Some(2) if path.ends_with("/complete") => "/v1/uploads/{id}/complete",
        Some(2) => "/v1/uploads/{id}/parts",
        Some(_) => "/v1/uploads/{id}/parts/{n}",
        None if path == "/v1/uploads" => "/v1/uploads",
        None if path.starts_with("/v1/admin/") => "/v1/admin/...",
        None if path.starts_with("/v1/uppy/") || path.starts_with("/s3/") => "/s3/multipart...",
        None => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_paths_name_their_upload() {
        assert_eq!(upload_of("/v1/uploads/abc/parts/3"), Some("abc"));
        assert_eq!(upload_of("/v1/uploads/abc"), Some("abc"));
        assert_eq!(upload_of("/v1/uploads"), None);
        assert_eq!(upload_of("/v1/uploads/"), None);
        assert_eq!(upload_of("/s3/multipart/abc/3"), Some("abc"));
        assert_eq!(upload_of("/s3/multipart/abc/complete"), Some("abc"));
        assert_eq!(upload_of("/v1/uppy/tok.en/s3/multipart/abc"), Some("abc"));
        assert_eq!(upload_of("/s3/multipart"), None);
        assert_eq!(upload_of("/v1/uppy/tok.en/s3/multipart"), None);
        assert_eq!(upload_of("/v1/uppy/tok.en/s3/params"), None);
        assert_eq!(
            route_of("/v1/uploads/abc/parts/3"),
            "/v1/uploads/{id}/parts/{n}"
        );
        assert_eq!(
            route_of("/v1/uploads/abc/complete"),
            "/v1/uploads/{id}/complete"
        );
        assert_eq!(route_of("/healthz"), "other");
    }
}
