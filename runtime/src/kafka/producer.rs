//! The idempotent producer.

use std::time::Duration;

use rdkafka::producer::FutureRecord;

use super::{FutureProducer, KafkaError, base_client_config, create, headers};
use crate::config::KafkaConfig;

/// Where the broker stored an acknowledged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Partition the record landed in.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

/// A Kafka producer with the settings the design requires: idempotence, `acks=all` and the
/// Java client's partitioner (`murmur2_random`), so a key lands on the same partition whoever
/// produces it. [`Producer::send`] returns only once the broker has acknowledged the record.
#[derive(Clone)]
pub struct Producer {
    /// librdkafka's producer; clones share one client.
    inner: FutureProducer,
    /// Bound on a send, queueing and retries included.
    delivery_timeout: Duration,
}

impl Producer {
    /// Creates the producer (no network traffic yet; see [`super::check_cluster`]).
    pub fn new(config: &KafkaConfig, client_id: &str) -> Result<Self, KafkaError> {
        let mut client = base_client_config(config, client_id);
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("compression.type", "lz4")
            // Callers wait for the ack before answering, so waiting to fill batches costs
            // latency; records queued while a request is in flight are batched anyway.
            .set("linger.ms", "1")
            .set("message.timeout.ms", config.delivery_timeout_ms.to_string());
        let inner: FutureProducer = create(&client, config)?;
        Ok(Self {
            inner,
            delivery_timeout: Duration::from_millis(config.delivery_timeout_ms),
        })
    }

    /// Sends one record and waits for the broker's acknowledgement. The current span's trace
    /// context is added as a `traceparent` header.
    pub async fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        extra_headers: &[(&str, &[u8])],
    ) -> Result<Delivery, KafkaError> {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers::outgoing(extra_headers));
        let started = std::time::Instant::now();
        let result = self.inner.send(record, self.delivery_timeout).await;
        metrics::histogram!("tributary_kafka_produce_seconds", "topic" => topic.to_string())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(delivery) => Ok(Delivery {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((source, _message)) => {
                metrics::counter!("tributary_kafka_produce_errors_total", "topic" => topic.to_string())
                    .increment(1);
                Err(KafkaError::Delivery {
                    topic: topic.to_string(),
                    source,
                })
            }
        }
    }

    /// Fetches cluster metadata within `timeout` and checks that `topics` exist, so a binary
    /// fails at start-up with one clear line instead of retrying silently, and readiness
    /// probes report a lost broker.
    pub async fn check_cluster(
        &self,
        brokers: &str,
        topics: &[&str],
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        use rdkafka::producer::Producer as _;
        let client = self.inner.clone();
        let brokers = brokers.to_string();
        let wanted: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        // fetch_metadata blocks the calling thread, so it runs off the async workers.
        tokio::task::spawn_blocking(move || {
            let metadata = client
                .client()
                .fetch_metadata(None, timeout)
                .map_err(|source| KafkaError::Unreachable { brokers, source })?;
            for topic in wanted {
                if !metadata.topics().iter().any(|t| t.name() == topic) {
                    return Err(KafkaError::MissingTopic(topic));
                }
            }
            Ok(())
        })
        .await
        .map_err(|join| KafkaError::Task(join.to_string()))?
    }

    /// Waits until every queued record has been delivered or failed (used at shutdown).
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer as _;
        if let Err(error) = self.inner.flush(timeout) {
            tracing::warn!(%error, "kafka producer flush incomplete at shutdown");
        }
    }
}
