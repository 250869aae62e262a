//! The projector's consumer: every lifecycle event applied to the read models, at least once,
//! in log order per partition.

use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use tokio_util::sync::CancellationToken;
use tributary_runtime::events::load_catalog;
use tributary_runtime::kafka::{
    ConsumerSettings, HandleError, Handler, Message, Producer, run_consumer,
};
use tributary_runtime::{Config, cql, topics};
use tributary_schemas::SchemaCatalog;

use crate::ProjectionError;
use crate::fold::{LogPosition, Writer};

/// Consumer group of the live projector.
pub const GROUP: &str = "tributary-projector";

/// Connects, applies migrations and projects until `stop` is cancelled.
pub async fn run(
    config: &Config,
    group: &str,
    stop: CancellationToken,
) -> Result<(), ProjectionError> {
    let session = Arc::new(cql::connect(&config.cql).await?);
    crate::ensure_schema(
        &session,
        &config.cql.keyspace,
        config.cql.replication_factor,
    )
    .await?;
    let writer = Writer::prepare(&session, &config.cql.keyspace).await?;
    let dead_letters = Producer::new(&config.kafka, "projector").map_err(ProjectionError::kafka)?;
    dead_letters
        .check_cluster(
            &config.kafka.brokers,
            &[topics::LIFECYCLE],
            Duration::from_millis(config.kafka.connect_timeout_ms),
        )
        .await
        .map_err(ProjectionError::kafka)?;
    let catalog = load_catalog(&config.kafka)
        .await
        .map_err(ProjectionError::kafka)?;
    let handler = Projector {
        session,
        writer,
        catalog,
    };
    let settings = ConsumerSettings::new(group, &[topics::LIFECYCLE]);
    tracing::info!(group, "projector running");
    let outcome = run_consumer(&config.kafka, &settings, &dead_letters, handler, stop).await;
    dead_letters.flush(Duration::from_secs(5));
    outcome.map_err(ProjectionError::kafka)
}

/// Applies each lifecycle event to the read models.
struct Projector {
    session: Arc<Session>,
    writer: Writer,
    catalog: Arc<SchemaCatalog>,
}

impl Handler for Projector {
    async fn handle(&mut self, message: &Message) -> Result<(), HandleError> {
        let event = match tributary_runtime::events::decode(&self.catalog, message).await {
            Ok(event) => event,
            // Undecodable events go to the dead-letter topic; the log moves on.
            Err(error) => return Err(HandleError::Poison(error.to_string())),
        };
        let at = LogPosition {
            partition: message.partition,
            offset: message.offset,
        };
        self.writer
            .apply(&self.session, &event, at)
            .await
            .map_err(|e| HandleError::Retry(e.to_string()))?;
        metrics::counter!("tributary_projector_events_total", "event_type" => event.event_type())
            .increment(1);
        Ok(())
    }
}
