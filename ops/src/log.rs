//! Reading a topic's records without joining a consumer group: partitions are assigned
//! directly and no offset is ever committed, so operators' reads never move a service's
//! position or show up as a group.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use base64::Engine as _;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use tributary_runtime::config::KafkaConfig;
use tributary_runtime::kafka::{BaseConsumer, StreamConsumer, base_client_config, create};
use tributary_schemas::{Event, SchemaCatalog};

use crate::OpsError;

/// How long a metadata or watermark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One record as read from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The record timestamp (producer create time), milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The value; `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    /// The headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// The first header named `name`, as text (lossy).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// `partition:offset`, how operators name a record of a known topic.
    pub fn position(&self) -> String {
        format!("{}:{}", self.partition, self.offset)
    }
}

/// Where reading starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest record still retained.
    Beginning,
    /// Only records produced from now on.
    End,
    /// This offset (clamped by the broker to the retained range).
    Offset(i64),
}

/// What to read.
#[derive(Debug, Clone)]
pub struct ReadSpec {
    /// The topic.
    pub topic: String,
    /// The partitions; `None` means all.
    pub partitions: Option<Vec<i32>>,
    /// Where to start.
    pub start: Start,
    /// Stop once every partition reached the end it had when reading started.
    pub stop_at_end: bool,
}

/// A reader over some partitions of one topic.
pub struct Reader {
    /// The assigned consumer (no group membership, no commits).
    consumer: StreamConsumer,
    /// With `stop_at_end`: per partition, the end offset still to reach.
    remaining: Option<HashMap<i32, i64>>,
}

/// A client for metadata requests.
fn metadata_client(config: &KafkaConfig) -> Result<BaseConsumer, OpsError> {
    create(&base_client_config(config, "tributary-ops"), config).map_err(OpsError::kafka)
}

/// The partition count of `topic`, or [`OpsError::NoSuchTopic`].
pub async fn partition_count(config: &KafkaConfig, topic: &str) -> Result<i32, OpsError> {
    let client = metadata_client(config)?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let metadata = client
            .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
            .map_err(OpsError::kafka)?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if found == 0 {
            return Err(OpsError::NoSuchTopic(topic));
        }
        i32::try_from(found).map_err(|_| OpsError::Kafka("absurd partition count".into()))
    })
    .await
    .map_err(OpsError::kafka)?
}

/// Low and high watermarks of `partitions` of `topic`.
pub async fn watermarks(
    config: &KafkaConfig,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, (i64, i64)>, OpsError> {
    let client = metadata_client(config)?;
    let topic = topic.to_string();
    let partitions = partitions.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut marks = BTreeMap::new();
        for partition in partitions {
            let range = client
                .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
                .map_err(OpsError::kafka)?;
            marks.insert(partition, range);
        }
        Ok(marks)
    })
    .await
    .map_err(OpsError::kafka)?
}

