//! The at-least-once consumer loop.
//!
//! A record's offset is stored only after its handler succeeded (librdkafka commits stored
//! offsets in the background and on shutdown), so a crash at any moment replays the record
//! instead of losing it. Handlers must therefore be idempotent. Records of one partition are
//! handled one at a time, in order.

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{KafkaError, Producer, base_client_config, headers};
use crate::config::KafkaConfig;
use crate::topics::DEAD_LETTERS;

/// One consumed record, owned so handlers can keep parts of it.
#[derive(Debug, Clone)]
pub struct Message {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Record key, if any.
    pub key: Option<Vec<u8>>,
    /// Record value; `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    /// Record headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Message {
    /// The first header named `key`.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}

/// What a handler reports when it could not finish a record.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// A dependency failed (database down, timeout): the same record is retried with backoff
    /// until it succeeds or the consumer shuts down. Nothing is skipped.
    #[error("retryable: {0}")]
    Retry(String),
    /// The record itself can never be handled (undecodable, invalid): it goes to the
    /// dead-letter topic with the reason in its headers, and the loop moves on.
    #[error("poison: {0}")]
    Poison(String),
}

/// Handles one record at a time. Implementations must be idempotent: after a crash, records
/// whose effects were applied but whose offsets were not yet committed are delivered again.
pub trait Handler: Send {
    /// Applies the record's effects.
    fn handle(&mut self, message: &Message)
    -> impl Future<Output = Result<(), HandleError>> + Send;
}

/// Which topics a consumer reads, as which group.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Consumer group; each processor binary has its own.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// `client.id` reported to the broker.
    pub client_id: String,
    /// Where a group without committed offsets starts (`earliest` or `latest`).
    pub auto_offset_reset: &'static str,
    /// First delay after a retryable failure; doubled up to `max_retry_backoff`.
    pub retry_backoff: Duration,
    /// Upper bound of the retry delay.
    pub max_retry_backoff: Duration,
}

impl ConsumerSettings {
    /// Settings for `group_id` reading `topics` from the beginning when the group is new.
    pub fn new(group_id: &str, topics: &[&str]) -> Self {
        Self {
            group_id: group_id.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            client_id: group_id.to_string(),
            auto_offset_reset: "earliest",
            retry_backoff: Duration::from_millis(100),
            max_retry_backoff: Duration::from_secs(10),
        }
    }
}

/// Runs the consumer until `shutdown` is cancelled. On shutdown the record being handled is
/// finished, stored offsets are committed synchronously, and the consumer leaves its group.
///
/// Poison records go to the dead-letter topic through `dead_letters` before their offset is
/// stored, so they are never lost either.
pub async fn run_consumer<H: Handler>(
    kafka: &KafkaConfig,
    settings: &ConsumerSettings,
    dead_letters: &Producer,
    mut handler: H,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let consumer: StreamConsumer = base_client_config(kafka, &settings.client_id)
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        // Offsets are stored by hand, after the handler succeeded.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", settings.auto_offset_reset)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .create()
        .map_err(KafkaError::Setup)?;
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(KafkaError::Consume)?;
    tracing::info!(group = %settings.group_id, topics = ?settings.topics, "consumer started");

    let group = settings.group_id.clone();
    loop {
        let borrowed = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            received = consumer.recv() => match received {
                Ok(message) => message,
                Err(error) => {
                    // Transient broker errors surface here; librdkafka reconnects by itself.
                    tracing::warn!(%error, group = %group, "kafka receive error");
                    metrics::counter!("tributary_consumer_receive_errors_total", "group" => group.clone()).increment(1);
                    // A persistent error (e.g. the broker is gone) must not become a hot loop.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let message = Message {
            topic: borrowed.topic().to_string(),
            partition: borrowed.partition(),
            offset: borrowed.offset(),
            key: borrowed.key().map(<[u8]>::to_vec),
            payload: borrowed.payload().map(<[u8]>::to_vec),
            headers: headers::collect(borrowed.headers()),
        };
        let span = tracing::info_span!(
            "kafka.consume",
            group = %group,
            topic = %message.topic,
            partition = message.partition,
            offset = message.offset,
        );
        headers::adopt_parent(&span, &message.headers);
        let finished = handle_until_done(&mut handler, &message, settings, dead_letters, &shutdown)
            .instrument(span)
            .await;
        if !finished {
            // Shut down while retrying: the offset is not stored, the record is redelivered.
            break;
        }
        // The committed offset is the next record to read. (`store_offset` would add one by
        // itself — librdkafka's legacy API — and so skip a record after a crash; an explicit
        // list says exactly what is stored.)
        let mut next = TopicPartitionList::new();
        next.add_partition_offset(
            &message.topic,
            message.partition,
            Offset::Offset(message.offset + 1),
        )
        .map_err(KafkaError::Consume)?;
        consumer.store_offsets(&next).map_err(KafkaError::Consume)?;
    }

    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing was consumed since the last commit.
        Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        )) => {}
        Err(error) => {
            tracing::warn!(%error, "final offset commit failed; records will be redelivered")
        }
    }
    tracing::info!(group = %group, "consumer stopped");
    Ok(())
}

