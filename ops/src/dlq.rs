//! The dead-letter topic: what failed where and why, and re-driving a record — as it was, or
//! with a fixed payload — to the topic it came from.
//!
//! A consumer dead-letters a poison record with its key, value and headers (less the
//! `traceparent`) plus `dlq_error`, `dlq_group`, `dlq_topic`, `dlq_partition` and
//! `dlq_offset` (see `tributary_runtime::kafka`). A dead letter is named `partition:offset`
//! within the dead-letter topic.

use serde_json::{Value, json};
use tributary_runtime::config::KafkaConfig;
use tributary_runtime::kafka::{EVENT_TYPE_HEADER, Producer, TENANT_ID_HEADER};
use tributary_runtime::topics::DEAD_LETTERS;
use tributary_schemas::{Event, SchemaCatalog};

use crate::OpsError;
use crate::log::{Decoded, ReadSpec, Reader, Record, Start, partition_count};

/// Header naming the dead letter a re-driven record came from (`partition:offset`).
pub const REDRIVEN_FROM_HEADER: &str = "dlq_redriven_from";

/// Prefix of the headers the dead-lettering adds.
const DLQ_HEADER_PREFIX: &str = "dlq_";

/// A dead letter's position in the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Partition; `None` when only an offset was given.
    pub partition: Option<i32>,
    /// Offset.
    pub offset: i64,
}

impl std::str::FromStr for Position {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not an offset or partition:offset");
        match s.split_once(':') {
            Some((p, o)) => Ok(Self {
                partition: Some(p.trim().parse().map_err(|_| bad())?),
                offset: o.trim().parse().map_err(|_| bad())?,
            }),
            None => Ok(Self {
                partition: None,
                offset: s.trim().parse().map_err(|_| bad())?,
            }),
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.partition {
            Some(p) => write!(f, "{p}:{}", self.offset),
            None => write!(f, "{}", self.offset),
        }
    }
}

/// One dead letter, summarized.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The record in the dead-letter topic.
    pub decoded: Decoded,
}

impl DeadLetter {
    /// The consumer group that gave up on it.
    pub fn group(&self) -> Option<String> {
        self.decoded.record.header("dlq_group")
    }

    /// Why.
    pub fn error(&self) -> Option<String> {
        self.decoded.record.header("dlq_error")
    }

    /// Where it came from: topic, partition, offset.
    pub fn origin(&self) -> (Option<String>, Option<i32>, Option<i64>) {
        let record = &self.decoded.record;
        (
            record.header("dlq_topic"),
            record.header("dlq_partition").and_then(|p| p.parse().ok()),
            record.header("dlq_offset").and_then(|o| o.parse().ok()),
        )
    }

    /// The one-line summary of `dlq list --json`.
    pub fn summary(&self) -> Value {
        let (topic, partition, offset) = self.origin();
        let record = &self.decoded.record;
        json!({
            "dlq": record.position(),
            "timestamp_ms": record.timestamp_ms,
            "group": self.group(),
            "error": self.error(),
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "event_type": record.header(EVENT_TYPE_HEADER),
            "tenant_id": self.decoded.tenant_id(),
            "upload_id": self.decoded.upload_id(),
            "redriven_from": record.header(REDRIVEN_FROM_HEADER),
        })
    }
}

/// Filters of `dlq list`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only what this consumer group dead-lettered.
    pub group: Option<String>,
    /// Only this tenant's records.
    pub tenant: Option<String>,
    /// Only records that came from this topic.
    pub topic: Option<String>,
}

/// Every dead letter currently retained, oldest first per partition.
pub async fn list(
    config: &KafkaConfig,
    catalog: &SchemaCatalog,
    filter: &ListFilter,
) -> Result<Vec<DeadLetter>, OpsError> {
    let spec = ReadSpec {
        topic: DEAD_LETTERS.to_string(),
        partitions: None,
        start: Start::Beginning,
        stop_at_end: true,
    };
    let mut reader = Reader::open(config, &spec).await?;
    let mut found = Vec::new();
    while let Some(record) = reader.next().await? {
        let letter = DeadLetter {
            decoded: Decoded::new(catalog, record).await,
        };
        let keep = filter
            .group
            .as_ref()
            .is_none_or(|g| letter.group().as_ref() == Some(g))
            && filter
                .tenant
                .as_ref()
                .is_none_or(|t| letter.decoded.tenant_id().as_ref() == Some(t))
            && filter
                .topic
                .as_ref()
                .is_none_or(|t| letter.origin().0.as_ref() == Some(t));
        if keep {
            found.push(letter);
        }
    }
    found.sort_by_key(|l| (l.decoded.record.partition, l.decoded.record.offset));
    Ok(found)
}

