//! Kafka record headers: event type, tenant and W3C trace context.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Header naming the event's Avro record (e.g. `UploadInitiated`), so tools can filter
/// without decoding.
pub use tributary_schemas::headers::EVENT_TYPE as EVENT_TYPE_HEADER;
/// Header carrying the tenant id.
pub use tributary_schemas::headers::TENANT_ID as TENANT_ID_HEADER;
/// W3C trace context header.
pub use tributary_schemas::headers::TRACEPARENT as TRACEPARENT_HEADER;

/// Builds the record headers: `extra` plus the current span's `traceparent`.
pub(crate) fn outgoing(extra: &[(&str, &[u8])]) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(extra.len() + 1);
    for (key, value) in extra {
        headers = headers.insert(Header {
            key,
            value: Some(*value),
        });
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut carrier);
    if let Some(traceparent) = carrier.get(TRACEPARENT_HEADER) {
        headers = headers.insert(Header {
            key: TRACEPARENT_HEADER,
            value: Some(traceparent.as_bytes()),
        });
    }
    headers
}

/// Copies a record's headers into owned pairs (a header without a value becomes empty).
pub(crate) fn collect<H: Headers>(headers: Option<&H>) -> Vec<(String, Vec<u8>)> {
    headers
        .map(|h| {
            h.iter()
                .map(|header| {
                    (
                        header.key.to_string(),
                        header.value.unwrap_or_default().to_vec(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Makes `span` a child of the trace named by a `traceparent` header, if there is a valid one.
pub(crate) fn adopt_parent(span: &tracing::Span, headers: &[(String, Vec<u8>)]) {
    let Some((_, value)) = headers.iter().find(|(k, _)| k == TRACEPARENT_HEADER) else {
        return;
    };
    let Ok(traceparent) = std::str::from_utf8(value) else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT_HEADER.to_string(), traceparent.to_string())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    // A malformed header yields an empty context; the span then simply starts a new trace.
    let _ = span.set_parent(parent);
}
