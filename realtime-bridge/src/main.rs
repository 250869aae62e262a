//! `realtime-bridge`: Tributary's SSE fan-out.
//!
//! Start-up reads like the table of contents of the service: configuration, telemetry, the
//! listener, then serving (Kafka reader + SSE routes) until SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use tributary_realtime_bridge::{Settings, listen, serve};
use tributary_runtime::{Config, shutdown, telemetry};

/// Where the bridge listens unless `TRIBUTARY_HTTP__LISTEN` says otherwise.
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8081);

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("realtime-bridge: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, with the whole cause chain: what an operator needs to fix it.
            eprintln!("realtime-bridge: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let config = Config::load(DEFAULT_LISTEN)?;
    let telemetry = telemetry::init("realtime-bridge", &config.telemetry)?;
    let settings = Settings::load(&Config::figment(DEFAULT_LISTEN))?;
    let listener = listen(
        config.http.listen,
        settings.bridge.reuse_port,
        settings.bridge.socket_send_buffer,
    )
    .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let stop = shutdown::on_signal();
    serve(config, settings, telemetry, listener, stop).await?;
    tracing::info!("realtime-bridge stopped");
    Ok(())
}
