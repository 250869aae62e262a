//! `tributary-ops lag` against the real Kafka: a group with a known lag shows it.

mod common;

use common::{json_lines, ops_ok};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tributary_runtime::kafka::{Producer, base_client_config};
use tributary_runtime::testing;

#[tokio::test]
async fn a_group_with_known_lag_shows_it() {
    let config = testing::stack_config();
    let topic = testing::unique("ops_lag");
    let group = testing::unique("ops-lag-group");
    testing::create_topic(&config, &topic, 2)
        .await
        .expect("create topic");
    let producer = Producer::new(&config.kafka, "ops-tests").expect("producer");
    let mut ends = [0i64; 2];
    for i in 0..7 {
        // Keys spread over both partitions; the ends are what the deliveries say.
        let delivery = producer
            .send(&topic, format!("key-{i}").as_bytes(), b"x", &[])
            .await
            .expect("produce");
        let p = usize::try_from(delivery.partition).expect("partition");
        ends[p] = ends[p].max(delivery.offset + 1);
    }
    // The group consumed 1 record of partition 0 and none of partition 1.
    let member: BaseConsumer = base_client_config(&config.kafka, "ops-tests")
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut committed = TopicPartitionList::new();
    committed
        .add_partition_offset(&topic, 0, Offset::Offset(1))
        .expect("tpl");
    committed
        .add_partition_offset(&topic, 1, Offset::Offset(0))
        .expect("tpl");
    tokio::task::spawn_blocking(move || member.commit(&committed, CommitMode::Sync))
        .await
        .expect("join")
        .expect("commit");

    let stdout = ops_ok(&["lag", "--group", &group, "--topic", &topic, "--json"]);
    let rows = json_lines(&stdout);
    let expected: Vec<serde_json::Value> = [(0, 1), (1, 0)]
        .iter()
        .map(|&(partition, committed)| {
            let end = ends[partition as usize];
            serde_json::json!({
                "group": group, "topic": topic, "partition": partition,
                "committed": committed, "end": end, "lag": end - committed,
            })
        })
        .collect();
    assert_eq!(rows, expected);

    // The table: one line per partition and the group's total.
    let table = ops_ok(&["lag", "--group", &group, "--topic", &topic]);
    let total = ends[0] - 1 + ends[1];
    let last = table.lines().last().expect("a total line");
    assert!(
        last.starts_with(&group) && last.contains("(total)"),
        "{table}"
    );
    assert!(last.ends_with(&format!(" {total}")), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");

    testing::delete_topic(&config, &topic)
        .await
        .expect("delete topic");
}
