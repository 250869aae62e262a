//! Reading the event log: the live reader every bridge instance runs over all partitions of
//! the lifecycle and progress topics, and the short-lived catch-up reads of one tenant's
//! lifecycle partition that make resumes exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tributary_runtime::config::KafkaConfig;
use tributary_runtime::kafka::{
    BaseConsumer, KafkaError, StreamConsumer, TENANT_ID_HEADER, base_client_config, create,
};
use tributary_schemas::{Event, EventType, SchemaCatalog};

use crate::frame::Frame;
use crate::hub::Hub;
use crate::{BridgeError, BridgeSettings};

/// Client settings of a consumer that is assigned partitions and never joins a group or
/// commits: every bridge instance reads the log for itself.
fn assigned(kafka: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut config = base_client_config(kafka, client_id);
    // librdkafka wants a group id even for assign-only consumers; nothing is ever committed
    // under it, so a per-process name leaves no trace on the cluster.
    config
        .set(
            "group.id",
            format!("realtime-bridge-{}-{client_id}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Latency over batching: a fetch returns as soon as one record is there.
        .set("fetch.wait.max.ms", "100");
    config
}

/// The tenant of a record, from its header, without decoding it.
fn tenant_header<'a>(message: &'a BorrowedMessage<'_>) -> Option<&'a str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == TENANT_ID_HEADER)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

async fn decode(catalog: &SchemaCatalog, message: &BorrowedMessage<'_>) -> Option<Event> {
    let payload = message.payload().unwrap_or_default();
    decode_payload(
        catalog,
        payload,
        message.topic(),
        message.partition(),
        message.offset(),
    )
    .await
}

/// Decodes the Avro `payload` of the record at `offset` of `topic`/`partition` (read from the
/// log, or kept by the resume window); `None`, logged and counted, when it cannot be.
pub(crate) async fn decode_payload(
    catalog: &SchemaCatalog,
    payload: &[u8],
    topic: &str,
    partition: i32,
    offset: i64,
) -> Option<Event> {
    match catalog.decode_async(payload).await {
        Ok(event) => Some(event),
        Err(error) => {
            // The processors dead-letter such records; the bridge only has nothing to show.
            tracing::warn!(%error, topic, partition, offset, "undecodable event skipped");
            metrics::counter!("tributary_bridge_undecodable_total").increment(1);
            None
        }
    }
}

/// The live reader: assigned to every partition of the lifecycle and progress topics at
/// their current end.
pub struct LiveReader {
    /// The assigned consumer.
    consumer: StreamConsumer,
    /// The lifecycle topic (records of the other one are progress).
    lifecycle_topic: String,
}

impl LiveReader {
    /// Connects, assigns every partition at its end and returns the reader with the hub whose
    /// positions (and resume windows) start there.
    pub async fn connect(
        kafka: &KafkaConfig,
        settings: &BridgeSettings,
    ) -> Result<(Self, Arc<Hub>), KafkaError> {
        let consumer: StreamConsumer = create(&assigned(kafka, "live"), kafka)?;
        let timeout = Duration::from_millis(kafka.connect_timeout_ms);
        let brokers = kafka.brokers.clone();
        let lifecycle_topic = settings.lifecycle_topic.clone();
        let progress_topic = settings.progress_topic.clone();
        let (consumer, lifecycle_starts) = tokio::task::spawn_blocking(move || {
            let mut assignment = TopicPartitionList::new();
            let mut lifecycle_starts = Vec::new();
            for topic in [lifecycle_topic.as_str(), progress_topic.as_str()] {
                let metadata = consumer
                    .fetch_metadata(Some(topic), timeout)
                    .map_err(|source| KafkaError::Unreachable {
                        brokers: brokers.clone(),
                        source,
                    })?;
                let partitions = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map(|t| t.partitions().len())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| KafkaError::MissingTopic(topic.to_string()))?;
                for partition in 0..i32::try_from(partitions).unwrap_or(i32::MAX) {
                    let (_, high) = consumer
                        .fetch_watermarks(topic, partition, timeout)
                        .map_err(KafkaError::Setup)?;
                    assignment
                        .add_partition_offset(topic, partition, Offset::Offset(high))
                        .map_err(KafkaError::Setup)?;
                    if topic == lifecycle_topic {
                        lifecycle_starts.push(high);
                    }
                }
            }
            consumer.assign(&assignment).map_err(KafkaError::Setup)?;
            Ok::<_, KafkaError>((consumer, lifecycle_starts))
        })
        .await
        .map_err(|e| KafkaError::Task(e.to_string()))??;
        let hub = Arc::new(Hub::new(
            &lifecycle_starts,
            settings.lifecycle_buffer,
            settings.progress_buffer,
            settings.max_catchups_per_tenant,
            settings.fanout_writers(),
            settings.resume_window_bytes,
        ));
        let reader = Self {
            consumer,
            lifecycle_topic: settings.lifecycle_topic.clone(),
        };
        Ok((reader, hub))
    }

    /// Reads until `stop`: each record is decoded once (only for tenants with subscribers),
    /// encoded once, and handed to its tenant's ring. `live` is true while it runs.
    pub async fn run(
        self,
        catalog: Arc<SchemaCatalog>,
        hub: Arc<Hub>,
        live: Arc<AtomicBool>,
        stop: CancellationToken,
    ) {
        live.store(true, Ordering::SeqCst);
        loop {
            let message = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                received = self.consumer.recv() => match received {
                    Ok(message) => message,
                    Err(error) => {
                        // librdkafka reconnects by itself; a persistent error must not spin.
                        tracing::warn!(%error, "kafka receive error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
            };
            let lifecycle = message.topic() == self.lifecycle_topic;
            let (partition, offset) = (message.partition(), message.offset());
            let header = tenant_header(&message);
            if lifecycle {
                // Before anything is published: see `Hub::advance`.
                hub.advance(partition, offset);
                // Before the tenant's subscribers are looked up: see `crate::window`. A copy
                // of the payload, so tenants without subscribers still cost no decoding.
                let payload = message.payload().unwrap_or_default();
                hub.window()
                    .remember(partition, offset, header, Bytes::copy_from_slice(payload));
            }
            // The header is a cheap pre-filter; routing uses the decoded envelope.
            if header.is_some_and(|tenant| !hub.has_subscribers(tenant)) {
                continue;
            }
            let Some(event) = decode(&catalog, &message).await else {
                continue;
            };
            let tenant = event.meta.tenant_id.as_str();
            if !hub.has_subscribers(tenant) {
                continue;
            }
            let appended_ms = message.timestamp().to_millis();
            let frame = if lifecycle {
                Frame::lifecycle(message.offset(), &event, appended_ms)
            } else {
                Frame::progress(&event, appended_ms)
            };
            let ends_upload = matches!(
                event.kind(),
                EventType::UploadReady
                    | EventType::UploadRejected
                    | EventType::ProcessingFailed
                    | EventType::UploadAborted
                    | EventType::UploadExpired
                    | EventType::UploadDeleted
            );
            match frame {
                Ok(frame) if lifecycle => {
                    let frame = Arc::new(frame);
                    hub.window()
                        .upgrade(partition, offset, tenant, frame.clone());
                    hub.publish_lifecycle(tenant, frame, ends_upload)
                }
                Ok(frame) => hub.publish_progress(tenant, frame),
                Err(error) => tracing::warn!(%error, "event not encodable as json"),
            }
        }
        live.store(false, Ordering::SeqCst);
        // Parked streams wait for no shutdown signal of their own (it would cost each one a
        // waiter): they are handed back to their tasks, which see the stop.
        hub.kick_all();
    }
}

/// The first offset of lifecycle `topic`'s `partition` appended at or after `millis` (or the
/// end).
pub async fn offset_at(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    millis: i64,
) -> Result<i64, KafkaError> {
    let consumer: BaseConsumer = create(&assigned(kafka, "history"), kafka)?;
    let timeout = Duration::from_millis(kafka.connect_timeout_ms);
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let mut by_time = TopicPartitionList::new();
        by_time
            .add_partition_offset(&topic, partition, Offset::Offset(millis))
            .map_err(KafkaError::Setup)?;
        let found = consumer
            .offsets_for_times(by_time, timeout)
            .map_err(KafkaError::Setup)?;
        let offset = found.find_partition(&topic, partition).map(|e| e.offset());
        match offset {
            Some(Offset::Offset(o)) => Ok(o),
            // No record at or after that time: the history starts at the end.
            _ => consumer
                .fetch_watermarks(&topic, partition, timeout)
                .map(|(_, high)| high)
                .map_err(KafkaError::Setup),
        }
    })
    .await
    .map_err(|e| KafkaError::Task(e.to_string()))?
}

