//! Logs (`tracing`), Prometheus metrics and W3C trace context.
//!
//! Every span gets an OpenTelemetry trace id, so the `traceparent` of a request travels
//! through Kafka headers into every consumer. With `telemetry.otlp_endpoint` set
//! (`TRIBUTARY_TELEMETRY__OTLP_ENDPOINT`), spans are exported in batches over OTLP/HTTP
//! (JSON) to that collector, with the binary's name as `service.name`; [`shutdown`] flushes
//! what is left at exit.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The Prometheus recorder could not be installed, or the span exporter could not be
    /// built.
    #[error("telemetry: {0}")]
    Metrics(String),
}

/// The tracer provider, kept for [`shutdown`] when spans are exported.
static EXPORTING: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether spans are exported (an OTLP endpoint is configured). Per-record spans that only
/// matter to a trace backend are skipped otherwise.
pub fn exporting() -> bool {
    EXPORTING.get().is_some()
}

/// Exports the spans still buffered and stops the exporter; call once at exit (a no-op
/// without an exporter).
pub fn shutdown() {
    if let Some(provider) = EXPORTING.get()
        && let Err(error) = provider.shutdown()
    {
        eprintln!("telemetry: span export at shutdown failed: {error}");
    }
}

/// The traces URL of an OTLP/HTTP collector given by its base URL (or by the full URL).
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// The tracer provider: exporting over OTLP/HTTP when an endpoint is configured.
fn tracer_provider(
    service: &'static str,
    config: &TelemetryConfig,
) -> Result<SdkTracerProvider, String> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok(builder.build());
    };
    use opentelemetry_otlp::{Protocol, WithExportConfig as _};
    let url = traces_url(endpoint);
    // The exporter's blocking HTTP client must not be created on an async worker (binaries
    // call this from inside their runtime): build it on a plain thread.
    let exporter = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpJson)
                    .with_endpoint(url.clone())
                    .with_timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| format!("otlp exporter for {endpoint}: {e}"))
            })
            .join()
            .map_err(|_| format!("otlp exporter for {endpoint}: set-up panicked"))?
    })?;
    let provider = builder.with_batch_exporter(exporter).build();
    let _ = EXPORTING.set(provider.clone());
    Ok(provider)
}

/// Handle to the process-wide telemetry; cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    /// Renders the Prometheus exposition text.
    prometheus: PrometheusHandle,
}

/// Installs logging, tracing and the metrics recorder for `service`. Calling it again (tests
/// start several components in one process, concurrently) returns the handle of the first
/// call.
pub fn init(service: &'static str, config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    static INSTALLED: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    // get_or_init runs the installation once and makes concurrent callers wait for it.
    INSTALLED
        .get_or_init(|| install(service, config))
        .clone()
        .map(|prometheus| Telemetry { prometheus })
        .map_err(TelemetryError::Metrics)
}

fn install(service: &'static str, config: &TelemetryConfig) -> Result<PrometheusHandle, String> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = tracer_provider(service, config)?;
    let tracer = provider.tracer(service);
    opentelemetry::global::set_tracer_provider(provider);

    // The log level filters log output only: spans at info and above always exist for
    // OpenTelemetry, so trace context crosses Kafka even when logging is quieter (log events
    // are not recorded into spans: they stay as cheap as the log level makes them).
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_filter));
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
            metadata.is_span() && *metadata.level() <= tracing::Level::INFO
        }));
    let registry = tracing_subscriber::registry().with(otel);
    // Ignored when a subscriber is already installed (e.g. by a test harness).
    let _ = match config.log_format {
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colours only on a terminal, not in log files.
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
    };

    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| e.to_string())?;
    metrics::gauge!("tributary_build_info", "service" => service, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(prometheus)
}

impl Telemetry {
    /// The current metrics in Prometheus text format.
    pub fn render(&self) -> String {
        self.prometheus.render()
    }

    /// A router serving `GET /metrics`.
    pub fn metrics_router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let handle = self.prometheus.clone();
        Router::new().route(
            "/metrics",
            get(move || {
                let body = handle.render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
            }),
        )
    }
}

/// Puts `span` into the trace of upload `upload_id`: every request and event about one upload
/// shares one trace, whose id is the upload id's 16 bytes (the hex of the UUID without
/// dashes), so the whole life of an upload is one trace, found by its id. The parent is the
/// upload's virtual root span (never exported itself). Returns false, leaving `span` alone,
/// when `upload_id` is not a UUID.
pub fn join_upload_trace(span: &tracing::Span, upload_id: &str) -> bool {
    use opentelemetry::trace::{
        SpanContext, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let Some(bytes) = parse_uuid(upload_id) else {
        return false;
    };
    let root = SpanContext::new(
        TraceId::from_bytes(bytes),
        upload_root_span_id(&bytes),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(root));
    true
}

/// The virtual root span id of an upload's trace: the id's last 8 bytes (never all zero,
/// which is invalid).
fn upload_root_span_id(bytes: &[u8; 16]) -> opentelemetry::trace::SpanId {
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&bytes[8..]);
    if tail == [0; 8] {
        tail[7] = 1;
    }
    opentelemetry::trace::SpanId::from_bytes(tail)
}

/// The 16 bytes of a textual UUID (`8-4-4-4-12` hex digits, or 32 without dashes).
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    if digits.len() != 32 || text.len() > 36 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        bytes[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(bytes)
}

/// Makes `span` a child of the trace named by a W3C `traceparent` value (e.g. an HTTP
/// request's header); a malformed value leaves it a root.
pub fn adopt_traceparent(span: &tracing::Span, traceparent: &str) {
    crate::kafka::adopt_parent(
        span,
        &[(
            crate::kafka::TRACEPARENT_HEADER.to_string(),
            traceparent.as_bytes().to_vec(),
        )],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_is_appended_once() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn upload_ids_are_trace_ids() {
        let bytes = parse_uuid("0196c3b1-aaaa-7bbb-8ccc-dddddddddddd").expect("uuid");
        assert_eq!(
            opentelemetry::trace::TraceId::from_bytes(bytes).to_string(),
            "0196c3b1aaaa7bbb8cccdddddddddddd"
        );
        assert!(parse_uuid("not-a-uuid").is_none());
        assert!(parse_uuid("0196c3b1-aaaa-7bbb-8ccc-ddddddddddd").is_none());
        assert_ne!(
            upload_root_span_id(&[0; 16]),
            opentelemetry::trace::SpanId::INVALID
        );
    }
}
