//! `projector`: folds the upload lifecycle log into the ScyllaDB read models.
//!
//! Start-up: configuration, telemetry, CQL (migrations), Kafka; then the at-least-once
//! consumer loop until SIGTERM, with `/healthz` and `/metrics` on its own port.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use tributary_projections::projector;
use tributary_runtime::{Config, shutdown, telemetry};

/// Where `/healthz` and `/metrics` are served unless `TRIBUTARY_HTTP__LISTEN` says otherwise.
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8082);

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("projector: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("projector: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let config = Config::load(DEFAULT_LISTEN)?;
    let telemetry = telemetry::init("projector", &config.telemetry)?;
    let stop = shutdown::on_signal();
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .merge(telemetry.metrics_router());
    let http_stop = stop.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "projector http server failed");
        }
    });
    projector::run(&config, projector::GROUP, stop).await?;
    Ok(())
}