/// The low and high watermarks of `topic`'s `partition`: the first offset the log still
/// retains and the offset the next record will get.
pub async fn watermarks(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), KafkaError> {
    let consumer: BaseConsumer = create(&assigned(kafka, "bounds"), kafka)?;
    let timeout = Duration::from_millis(kafka.connect_timeout_ms);
    let topic = topic.to_string();
    // The query blocks, and destroying the client joins its threads: both off the workers.
    tokio::task::spawn_blocking(move || {
        consumer
            .fetch_watermarks(&topic, partition, timeout)
            .map_err(KafkaError::Setup)
    })
    .await
    .map_err(|e| KafkaError::Task(e.to_string()))?
}

/// A read of one tenant's lifecycle partition over `[next, end)`, in batches.
pub struct CatchUp {
    /// Consumer assigned to the partition at `next`; `None` only while being dropped.
    consumer: Option<StreamConsumer>,
    /// Partition read.
    partition: i32,
    /// The tenant whose frames are kept.
    tenant: String,
    /// The upload whose frames are kept (all of the tenant's when `None`).
    upload: Option<String>,
    /// Next offset to read.
    next: i64,
    /// First offset not to read (where live frames took over).
    end: i64,
    /// Longest wait for one record.
    timeout: Duration,
    /// Bounds the catch-ups running at once (the tenant's, the process's).
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

impl Drop for CatchUp {
    fn drop(&mut self) {
        // Destroying a librdkafka client joins its threads: not on an async worker.
        if let (Some(consumer), Ok(runtime)) =
            (self.consumer.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn_blocking(move || drop(consumer));
        }
    }
}

/// Where a catch-up starts and ends, and what it keeps.
#[derive(Debug, Clone)]
pub struct CatchUpRange {
    /// Lifecycle topic.
    pub topic: String,
    /// Lifecycle partition of the tenant.
    pub partition: i32,
    /// First offset to read.
    pub from: i64,
    /// First offset not to read.
    pub end: i64,
    /// Tenant kept.
    pub tenant: String,
    /// Upload kept, if one.
    pub upload: Option<String>,
}

impl CatchUp {
    /// Starts reading `range` once a permit of the tenant's bound and then one of the
    /// process-wide bound are free; `None` when the range is empty.
    pub async fn start(
        kafka: &KafkaConfig,
        tenant_permits: Arc<Semaphore>,
        permits: Arc<Semaphore>,
        range: CatchUpRange,
        timeout: Duration,
    ) -> Result<Option<Self>, BridgeError> {
        if range.from >= range.end {
            return Ok(None);
        }
        // The tenant's own bound first: a tenant queueing behind itself holds no global permit.
        let tenant_permit = tenant_permits
            .acquire_owned()
            .await
            .map_err(|_| BridgeError::ShuttingDown)?;
        let permit = permits
            .acquire_owned()
            .await
            .map_err(|_| BridgeError::ShuttingDown)?;
        let consumer: StreamConsumer = create(&assigned(kafka, "catchup"), kafka)?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&range.topic, range.partition, Offset::Offset(range.from))
            .map_err(KafkaError::Setup)?;
        consumer.assign(&assignment).map_err(KafkaError::Setup)?;
        Ok(Some(Self {
            consumer: Some(consumer),
            partition: range.partition,
            tenant: range.tenant,
            upload: range.upload,
            next: range.from,
            end: range.end,
            timeout,
            _permits: (tenant_permit, permit),
        }))
    }

