//! The projector's consumer: every lifecycle event applied to the read models, at least once,
//! in log order per partition.

use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use tokio_util::sync::CancellationToken;
use tributary_runtime::events::load_catalog;
use tributary_runtime::kafka::{
    BatchHandler, BatchSettings, ConsumerSettings, EVENT_TYPE_HEADER, HandleError, Message,
    Producer, run_batch_consumer,
};
use tributary_runtime::{Config, cql, topics};
use tributary_schemas::{EventType, SchemaCatalog};

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
    let outcome = run_batch_consumer(
        &config.kafka,
        &settings,
        BatchSettings::default(),
        &dead_letters,
        handler,
        stop,
    )
    .await;
    dead_letters.flush(Duration::from_secs(5));
    outcome.map_err(ProjectionError::kafka)
}

/// Batches of CQL writes in flight at once.
const WRITE_CONCURRENCY: usize = 64;

/// Applies lifecycle events to the read models, a consumer batch at a time.
struct Projector {
    session: Arc<Session>,
    writer: Writer,
    catalog: Arc<SchemaCatalog>,
}

impl BatchHandler for Projector {
    async fn handle_batch(
        &mut self,
        messages: &[Message],
    ) -> Result<Vec<(usize, String)>, HandleError> {
        let mut events = Vec::with_capacity(messages.len());
        let mut poisoned = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            // Forward compatibility: a type this build does not know (a newer producer's) is
            // skipped and counted, not treated as poison.
            let named = message
                .header(EVENT_TYPE_HEADER)
                .and_then(|v| std::str::from_utf8(v).ok());
            if let Some(name) = named.filter(|n| EventType::from_name(n).is_none()) {
                metrics::counter!("tributary_projector_unknown_events_total", "event_type" => name.to_string())
                    .increment(1);
                continue;
            }
            match tributary_runtime::events::decode(&self.catalog, message).await {
                Ok(event) => events.push((
                    event,
                    LogPosition {
                        partition: message.partition,
                        offset: message.offset,
                    },
                )),
                // Undecodable events go to the dead-letter topic; the log moves on.
                Err(error) => poisoned.push((index, error.to_string())),
            }
        }
        self.writer
            .apply_batch(&self.session, &events, WRITE_CONCURRENCY)
            .await
            .map_err(|e| HandleError::Retry(e.to_string()))?;
        for (event, _) in &events {
            metrics::counter!("tributary_projector_events_total", "event_type" => event.event_type())
                .increment(1);
        }
        Ok(poisoned)
    }
}
