//! The at-least-once consumer loop.
//!
//! A record's offset is stored only after its handler succeeded (librdkafka commits stored
//! offsets in the background and on shutdown), so a crash at any moment replays the record
//! instead of losing it. Handlers must therefore be idempotent. Records of one partition are
//! handled one at a time, in order.

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{KafkaError, Producer, StreamConsumer, base_client_config, create, headers};
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
    let consumer: StreamConsumer = create(&group_member(kafka, settings), kafka)?;
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(KafkaError::Consume)?;
    tracing::info!(group = %settings.group_id, topics = ?settings.topics, "consumer started");

    let group = settings.group_id.clone();
    let consumer = std::sync::Arc::new(consumer);
    tokio::spawn(report_lag(
        consumer.clone(),
        group.clone(),
        shutdown.clone(),
    ));
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

/// Client settings of a consumer-group member that stores offsets by hand, after its
/// handler succeeded (librdkafka commits stored offsets every second and on shutdown).
fn group_member(kafka: &KafkaConfig, settings: &ConsumerSettings) -> rdkafka::ClientConfig {
    let mut config = base_client_config(kafka, &settings.client_id);
    config
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", settings.auto_offset_reset)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    config
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

/// Handles records in batches: everything one poll burst returned, across partitions, each
/// partition's records in log order. Implementations must be idempotent (a failed batch is
/// retried whole, and a crash redelivers everything not yet committed).
pub trait BatchHandler: Send {
    /// Applies the batch. `Ok` carries the records that can never be handled (index into
    /// `messages` and reason): they go to the dead-letter topic, the rest counts as done.
    fn handle_batch(
        &mut self,
        messages: &[Message],
    ) -> impl Future<Output = Result<Vec<(usize, String)>, HandleError>> + Send;
}

/// How a batch consumer gathers records.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Most records per batch.
    pub max_records: usize,
    /// How long to wait for more records after the first one of a batch.
    pub max_wait: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_records: 2000,
            max_wait: Duration::from_millis(5),
        }
    }
}

