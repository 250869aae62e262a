//! Helpers for integration tests that run against the local stack (`./devstack test`).
//! They create uniquely named topics and keyspaces so test runs never see each other's data.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};

use crate::config::Config;
use crate::kafka::KafkaError;

/// The configuration tests use: the local stack's defaults plus any `TRIBUTARY_*` overrides.
pub fn stack_config() -> Config {
    Config::load(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .unwrap_or_else(|error| panic!("test configuration: {error}"))
}

/// A name no other test run uses: `prefix` + time + process id + counter (letters, digits and
/// underscores only, so it is valid as a topic, keyspace or group name).
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!(
        "{prefix}_{millis}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a topic with `partitions` partitions (replication 1, the local broker).
pub async fn create_topic(config: &Config, name: &str, partitions: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<crate::kafka::KafkaContext> = crate::kafka::create(
        &crate::kafka::base_client_config(&config.kafka, "tributary-tests"),
        &config.kafka,
    )?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .map_err(KafkaError::Setup)?;
    for result in results {
        if let Err((topic, code)) = result {
            return Err(KafkaError::Admin(format!("create topic {topic}: {code}")));
        }
    }
    Ok(())
}

/// Deletes a topic created by [`create_topic`].
pub async fn delete_topic(config: &Config, name: &str) -> Result<(), KafkaError> {
    let admin: AdminClient<crate::kafka::KafkaContext> = crate::kafka::create(
        &crate::kafka::base_client_config(&config.kafka, "tributary-tests"),
        &config.kafka,
    )?;
    admin
        .delete_topics(&[name], &AdminOptions::new())
        .await
        .map_err(KafkaError::Setup)?;
    Ok(())
}

/// Commits, for consumer group `group`, the current end of every partition of `topic`, so a
/// consumer of that group started afterwards sees only what is produced from now on (tests
/// that must not replay a long shared log).
pub async fn start_group_at_end(
    config: &Config,
    group: &str,
    topic: &str,
) -> Result<(), KafkaError> {
    use crate::kafka::BaseConsumer;
    use rdkafka::consumer::{CommitMode, Consumer};
    use rdkafka::{Offset, TopicPartitionList};

    let mut client = crate::kafka::base_client_config(&config.kafka, "tributary-tests");
    client
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = crate::kafka::create(&client, &config.kafka)?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(KafkaError::Setup)?;
        let mut ends = TopicPartitionList::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) = consumer
                .fetch_watermarks(&topic, partition.id(), Duration::from_secs(10))
                .map_err(KafkaError::Setup)?;
            ends.add_partition_offset(&topic, partition.id(), Offset::Offset(high))
                .map_err(KafkaError::Setup)?;
        }
        consumer
            .commit(&ends, CommitMode::Sync)
            .map_err(KafkaError::Setup)
    })
    .await
    .map_err(|e| KafkaError::Task(e.to_string()))?
}

/// Every event of `tenant_id` on `topic` from `since_ms` (milliseconds since the epoch) up to
/// each partition's current end, in log order per partition. Blocking; panics on a broker
/// failure, as a test should.
pub fn events_since(
    config: &Config,
    topic: &str,
    tenant_id: &str,
    since_ms: i64,
) -> Vec<tributary_schemas::Event> {
    use crate::kafka::BaseConsumer;
    use rdkafka::consumer::Consumer;
    use rdkafka::message::Message as _;
    use rdkafka::{Offset, TopicPartitionList};

    let mut client = crate::kafka::base_client_config(&config.kafka, "tributary-tests");
    client
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = crate::kafka::create(&client, &config.kafka).expect("consumer");
    let partitions = crate::topics::spec(topic)
        .expect("declared topic")
        .partitions;
    let mut by_time = TopicPartitionList::new();
    for partition in 0..partitions {
        by_time
            .add_partition_offset(topic, partition, Offset::Offset(since_ms))
            .expect("partition list");
    }
    let start = consumer
        .offsets_for_times(by_time, Duration::from_secs(10))
        .expect("offsets for times");
    let mut ends = Vec::new();
    let mut assignment = TopicPartitionList::new();
    for element in start.elements() {
        let (_, high) = consumer
            .fetch_watermarks(topic, element.partition(), Duration::from_secs(10))
            .expect("watermarks");
        let from = match element.offset() {
            Offset::Offset(o) => o,
            _ => high,
        };
        if from < high {
            assignment
                .add_partition_offset(topic, element.partition(), Offset::Offset(from))
                .expect("partition list");
            ends.push((element.partition(), high));
        }
    }
    let mut found = Vec::new();
    if ends.is_empty() {
        return found;
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut positions = std::collections::HashMap::new();
    while ends
        .iter()
        .any(|(p, high)| positions.get(p).copied().unwrap_or(-1) + 1 < *high)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "could not read {topic} to its end"
        );
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        positions.insert(message.partition(), message.offset());
        let Some(Ok(event)) = message.payload().map(tributary_schemas::decode) else {
            continue;
        };
        if event.meta.tenant_id == tenant_id {
            found.push(event);
        }
    }
    found
}
