//! What every processor binary does around its handler: configuration, telemetry, the
//! engines it needs, `/healthz` + `/metrics`, and the at-least-once consumer loop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use scylla::client::session::Session;
use tokio_util::sync::CancellationToken;
use tributary_runtime::events::{EventPublisher, load_catalog};
use tributary_runtime::kafka::{
    ConsumerSettings, HandleError, Handler, Message, Producer, run_consumer,
};
use tributary_runtime::{Config, cql, s3, shutdown, telemetry, topics};
use tributary_schemas::{Event, SchemaCatalog};

use crate::settings::ProcessorSettings;
use crate::store::Store;

/// The engines and settings a processor works with.
#[derive(Clone)]
pub struct Context {
    /// Shared runtime configuration (engines, listener, telemetry).
    pub config: Config,
    /// Processor-specific settings.
    pub settings: ProcessorSettings,
    /// CQL session (the processors' own tables).
    pub session: Arc<Session>,
    /// Prepared statements of the processors' tables.
    pub store: Arc<Store>,
    /// Object storage.
    pub s3: aws_sdk_s3::Client,
    /// Publishes the events a processor emits (and dead letters).
    pub events: EventPublisher,
    /// `service@version`, the `producer` of emitted events.
    pub producer_name: String,
}

impl Context {
    /// Connects to Cassandra (applying migrations), Kafka and storage; fails fast with a
    /// clear message when one is unreachable.
    pub async fn connect(
        service: &str,
        config: Config,
        settings: ProcessorSettings,
    ) -> anyhow::Result<Self> {
        let session = Arc::new(
            cql::connect(&config.cql)
                .await
                .context("cannot reach cassandra")?,
        );
        let store = Store::open(session.clone(), &config.cql)
            .await
            .context("cannot prepare the processors' tables")?;
        let producer =
            Producer::new(&config.kafka, service).context("cannot create a kafka producer")?;
        producer
            .check_cluster(
                &config.kafka.brokers,
                &[topics::LIFECYCLE, topics::MEDIA_JOBS, topics::DEAD_LETTERS],
                Duration::from_millis(config.kafka.connect_timeout_ms),
            )
            .await
            .context("cannot reach kafka")?;
        let catalog = load_catalog(&config.kafka)
            .await
            .context("cannot load the event schemas")?;
        let s3 = s3::client(&config.s3);
        s3::check_bucket(&s3, &config.s3)
            .await
            .context("cannot reach the storage bucket")?;
        Ok(Self {
            events: EventPublisher::new(producer, catalog),
            producer_name: format!("{service}@{}", env!("CARGO_PKG_VERSION")),
            config,
            settings,
            session,
            store: Arc::new(store),
            s3,
        })
    }

    /// The schema catalog events are decoded with.
    pub fn catalog(&self) -> &Arc<SchemaCatalog> {
        self.events.catalog()
    }

    /// Publishes `event` and waits for the broker's ack; a failure is retryable.
    pub async fn publish(&self, event: &Event) -> Result<(), HandleError> {
        self.events
            .publish(event)
            .await
            .map(|_| ())
            .map_err(|e| HandleError::Retry(format!("publish {}: {e}", event.event_type())))
    }

    /// Runs `handler` as consumer group `group` over `topics` until `stop`.
    pub async fn consume<H: Handler>(
        &self,
        group: &str,
        topics: &[&str],
        handler: H,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let settings = ConsumerSettings::new(group, topics);
        tracing::info!(group, ?topics, "consuming");
        let outcome = run_consumer(
            &self.config.kafka,
            &settings,
            self.events.producer(),
            handler,
            stop,
        )
        .await;
        self.events.producer().flush(Duration::from_secs(5));
        outcome.context("consumer failed")
    }
}

/// Decodes a consumed record; an undecodable one is poison (dead-letter topic).
pub async fn decode(catalog: &SchemaCatalog, message: &Message) -> Result<Event, HandleError> {
    tributary_runtime::events::decode(catalog, message)
        .await
        .map_err(|e| HandleError::Poison(format!("undecodable event: {e}")))
}

/// The body of a processor's `main`: runtime, config, telemetry, health endpoints, then
/// `run` until SIGTERM. Errors end the process with one line on stderr and exit code 1.
pub fn main<F, Fut>(service: &'static str, port: u16, run: F) -> ExitCode
where
    F: FnOnce(Context, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{service}: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(start(service, port, run));
    // Spans still buffered go to the collector before the process ends.
    telemetry::shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{service}: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start<F, Fut>(service: &'static str, port: u16, run: F) -> anyhow::Result<()>
where
    F: FnOnce(Context, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let default_listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let figment = Config::figment(default_listen);
    let config = Config::from_figment(figment.clone())?;
    let settings = ProcessorSettings::load(&figment)?;
    let telemetry = telemetry::init(service, &config.telemetry)?;
    let stop = shutdown::on_signal();
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let context = Context::connect(service, config, settings).await?;
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .merge(telemetry.metrics_router());
    let http_stop = stop.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "health endpoint failed");
        }
    });
    run(context, stop).await
}