/// Like [`run_consumer`], for handlers that gain from applying many records at once (the
/// projector). A batch is retried whole on a retryable error (the partitions wait, nothing is
/// skipped); offsets are stored per partition after the batch succeeded. The consumer's lag
/// per partition is exported as `tributary_consumer_lag`.
pub async fn run_batch_consumer<H: BatchHandler>(
    kafka: &KafkaConfig,
    settings: &ConsumerSettings,
    batching: BatchSettings,
    dead_letters: &Producer,
    mut handler: H,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let mut client = group_member(kafka, settings);
    // Bigger fetches: a batch consumer wants many records per poll.
    client
        .set("fetch.min.bytes", "1")
        .set("queued.min.messages", "20000");
    let consumer: StreamConsumer = create(&client, kafka)?;
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(KafkaError::Consume)?;
    let consumer = std::sync::Arc::new(consumer);
    let group = settings.group_id.clone();
    tokio::spawn(report_lag(
        consumer.clone(),
        group.clone(),
        shutdown.clone(),
    ));
    tracing::info!(group = %group, topics = ?settings.topics, "batch consumer started");

    'consume: loop {
        let mut batch = Vec::with_capacity(batching.max_records);
        let first = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            received = consumer.recv() => received,
        };
        match first {
            Ok(borrowed) => batch.push(owned(&borrowed)),
            Err(error) => {
                tracing::warn!(%error, group = %group, "kafka receive error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        let deadline = tokio::time::Instant::now() + batching.max_wait;
        while batch.len() < batching.max_records {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(borrowed)) => batch.push(owned(&borrowed)),
                _ => break,
            }
        }
        // One span per traced record, continuing the producer's trace, open while its batch
        // is handled: a batch spans many traces, so no single span could carry them all.
        let _record_spans: Vec<tracing::Span> = if crate::telemetry::exporting() {
            batch
                .iter()
                .filter(|m| m.header(headers::TRACEPARENT_HEADER).is_some())
                .map(|message| {
                    let span = tracing::info_span!(
                        "kafka.consume",
                        group = %group,
                        topic = %message.topic,
                        partition = message.partition,
                        offset = message.offset,
                    );
                    headers::adopt_parent(&span, &message.headers);
                    span
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut backoff = settings.retry_backoff;
        loop {
            let started = Instant::now();
            let outcome = handler.handle_batch(&batch).await;
            metrics::histogram!("tributary_consumer_batch_seconds", "group" => group.clone())
                .record(started.elapsed().as_secs_f64());
            let reason = match outcome {
                Ok(poisoned) => {
                    let mut failed = None;
                    for (index, reason) in &poisoned {
                        let Some(message) = batch.get(*index) else {
                            continue;
                        };
                        tracing::warn!(%reason, offset = message.offset, "poison record, sending to the dead-letter topic");
                        if let Err(error) = dead_letter(dead_letters, &group, message, reason).await
                        {
                            failed = Some(format!("dead-letter delivery failed: {error}"));
                            break;
                        }
                        count(&group, &message.topic, "dead_lettered");
                    }
                    match failed {
                        None => break,
                        Some(reason) => reason,
                    }
                }
                Err(HandleError::Poison(reason)) | Err(HandleError::Retry(reason)) => reason,
            };
            count(&group, &batch[0].topic, "retry");
            tracing::warn!(error = %reason, records = batch.len(), backoff_ms = backoff.as_millis() as u64, "batch failed, retrying");
            tokio::select! {
                () = shutdown.cancelled() => break 'consume,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(settings.max_retry_backoff);
        }
        metrics::counter!("tributary_consumer_messages_total", "group" => group.clone(), "topic" => batch[0].topic.clone(), "outcome" => "ok")
            .increment(batch.len() as u64);
        let mut next: std::collections::BTreeMap<(String, i32), i64> = Default::default();
        for message in &batch {
            let entry = next
                .entry((message.topic.clone(), message.partition))
                .or_default();
            *entry = (*entry).max(message.offset + 1);
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            offsets
                .add_partition_offset(&topic, partition, Offset::Offset(offset))
                .map_err(KafkaError::Consume)?;
        }
        consumer
            .store_offsets(&offsets)
            .map_err(KafkaError::Consume)?;
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(())
        | Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        )) => {}
        Err(error) => {
            tracing::warn!(%error, "final offset commit failed; records will be redelivered")
        }
    }
    tracing::info!(group = %group, "batch consumer stopped");
    Ok(())
}

fn owned(borrowed: &rdkafka::message::BorrowedMessage<'_>) -> Message {
    Message {
        topic: borrowed.topic().to_string(),
        partition: borrowed.partition(),
        offset: borrowed.offset(),
        key: borrowed.key().map(<[u8]>::to_vec),
        payload: borrowed.payload().map(<[u8]>::to_vec),
        headers: headers::collect(borrowed.headers()),
    }
}

/// Every few seconds (for every consumer, single-record and batch): end of each assigned
/// partition minus the consumer's position, as the gauge
/// `tributary_consumer_lag{group, topic, partition}`.
async fn report_lag(
    consumer: std::sync::Arc<StreamConsumer>,
    group: String,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let consumer = consumer.clone();
        let lags = tokio::task::spawn_blocking(move || {
            let mut lags = Vec::new();
            let Ok(positions) = consumer.position() else {
                return lags;
            };
            for element in positions.elements() {
                let Offset::Offset(position) = element.offset() else {
                    continue;
                };
                if let Ok((_, high)) = consumer.fetch_watermarks(
                    element.topic(),
                    element.partition(),
                    Duration::from_secs(2),
                ) {
                    lags.push((
                        element.topic().to_string(),
                        element.partition(),
                        (high - position).max(0),
                    ));
                }
            }
            lags
        })
        .await
        .unwrap_or_default();
        for (topic, partition, lag) in lags {
            metrics::gauge!("tributary_consumer_lag", "group" => group.clone(), "topic" => topic, "partition" => partition.to_string())
                .set(lag as f64);
        }
    }
}
