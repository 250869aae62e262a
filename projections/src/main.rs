//! `projector`: folds the upload lifecycle log into the ScyllaDB read models.
//!
//! - `projector`: the live projector. Start-up: configuration, telemetry, CQL (migrations),
//!   Kafka; then the at-least-once consumer loop until SIGTERM, with `/healthz` and
//!   `/metrics` on its own port. `TRIBUTARY_PROJECTOR__GROUP` overrides its consumer group.
//! - `projector rebuild [--no-switch]`: replays the log from offset 0 into a new read-model
//!   version, printing progress, and switches readers to it once caught up.
//! - `projector versions`, `projector activate N`, `projector drop-version N`.

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
    let outcome = runtime.block_on(run());
    // Spans still buffered go to the collector before the process ends.
    telemetry::shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("projector: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = Config::load(DEFAULT_LISTEN)?;

    let telemetry = telemetry::init("projector", &config.telemetry)?;
    if let Some(command) = args.first() {
        return admin(command, &args[1..], &config).await;
    }
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
    // A separate deployment (or a test) projects as its own group.
    let group = std::env::var("TRIBUTARY_PROJECTOR__GROUP")
        .unwrap_or_else(|_| projector::GROUP.to_string());
    projector::run(&config, &group, stop).await?;
    Ok(())
}

/// The administrative subcommands.
async fn admin(command: &str, args: &[String], config: &Config) -> anyhow::Result<()> {
    use tributary_projections::versions;
    let base = &config.cql.keyspace;
    let version_arg = || -> anyhow::Result<i32> {
        args.first()
            .and_then(|v| v.parse().ok())
            .context("a version number is required")
    };
    match command {
        "rebuild" => {
            let activate = !args.iter().any(|a| a == "--no-switch");
            projector::rebuild_on_terminal(config, activate).await?;
            Ok(())
        }
        "versions" => {
            let session = tributary_runtime::cql::connect(&config.cql).await?;
            let active = versions::active(&session, base).await?;
            for version in versions::existing(&session, base).await? {
                let marker = if version == active { " (active)" } else { "" };
                println!(
                    "{version}\t{}{marker}",
                    versions::keyspace_of(base, version)
                );
            }
            Ok(())
        }
        "activate" => {
            let to = version_arg()?;
            let session = tributary_runtime::cql::connect(&config.cql).await?;
            let from = versions::active(&session, base).await?;
            anyhow::ensure!(
                versions::existing(&session, base).await?.contains(&to),
                "version {to} does not exist"
            );
            anyhow::ensure!(
                versions::activate(&session, base, from, to).await?,
                "the active version changed meanwhile; try again"
            );
            println!("version {to} active (was {from})");
            Ok(())
        }
        "drop-version" => {
            let version = version_arg()?;
            let session = tributary_runtime::cql::connect(&config.cql).await?;
            versions::drop_version(&session, base, version).await?;
            println!("version {version} dropped");
            Ok(())
        }
        other => anyhow::bail!(
            "unknown command {other:?} (rebuild [--no-switch], versions, activate N, drop-version N)"
        ),
    }
}