impl Reader {
    /// Assigns the partitions of `spec` at their start offsets.
    pub async fn open(config: &KafkaConfig, spec: &ReadSpec) -> Result<Self, OpsError> {
        let count = partition_count(config, &spec.topic).await?;
        let partitions: Vec<i32> = match &spec.partitions {
            Some(list) => {
                if let Some(bad) = list.iter().find(|p| !(0..count).contains(*p)) {
                    return Err(OpsError::Invalid(format!(
                        "{} has no partition {bad} (it has {count})",
                        spec.topic
                    )));
                }
                list.clone()
            }
            None => (0..count).collect(),
        };
        let marks = watermarks(config, &spec.topic, &partitions).await?;
        let mut consumer = base_client_config(config, "tributary-ops");
        // librdkafka wants a group id for a consumer; nothing joins or commits it.
        consumer
            .set("group.id", "tributary-ops-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let consumer: StreamConsumer = create(&consumer, config).map_err(OpsError::kafka)?;
        let mut assignment = TopicPartitionList::new();
        let mut remaining = HashMap::new();
        for (&partition, &(low, high)) in &marks {
            let from = match spec.start {
                Start::Beginning => low,
                Start::End => high,
                Start::Offset(offset) => offset.clamp(low, high),
            };
            if spec.stop_at_end && from >= high {
                continue;
            }
            remaining.insert(partition, high);
            assignment
                .add_partition_offset(&spec.topic, partition, Offset::Offset(from))
                .map_err(OpsError::kafka)?;
        }
        if assignment.count() > 0 {
            consumer.assign(&assignment).map_err(OpsError::kafka)?;
        }
        Ok(Self {
            consumer,
            remaining: spec.stop_at_end.then_some(remaining),
        })
    }

    /// The next record, or `None` once every partition reached its end (with
    /// `stop_at_end`). Waits for new records otherwise.
    pub async fn next(&mut self) -> Result<Option<Record>, OpsError> {
        loop {
            if self.remaining.as_ref().is_some_and(HashMap::is_empty) {
                return Ok(None);
            }
            let message = match self.consumer.recv().await {
                Ok(message) => message,
                Err(error) => {
                    // Transient errors (a broker restarting) are retried by librdkafka.
                    eprintln!("tributary-ops: kafka: {error}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let record = Record {
                topic: message.topic().to_string(),
                partition: message.partition(),
                offset: message.offset(),
                timestamp_ms: message.timestamp().to_millis(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().map(<[u8]>::to_vec),
                headers: message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            if let Some(remaining) = &mut self.remaining {
                match remaining.get(&record.partition) {
                    Some(&end) if record.offset < end => {
                        if record.offset + 1 >= end {
                            remaining.remove(&record.partition);
                        }
                    }
                    // Produced after reading started: not part of this read.
                    _ => continue,
                }
            }
            return Ok(Some(record));
        }
    }
}

/// A record with its event decoded (or why it could not be).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The record.
    pub record: Record,
    /// Its event, or the decoder's explanation.
    pub event: Result<Event, String>,
}

impl Decoded {
    /// Decodes `record`'s value with `catalog` (fetching unknown writer schemas from the
    /// registry when one is configured).
    pub async fn new(catalog: &SchemaCatalog, record: Record) -> Self {
        let event = match &record.payload {
            None => Err("no value (tombstone)".to_string()),
            Some(payload) => catalog
                .decode_async(payload)
                .await
                .map_err(|e| e.to_string()),
        };
        Self { record, event }
    }

    /// The tenant: the decoded event's, else the `tenant_id` header.
    pub fn tenant_id(&self) -> Option<String> {
        match &self.event {
            Ok(event) => Some(event.meta.tenant_id.clone()),
            Err(_) => self
                .record
                .header(tributary_runtime::kafka::TENANT_ID_HEADER),
        }
    }

    /// The upload the event is about, if decoded and upload-scoped.
    pub fn upload_id(&self) -> Option<&str> {
        self.event.as_ref().ok()?.meta.upload_id.as_deref()
    }

    /// The JSON line shown for the record: position, timestamp, key, headers, and the event
    /// (`event`), or `error` plus the raw value (`payload_base64`) when it does not decode.
    pub fn to_json(&self) -> Value {
        let record = &self.record;
        let headers: serde_json::Map<String, Value> = record
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Value::String(String::from_utf8_lossy(v).into_owned()),
                )
            })
            .collect();
        let mut view = json!({
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp_ms": record.timestamp_ms,
            "key": record.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()),
            "headers": headers,
        });
        match &self.event {
            Ok(event) => {
                view["event_type"] = json!(event.event_type());
                view["event"] = serde_json::to_value(event).unwrap_or(Value::Null);
            }
            Err(error) => {
                view["error"] = json!(error);
                view["payload_base64"] = json!(
                    record
                        .payload
                        .as_deref()
                        .map(|p| base64::engine::general_purpose::STANDARD.encode(p))
                );
            }
        }
        view
    }
}

/// Which records to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only events about this upload.
    pub upload: Option<String>,
    /// Only events of this type (record name, e.g. `UploadReady`).
    pub event_type: Option<String>,
}

impl Filter {
    /// Whether `decoded` passes.
    pub fn matches(&self, decoded: &Decoded) -> bool {
        if let Some(tenant) = &self.tenant
            && decoded.tenant_id().as_deref() != Some(tenant.as_str())
        {
            return false;
        }
        if let Some(upload) = &self.upload
            && decoded.upload_id() != Some(upload.as_str())
        {
            return false;
        }
        if let Some(wanted) = &self.event_type {
            let event_type = match &decoded.event {
                Ok(event) => Some(event.event_type().to_string()),
                Err(_) => decoded
                    .record
                    .header(tributary_runtime::kafka::EVENT_TYPE_HEADER),
            };
            if event_type.as_deref() != Some(wanted.as_str()) {
                return false;
            }
        }
        true
    }
}