/// Handles one record, retrying retryable failures with backoff. Returns `false` when shutdown
/// interrupted the retries (the record stays unacknowledged).
async fn handle_until_done<H: Handler>(
    handler: &mut H,
    message: &Message,
    settings: &ConsumerSettings,
    dead_letters: &Producer,
    shutdown: &CancellationToken,
) -> bool {
    let group = settings.group_id.as_str();
    let mut backoff = settings.retry_backoff;
    loop {
        let started = Instant::now();
        let outcome = handler.handle(message).await;
        metrics::histogram!("tributary_consumer_handler_seconds", "group" => group.to_string(), "topic" => message.topic.clone())
            .record(started.elapsed().as_secs_f64());
        let error = match outcome {
            Ok(()) => {
                count(group, &message.topic, "ok");
                return true;
            }
            Err(HandleError::Poison(reason)) => {
                tracing::warn!(%reason, "poison record, sending to the dead-letter topic");
                match dead_letter(dead_letters, group, message, &reason).await {
                    Ok(()) => {
                        count(group, &message.topic, "dead_lettered");
                        return true;
                    }
                    Err(error) => format!("dead-letter delivery failed: {error}"),
                }
            }
            Err(HandleError::Retry(reason)) => reason,
        };
        count(group, &message.topic, "retry");
        tracing::warn!(error = %error, backoff_ms = backoff.as_millis() as u64, "handler failed, retrying");
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(settings.max_retry_backoff);
    }
}

fn count(group: &str, topic: &str, outcome: &'static str) {
    metrics::counter!(
        "tributary_consumer_messages_total",
        "group" => group.to_string(),
        "topic" => topic.to_string(),
        "outcome" => outcome
    )
    .increment(1);
}

/// Copies a poison record to the dead-letter topic, keeping key, value and headers and adding
/// where it came from and why it failed.
async fn dead_letter(
    producer: &Producer,
    group: &str,
    message: &Message,
    reason: &str,
) -> Result<(), KafkaError> {
    let partition = message.partition.to_string();
    let offset = message.offset.to_string();
    let mut extra: Vec<(&str, &[u8])> = message
        .headers
        .iter()
        .filter(|(k, _)| k != headers::TRACEPARENT_HEADER)
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    extra.extend([
        ("dlq_error", reason.as_bytes()),
        ("dlq_group", group.as_bytes()),
        ("dlq_topic", message.topic.as_bytes()),
        ("dlq_partition", partition.as_bytes()),
        ("dlq_offset", offset.as_bytes()),
    ]);
    producer
        .send(
            DEAD_LETTERS,
            message.key.as_deref().unwrap_or_default(),
            message.payload.as_deref().unwrap_or_default(),
            &extra,
        )
        .await
        .map(|_| ())
}