    /// The next frames (at most `max`) and the last offset read; `None` once `end` is reached.
    pub async fn next_batch(
        &mut self,
        catalog: &SchemaCatalog,
        max: usize,
    ) -> Result<Option<(Vec<Arc<Frame>>, i64)>, BridgeError> {
        if self.next >= self.end {
            return Ok(None);
        }
        let Some(consumer) = &self.consumer else {
            return Ok(None);
        };
        let mut frames = Vec::new();
        while self.next < self.end && frames.len() < max {
            let message = tokio::time::timeout(self.timeout, consumer.recv())
                .await
                .map_err(|_| BridgeError::CatchUpTimeout {
                    partition: self.partition,
                    offset: self.next,
                })?
                .map_err(KafkaError::Consume)?;
            if message.offset() < self.next {
                continue;
            }
            self.next = message.offset() + 1;
            if message.offset() >= self.end {
                break;
            }
            if tenant_header(&message).is_some_and(|t| t != self.tenant) {
                continue;
            }
            let Some(event) = decode(catalog, &message).await else {
                continue;
            };
            if event.meta.tenant_id != self.tenant {
                continue;
            }
            match Frame::lifecycle(message.offset(), &event, None) {
                Ok(frame) if frame.is_for(self.upload.as_deref()) => frames.push(Arc::new(frame)),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "event not encodable as json"),
            }
        }
        Ok(Some((frames, self.next.min(self.end) - 1)))
    }
}
