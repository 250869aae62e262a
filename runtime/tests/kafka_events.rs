//! Avro events through the real Kafka broker of the local stack: published with the
//! Confluent framing, the required headers and Java-compatible partitioning, read back and
//! decoded to the same values.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tributary_runtime::events::{EventPublisher, load_catalog};
use tributary_runtime::kafka::{
    ConsumerSettings, HandleError, Handler, Message as ConsumedMessage, Producer,
    base_client_config, run_consumer,
};
use tributary_runtime::{telemetry, testing, topics};
use tributary_schemas::{
    Event, EventMeta, MediaJobRequested, PartConfirmed, TenantCreated, UploadInitiated,
    UploadProgress, UploadReady,
};

/// Kafka's Java `Utils.murmur2`, which `murmur2_random` must match so that every producer
/// (Java, Connect, ours) puts a key on the same partition.
fn java_murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

fn java_partition(key: &str, partitions: i32) -> i32 {
    (java_murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions
}

#[test]
fn murmur2_matches_kafkas_own_test_vectors() {
    // From Kafka's UtilsTest.testMurmur2.
    assert_eq!(java_murmur2(b"21"), -973_932_308);
    assert_eq!(java_murmur2(b"foobar"), -790_332_482);
    assert_eq!(java_murmur2(b"a-little-bit-long-string"), -985_981_536);
}

fn sample_events(tenant: &str, upload: &str) -> Vec<Event> {
    let meta = |upload_id: Option<&str>| {
        EventMeta::new(
            tenant,
            upload_id.map(str::to_string),
            "tests@0",
            "corr-1",
            None,
        )
    };
    vec![
        Event::new(
            meta(None),
            TenantCreated {
                name: "Acme".into(),
                max_file_size: 7 << 30,
                allowed_content_types: vec!["image/*".into(), "video/mp4".into()],
                byte_quota: 1 << 40,
                max_concurrent_uploads: 16,
            },
        ),
        Event::new(
            meta(Some(upload)),
            UploadInitiated {
                filename: "holiday photo.jpg".into(),
                size: 7_516_192_768,
                content_type: "image/jpeg".into(),
                bucket: "tributary".into(),
                object_key: format!("uploads/{tenant}/{upload}/original"),
                s3_upload_id: "s3-upload-1".into(),
                part_size: 64 << 20,
                part_count: 112,
                sha256: Some("ab".repeat(32)),
                metadata: BTreeMap::from([("album".to_string(), "summer".to_string())]),
                expires_at: 1_900_000_000_000_000,
            },
        ),
        Event::new(
            meta(Some(upload)),
            PartConfirmed {
                part_number: 1,
                etag: "\"etag-1\"".into(),
                size: 64 << 20,
            },
        ),
        Event::new(
            meta(Some(upload)),
            UploadProgress {
                stage: "uploading".into(),
                bytes_done: 1 << 20,
                bytes_total: 7 << 30,
                percent: 0.01,
            },
        ),
        Event::new(
            meta(Some(upload)),
            MediaJobRequested {
                kind: MediaJobRequested::KIND_IMAGE.into(),
                bucket: "tributary".into(),
                object_key: format!("uploads/{tenant}/{upload}/original"),
                content_type: "image/jpeg".into(),
                size: 123,
            },
        ),
        Event::new(meta(Some(upload)), UploadReady { variant_count: 2 }),
    ]
}

/// Reads exactly the record at `offset` of `topic`/`partition`.
async fn read_one(
    consumer: &StreamConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> rdkafka::message::OwnedMessage {
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .expect("valid offset");
    consumer.assign(&assignment).expect("assign");
    let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
        .await
        .expect("record arrives within 20 s")
        .expect("consume");
    assert_eq!(message.offset(), offset);
    message.detach()
}

#[tokio::test]
async fn every_event_round_trips_through_the_broker_with_headers_and_java_partitioning() {
    let config = testing::stack_config();
    let telemetry_config = config.telemetry.clone();
    telemetry::init("runtime-tests", &telemetry_config).expect("telemetry");
    let producer = Producer::new(&config.kafka, "runtime-tests").expect("producer");
    producer
        .check_cluster(
            &config.kafka.brokers,
            &[
                topics::LIFECYCLE,
                topics::TENANT_ADMIN,
                topics::PROGRESS,
                topics::MEDIA_JOBS,
            ],
            Duration::from_secs(10),
        )
        .await
        .expect("local stack is up with its topics (./devstack up)");
    let catalog = load_catalog(&config.kafka).await.expect("catalog");
    let publisher = EventPublisher::new(producer, catalog.clone());
    let consumer: StreamConsumer = base_client_config(&config.kafka, "runtime-tests-reader")
        .set("group.id", testing::unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");

    let tenant = testing::unique("tenant");
    let upload = testing::unique("upload");
    for event in sample_events(&tenant, &upload) {
        let span = tracing::info_span!("publish-test");
        let (delivery, traceparent) = async {
            let delivery = publisher
                .publish(&event)
                .await
                .expect("broker acknowledged");
            let mut carrier = std::collections::HashMap::new();
            opentelemetry::global::get_text_map_propagator(|p| {
                use tracing_opentelemetry::OpenTelemetrySpanExt;
                p.inject_context(&tracing::Span::current().context(), &mut carrier)
            });
            (delivery, carrier.remove("traceparent"))
        }
        .instrument(span)
        .await;

        let spec = topics::spec(event.topic()).expect("declared topic");
        assert_eq!(
            delivery.partition,
            java_partition(event.partition_key(), spec.partitions),
            "{} must land where a Java producer would put key {}",
            event.event_type(),
            event.partition_key()
        );

        let message = read_one(
            &consumer,
            event.topic(),
            delivery.partition,
            delivery.offset,
        )
        .await;
        let payload = message.payload().expect("payload");
        assert_eq!(payload[0], 0, "confluent magic byte");
        let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
        assert_eq!(
            Some(id),
            catalog.current_id(event.kind()),
            "schema id in the frame"
        );
        assert_eq!(message.key(), Some(event.partition_key().as_bytes()));

        let headers = message.headers().expect("headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(header("event_type").as_deref(), Some(event.event_type()));
        assert_eq!(header("tenant_id").as_deref(), Some(tenant.as_str()));
        let sent_traceparent = header("traceparent").expect("traceparent header");
        assert_eq!(
            Some(sent_traceparent.clone()),
            traceparent,
            "the publishing span's trace"
        );
        assert!(sent_traceparent.starts_with("00-") && sent_traceparent.len() == 55);

        let decoded = catalog.decode(payload).expect("decodes");
        assert_eq!(decoded, event);
    }
}

/// Records the trace id the handler runs under, then stops the loop.
struct TraceProbe {
    seen: tokio::sync::mpsc::UnboundedSender<opentelemetry::trace::TraceId>,
    stop: CancellationToken,
}

impl Handler for TraceProbe {
    async fn handle(&mut self, _message: &ConsumedMessage) -> Result<(), HandleError> {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let context = tracing::Span::current().context();
        let _ = self.seen.send(context.span().span_context().trace_id());
        self.stop.cancel();
        Ok(())
    }
}

#[tokio::test]
async fn the_consumer_continues_the_producers_trace() {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let config = testing::stack_config();
    telemetry::init("runtime-tests", &config.telemetry).expect("telemetry");
    let topic = testing::unique("trace_test");
    testing::create_topic(&config, &topic, 1)
        .await
        .expect("topic");
    let producer = Producer::new(&config.kafka, "runtime-tests").expect("producer");

    let span = tracing::info_span!("http.request");
    let trace_id = span.context().span().span_context().trace_id();
    assert_ne!(trace_id, opentelemetry::trace::TraceId::INVALID);
    producer
        .send(&topic, b"key", b"payload", &[])
        .instrument(span)
        .await
        .expect("acknowledged");

    let (seen, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let probe = TraceProbe {
        seen,
        stop: stop.clone(),
    };
    let settings = ConsumerSettings::new(&testing::unique("trace_group"), &[topic.as_str()]);
    tokio::time::timeout(
        Duration::from_secs(30),
        run_consumer(&config.kafka, &settings, &producer, probe, stop),
    )
    .await
    .expect("consumed within 30 s")
    .expect("consumer loop");
    assert_eq!(
        seen_rx.recv().await,
        Some(trace_id),
        "handler span continues the trace"
    );
    testing::delete_topic(&config, &topic)
        .await
        .expect("delete topic");
}
