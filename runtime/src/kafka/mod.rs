//! Kafka plumbing: an idempotent producer whose send returns only after the broker
//! acknowledged, an at-least-once consumer loop, and start-up connectivity checks.

mod consumer;
mod headers;
mod partitioner;
mod producer;

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

pub use consumer::{
    BatchHandler, BatchSettings, ConsumerSettings, HandleError, Handler, Message,
    run_batch_consumer, run_consumer,
};
pub(crate) use headers::adopt_parent;
pub use headers::{EVENT_TYPE_HEADER, TENANT_ID_HEADER, TRACEPARENT_HEADER};
pub use partitioner::{murmur2, partition_for};
pub use producer::{Delivery, Producer};

/// Why a Kafka operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka rejected the client configuration.
    #[error("kafka client setup failed: {0}")]
    Setup(#[source] rdkafka::error::KafkaError),
    /// The cluster could not be reached within the connect timeout.
    #[error("kafka at {brokers} is unreachable: {source}")]
    Unreachable {
        /// The bootstrap list that was tried.
        brokers: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A required topic does not exist on the cluster.
    #[error("kafka topic {0} does not exist (./devstack up creates the declared topics)")]
    MissingTopic(String),
    /// The broker did not acknowledge a record.
    #[error("kafka delivery to {topic} failed: {source}")]
    Delivery {
        /// Target topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// An administrative request (create or delete a topic) was refused.
    #[error("kafka admin request failed: {0}")]
    Admin(String),
    /// A blocking helper task panicked or was cancelled.
    #[error("kafka background task failed: {0}")]
    Task(String),
    /// Consuming failed in a way the loop cannot recover from.
    #[error("kafka consumer failed: {0}")]
    Consume(#[source] rdkafka::error::KafkaError),
}

/// The settings every client shares (bootstrap list, client id, log level).
pub fn base_client_config(config: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", client_id)
        // librdkafka logs connection refusals at error level forever; our own checks report
        // unreachable brokers once, clearly.
        .set("log_level", "3");
    client
}
