//! Avro events on Kafka: publishing (encode, headers, wait for the broker's ack) and decoding
//! consumed records, with schema ids from the embedded manifest or a registry.

use std::sync::Arc;

use tributary_schemas::{DecodeError, EncodeError, Event, SchemaCatalog, registry::RegistryError};

use crate::config::KafkaConfig;
use crate::kafka::{Delivery, EVENT_TYPE_HEADER, KafkaError, Message, Producer, TENANT_ID_HEADER};

/// Why an event could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The event does not fit its schema or envelope rules (a bug in the caller).
    #[error("cannot encode {event_type}: {source}")]
    Encode {
        /// Record name of the event.
        event_type: &'static str,
        /// Encoder's explanation.
        #[source]
        source: EncodeError,
    },
    /// Kafka did not acknowledge the record.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Loads the schema catalog: from `SCHEMA_REGISTRY_URL` when configured, else the manifest
/// compiled into the binary.
pub async fn load_catalog(config: &KafkaConfig) -> Result<Arc<SchemaCatalog>, CatalogLoadError> {
    let catalog = match &config.schema_registry_url {
        Some(url) => SchemaCatalog::from_registry(url).await?,
        None => SchemaCatalog::embedded().map_err(|e| CatalogLoadError::Embedded(e.to_string()))?,
    };
    Ok(Arc::new(catalog))
}

/// Why the schema catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogLoadError {
    /// The registry was unreachable or refused a schema.
    #[error("schema registry: {0}")]
    Registry(#[from] RegistryError),
    /// The embedded manifest is broken (a build problem).
    #[error("embedded schema manifest: {0}")]
    Embedded(String),
}

/// Publishes events to their topic, keyed by their partition key, with `event_type`,
/// `tenant_id` and `traceparent` headers.
#[derive(Clone)]
pub struct EventPublisher {
    /// The idempotent producer.
    producer: Producer,
    /// Schema ids to frame events with.
    catalog: Arc<SchemaCatalog>,
}

impl EventPublisher {
    /// A publisher over `producer` using `catalog`'s ids.
    pub fn new(producer: Producer, catalog: Arc<SchemaCatalog>) -> Self {
        Self { producer, catalog }
    }

    /// Encodes and sends `event`; returns once the broker acknowledged it.
    pub async fn publish(&self, event: &Event) -> Result<Delivery, PublishError> {
        let payload = self
            .catalog
            .encode(event)
            .map_err(|source| PublishError::Encode {
                event_type: event.event_type(),
                source,
            })?;
        let headers: [(&str, &[u8]); 2] = [
            (EVENT_TYPE_HEADER, event.event_type().as_bytes()),
            (TENANT_ID_HEADER, event.meta.tenant_id.as_bytes()),
        ];
        let delivery = self
            .producer
            .send(
                event.topic(),
                event.partition_key().as_bytes(),
                &payload,
                &headers,
            )
            .await?;
        metrics::counter!("tributary_events_published_total", "event_type" => event.event_type())
            .increment(1);
        Ok(delivery)
    }

    /// The underlying producer (for raw sends such as dead letters).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// The catalog used for encoding; consumers decode with it too.
    pub fn catalog(&self) -> &Arc<SchemaCatalog> {
        &self.catalog
    }
}

/// Decodes a consumed record into an event, fetching an unknown writer schema from the
/// registry when one is configured.
pub async fn decode(catalog: &SchemaCatalog, message: &Message) -> Result<Event, DecodeError> {
    let payload = message.payload.as_deref().unwrap_or_default();
    catalog.decode_async(payload).await
}
