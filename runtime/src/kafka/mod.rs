//! Kafka plumbing: an idempotent producer whose send returns only after the broker
//! acknowledged, an at-least-once consumer loop, and start-up connectivity checks.

mod consumer;
mod headers;
mod partitioner;
mod producer;
mod security;

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
pub use security::{KafkaContext, MskIamTokens, OAuthTokenSource};

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

/// The settings every client shares (bootstrap list, client id, log level, TLS and SASL).
/// Create clients with [`KafkaContext::for_config`] (see [`create`]): MSK IAM needs it.
pub fn base_client_config(config: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", client_id)
        // librdkafka logs connection refusals at error level forever; our own checks report
        // unreachable brokers once, clearly.
        .set("log_level", "3");
    security::apply(&mut client, &config.security);
    client
}

/// Creates a client (producer, consumer, admin) from `client` with the context `config`
/// needs, and with its first OAUTHBEARER token in place.
pub fn create<T: KafkaClient>(
    client: &ClientConfig,
    config: &KafkaConfig,
) -> Result<T, KafkaError> {
    let created: T = client
        .create_with_context(KafkaContext::for_config(config))
        .map_err(KafkaError::Setup)?;
    if client.get("sasl.mechanism") == Some("OAUTHBEARER") {
        created.prime();
    }
    Ok(created)
}

/// A client type [`create`] makes. librdkafka hands its token requests to whoever polls the
/// client: producers and stream consumers poll all the time, but a [`BaseConsumer`] used only
/// for metadata or offsets never would, and its requests would wait for a token forever.
pub trait KafkaClient: rdkafka::config::FromClientConfigAndContext<KafkaContext> {
    /// Serves the token request librdkafka queued at creation.
    fn prime(&self) {}
}

impl KafkaClient for BaseConsumer {
    fn prime(&self) {
        // Nothing is assigned yet, so this only serves events (the token request).
        let _ = self.poll(std::time::Duration::ZERO);
    }
}
impl KafkaClient for StreamConsumer {}
impl KafkaClient for FutureProducer {}
impl KafkaClient for rdkafka::admin::AdminClient<KafkaContext> {}

/// A consumer polled by the caller, with Tributary's context.
pub type BaseConsumer = rdkafka::consumer::BaseConsumer<KafkaContext>;
/// An async consumer, with Tributary's context.
pub type StreamConsumer = rdkafka::consumer::StreamConsumer<KafkaContext>;
/// An async producer, with Tributary's context.
pub type FutureProducer = rdkafka::producer::FutureProducer<KafkaContext>;