/// The dead letter at `position`. A bare offset must be unambiguous across partitions.
pub async fn get(
    config: &KafkaConfig,
    catalog: &SchemaCatalog,
    position: Position,
) -> Result<DeadLetter, OpsError> {
    let partitions = match position.partition {
        Some(p) => vec![p],
        None => (0..partition_count(config, DEAD_LETTERS).await?).collect(),
    };
    let marks = crate::log::watermarks(config, DEAD_LETTERS, &partitions).await?;
    let holding: Vec<i32> = marks
        .iter()
        .filter(|(_, (low, high))| (*low..*high).contains(&position.offset))
        .map(|(p, _)| *p)
        .collect();
    let partition = match holding.as_slice() {
        [] => return Err(OpsError::NoSuchDeadLetter(position.to_string())),
        [one] => *one,
        many => {
            return Err(OpsError::Invalid(format!(
                "offset {} exists in partitions {many:?} of {DEAD_LETTERS}; name one as partition:offset",
                position.offset
            )));
        }
    };
    let spec = ReadSpec {
        topic: DEAD_LETTERS.to_string(),
        partitions: Some(vec![partition]),
        start: Start::Offset(position.offset),
        stop_at_end: true,
    };
    let mut reader = Reader::open(config, &spec).await?;
    while let Some(record) = reader.next().await? {
        if record.offset == position.offset {
            return Ok(DeadLetter {
                decoded: Decoded::new(catalog, record).await,
            });
        }
        if record.offset > position.offset {
            break;
        }
    }
    Err(OpsError::NoSuchDeadLetter(format!(
        "{partition}:{}",
        position.offset
    )))
}

/// What to re-drive instead of the dead letter's own value.
#[derive(Debug, Clone)]
pub enum Fix {
    /// The record as it was (the consumer's bug was fixed, the value is fine).
    None,
    /// An event (JSON as `dlq show` prints under `event`), encoded with the current schemas.
    Event(Box<Event>),
    /// Raw bytes (Confluent-framed Avro) used as the value.
    Payload(Vec<u8>),
}

/// Options of [`redrive`].
#[derive(Debug, Clone)]
pub struct RedriveOptions {
    /// The replacement, if any.
    pub fix: Fix,
    /// Target topic instead of the one the record came from.
    pub topic: Option<String>,
    /// Re-drive even when the value does not decode.
    pub force: bool,
}

/// Where a re-driven record went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redriven {
    /// The topic.
    pub topic: String,
    /// The partition (the key's, as the original's).
    pub partition: i32,
    /// The new record's offset.
    pub offset: i64,
}

/// The record to publish for `letter`: its key, the (fixed) value, its headers less the
/// dead-letter ones, plus [`REDRIVEN_FROM_HEADER`].
pub fn redrive_record(
    letter: &DeadLetter,
    catalog: &SchemaCatalog,
    options: &RedriveOptions,
) -> Result<(String, Record), OpsError> {
    let original = &letter.decoded.record;
    let topic = match (&options.topic, letter.origin().0) {
        (Some(topic), _) => topic.clone(),
        (None, Some(topic)) => topic,
        (None, None) => {
            return Err(OpsError::Invalid(format!(
                "dead letter {} has no dlq_topic header; name the target with --topic",
                original.position()
            )));
        }
    };
    let mut headers: Vec<(String, Vec<u8>)> = original
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with(DLQ_HEADER_PREFIX))
        .cloned()
        .collect();
    let (payload, key) = match &options.fix {
        Fix::None => (original.payload.clone().unwrap_or_default(), None),
        Fix::Payload(bytes) => (bytes.clone(), None),
        Fix::Event(event) => {
            event
                .check_envelope()
                .map_err(|e| OpsError::Invalid(format!("the fixed event is not valid: {e}")))?;
            let bytes = catalog
                .encode(event)
                .map_err(|e| OpsError::Invalid(format!("the fixed event does not encode: {e}")))?;
            // The fixed event names its own type and tenant.
            headers.retain(|(k, _)| k != EVENT_TYPE_HEADER && k != TENANT_ID_HEADER);
            headers.push((
                EVENT_TYPE_HEADER.into(),
                event.event_type().as_bytes().to_vec(),
            ));
            headers.push((
                TENANT_ID_HEADER.into(),
                event.meta.tenant_id.as_bytes().to_vec(),
            ));
            (bytes, Some(event.partition_key().as_bytes().to_vec()))
        }
    };
    if !options.force && !matches!(options.fix, Fix::Event(_)) {
        catalog.decode(&payload).map_err(|e| {
            OpsError::Invalid(format!(
                "the value to re-drive does not decode ({e}); fix it with --event or --payload, or pass --force"
            ))
        })?;
    }
    headers.push((
        REDRIVEN_FROM_HEADER.into(),
        original.position().into_bytes(),
    ));
    Ok((
        topic.clone(),
        Record {
            topic,
            partition: -1,
            offset: -1,
            timestamp_ms: None,
            key: key.or_else(|| original.key.clone()),
            payload: Some(payload),
            headers,
        },
    ))
}

