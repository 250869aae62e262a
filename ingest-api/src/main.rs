//! `ingest-api`: Tributary's HTTP API.
//!
//! Start-up reads like the table of contents of the service: configuration, telemetry, the
//! three engines (each checked, so a bad endpoint fails here with one clear line), the
//! routes, then serving until SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use tributary_runtime::{Config, shutdown, telemetry};

mod auth;
mod cache;
mod error;
mod health;
mod json;
mod multipart;
mod quota_follower;
mod rate_limit;
mod registry;
mod routes;
mod session;
mod settings;
mod state;
mod store;
mod tenants;
mod trace;
mod uploads;
mod web;

/// mimalloc instead of glibc's malloc: initiation allocates many small, short-lived buffers
/// (JSON, presigned URLs, headers) across worker threads; see docs/BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Where the API listens unless `TRIBUTARY_HTTP__LISTEN` says otherwise.
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ingest-api: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run());
    // Spans still buffered go to the collector before the process ends.
    telemetry::shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, with the whole cause chain: what an operator needs to fix it.
            eprintln!("ingest-api: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let config = Config::load(DEFAULT_LISTEN)?;
    let settings = settings::ApiSettings::load(&Config::figment(DEFAULT_LISTEN))?;
    let telemetry = telemetry::init("ingest-api", &config.telemetry)?;
    let state = state::AppState::connect(&config, settings, telemetry).await?;
    let app = routes::router(state.clone());

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    tracing::info!(addr = %config.http.listen, "ingest-api listening");
    let stop = shutdown::on_signal();
    let follower = tokio::spawn(quota_follower::run(
        state.config.clone(),
        state.store.clone(),
        state.events.clone(),
        stop.clone(),
    ));
    // Readers follow a projections rebuild's switch to a new read-model version.
    let refresher = tokio::spawn({
        let (read, cql, stop) = (state.read.clone(), state.cql.clone(), stop.clone());
        async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(3)) => {}
                }
                match read.refresh(&cql).await {
                    Ok(true) => tracing::info!(version = read.version(), "read models switched"),
                    Ok(false) => {}
                    Err(error) => tracing::debug!(%error, "read-model version check failed"),
                }
            }
        }
    });
    let http_stop = stop.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { http_stop.cancelled().await })
        .await
        .context("http server failed")?;
    stop.cancel();
    let _ = follower.await;
    let _ = refresher.await;
    state.close();
    tracing::info!("ingest-api stopped");
    Ok(())
}
