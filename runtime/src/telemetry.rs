//! Logs (`tracing`), Prometheus metrics and W3C trace context.
//!
//! Every span gets an OpenTelemetry trace id (no exporter is configured yet, see issue 8), so
//! the `traceparent` of a request travels through Kafka headers into every consumer.

use std::io::IsTerminal;
use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The Prometheus recorder could not be installed.
    #[error("metrics recorder: {0}")]
    Metrics(String),
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
    let provider = SdkTracerProvider::builder().build();
    let tracer = provider.tracer(service);
    opentelemetry::global::set_tracer_provider(provider);

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_filter));
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    // Ignored when a subscriber is already installed (e.g. by a test harness).
    let _ = match config.log_format {
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colours only on a terminal, not in log files.
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
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
