//! The realtime bridge: Tributary's lifecycle and progress events, fanned out to browsers over
//! Server-Sent Events.
//!
//! - [`settings`]: the `[bridge]` tunables and the shared token secret.
//! - [`log`]: the live Kafka reader and the catch-up reads of one tenant's partition.
//! - [`hub`]: per-tenant rings of encoded frames, and the reader's positions.
//! - [`window`]: per-partition memory of recent lifecycle records, so most resumes need no
//!   Kafka read.
//! - [`frame`]: SSE encoding, once per event.
//! - [`fanout`]: the writer threads that deliver live frames to idle lean HTTP/1.1 streams
//!   straight to their sockets.
//! - [`session`]: one connection's stream (catch-up, live, heartbeat, reauth, reset).
//! - [`routes`], [`auth`], [`error`]: the HTTP surface; [`h1`]: the lean HTTP/1.1 path of
//!   the stream routes.
//! - [`partition`]: which lifecycle partition orders a tenant's events.
//!
//! See the crate's README for the scaling model and its limits.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tributary_runtime::Config;
use tributary_runtime::config::KafkaConfig;
use tributary_runtime::events::{CatalogLoadError, load_catalog};
use tributary_runtime::kafka::KafkaError;
use tributary_runtime::telemetry::Telemetry;
use tributary_runtime::token::TokenSigner;
use tributary_schemas::SchemaCatalog;

pub mod auth;
pub mod error;
pub mod fanout;
pub mod frame;
pub mod h1;
pub mod hub;
pub mod log;
pub mod routes;
pub mod session;
pub mod settings;
pub mod window;

pub use settings::{BridgeSettings, Settings};

/// Why the bridge could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The settings are unusable.
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
    /// The schema catalog could not be loaded.
    #[error(transparent)]
    Catalog(#[from] CatalogLoadError),
    /// Kafka could not be reached or read.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The HTTP server failed.
    #[error("http server failed: {0}")]
    Http(#[source] std::io::Error),
    /// A catch-up read got no record for too long.
    #[error("catch-up of lifecycle partition {partition} stalled at offset {offset}")]
    CatchUpTimeout {
        /// Partition read.
        partition: i32,
        /// Offset waited for.
        offset: i64,
    },
    /// The bridge is stopping.
    #[error("the bridge is shutting down")]
    ShuttingDown,
}

/// What every request and stream shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Per-tenant rings and reader positions.
    pub hub: Arc<hub::Hub>,
    /// Decodes events (catch-up reads decode too).
    pub catalog: Arc<SchemaCatalog>,
    /// Where catch-up reads connect.
    pub kafka: Arc<KafkaConfig>,
    /// Tunables and the token secret.
    pub settings: Arc<Settings>,
    /// Verifies browser tokens.
    pub signer: TokenSigner,
    /// Bounds concurrent catch-ups.
    pub catchups: Arc<Semaphore>,
    /// Whether the live reader runs (`/readyz`, and new streams are refused without it).
    pub live: Arc<AtomicBool>,
    /// Metric handles.
    pub metrics: session::Metrics,
    /// Ends every stream on shutdown, so the graceful shutdown does not wait for browsers.
    pub stop: CancellationToken,
}

/// Binds the listener (with `SO_REUSEPORT` when `reuse_port`) after raising the process's
/// open-file limit to its hard limit: every connection is a descriptor. Accepted sockets
/// inherit `send_buffer` bytes of kernel send buffer (0: the kernel's autotuning, up to
/// `tcp_wmem`'s maximum).
pub fn listen(
    addr: std::net::SocketAddr,
    reuse_port: bool,
    send_buffer: usize,
) -> std::io::Result<TcpListener> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    if send_buffer > 0 {
        socket.set_send_buffer_size(u32::try_from(send_buffer).unwrap_or(u32::MAX))?;
    }
    socket.bind(addr)?;
    // A reconnect storm arrives all at once; a deep backlog keeps it from being refused.
    socket.listen(4096)
}

/// Runs the bridge on `listener` until `stop` is cancelled: starts the live reader at the end
/// of the log, then serves the SSE routes, health and metrics.
pub async fn serve(
    config: Config,
    settings: Settings,
    telemetry: Telemetry,
    listener: TcpListener,
    stop: CancellationToken,
) -> Result<(), BridgeError> {
    settings.validate()?;
    let catalog = load_catalog(&config.kafka).await?;
    let (reader, hub) = log::LiveReader::connect(&config.kafka, &settings.bridge).await?;
    // The reader is assigned already: streams opened from now on see everything after it.
    let live = Arc::new(AtomicBool::new(true));
    let reader = tokio::spawn(reader.run(catalog.clone(), hub.clone(), live.clone(), stop.clone()));
    let app = AppState {
        hub,
        catalog,
        kafka: Arc::new(config.kafka.clone()),
        signer: TokenSigner::new(settings.token_secret.as_bytes()),
        catchups: Arc::new(Semaphore::new(settings.bridge.max_concurrent_catchups)),
        settings: Arc::new(settings),
        live,
        metrics: session::Metrics::register(),
        stop: stop.clone(),
    };
    let router = routes::router(app.clone(), &telemetry);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "realtime-bridge listening");
    }
    let served = if app.settings.bridge.lean_http1 {
        let handoff = h1::split(listener, app, stop.clone()).map_err(BridgeError::Http)?;
        axum::serve(handoff, router)
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .await
    } else {
        axum::serve(listener, router)
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .await
    }
    .map_err(BridgeError::Http);
    stop.cancel();
    let _ = reader.await;
    served
}