/// Publishes the re-driven record and returns where it landed.
pub async fn redrive(
    config: &KafkaConfig,
    catalog: &SchemaCatalog,
    letter: &DeadLetter,
    options: &RedriveOptions,
) -> Result<Redriven, OpsError> {
    let (topic, record) = redrive_record(letter, catalog, options)?;
    let producer = Producer::new(config, "tributary-ops")?;
    let headers: Vec<(&str, &[u8])> = record
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let delivery = producer
        .send(
            &topic,
            record.key.as_deref().unwrap_or_default(),
            record.payload.as_deref().unwrap_or_default(),
            &headers,
        )
        .await?;
    Ok(Redriven {
        topic,
        partition: delivery.partition,
        offset: delivery.offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse() {
        assert_eq!(
            "2:17".parse::<Position>(),
            Ok(Position {
                partition: Some(2),
                offset: 17
            })
        );
        assert_eq!(
            "17".parse::<Position>(),
            Ok(Position {
                partition: None,
                offset: 17
            })
        );
        assert!("x:1".parse::<Position>().is_err());
        assert!("".parse::<Position>().is_err());
    }

    fn letter(payload: Vec<u8>) -> DeadLetter {
        let headers = [
            ("event_type", "UploadReady"),
            ("tenant_id", "t1"),
            ("dlq_error", "boom"),
            ("dlq_group", "g"),
            ("dlq_topic", "tributary.uploads.lifecycle.v1"),
            ("dlq_partition", "4"),
            ("dlq_offset", "99"),
        ];
        DeadLetter {
            decoded: Decoded {
                record: Record {
                    topic: DEAD_LETTERS.into(),
                    partition: 1,
                    offset: 7,
                    timestamp_ms: Some(1),
                    key: Some(b"t1".to_vec()),
                    payload: Some(payload),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                        .collect(),
                },
                event: Err("test".into()),
            },
        }
    }

    #[test]
    fn a_redrive_keeps_key_and_headers_drops_dlq_headers_and_refuses_garbage() {
        let catalog = SchemaCatalog::embedded().expect("catalog");
        let event = Event::new(
            tributary_schemas::EventMeta::new("t1", Some("u1".into()), "tests", "c", None),
            tributary_schemas::UploadReady { variant_count: 1 },
        );
        let good = catalog.encode(&event).expect("encode");
        let options = RedriveOptions {
            fix: Fix::None,
            topic: None,
            force: false,
        };
        let (topic, record) =
            redrive_record(&letter(good.clone()), &catalog, &options).expect("redrive");
        assert_eq!(topic, "tributary.uploads.lifecycle.v1");
        assert_eq!(record.key.as_deref(), Some(&b"t1"[..]));
        assert_eq!(record.payload.as_deref(), Some(&good[..]));
        let names: Vec<&str> = record.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["event_type", "tenant_id", REDRIVEN_FROM_HEADER]);
        assert_eq!(record.header(REDRIVEN_FROM_HEADER).as_deref(), Some("1:7"));

        let garbage = letter(vec![0, 0, 0, 0, 1, 0xff]);
        let refused = redrive_record(&garbage, &catalog, &options).expect_err("undecodable");
        assert!(refused.to_string().contains("does not decode"), "{refused}");
        let fixed = RedriveOptions {
            fix: Fix::Event(Box::new(event)),
            ..options
        };
        let (_, record) = redrive_record(&garbage, &catalog, &fixed).expect("fixed");
        assert_eq!(record.payload.as_deref(), Some(&good[..]));
    }
}
