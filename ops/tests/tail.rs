//! `tributary-ops tail` and `replay` against the real Kafka: events published by the test
//! come back decoded, in log order, filtered by tenant and upload.

mod common;

use common::{json_lines, ops_ok, publish, tenant_in_partition};
use serde_json::json;
use tributary_runtime::{testing, topics};
use tributary_schemas::{
    Event, EventMeta, UploadCompletionRequested, UploadExpired, UploadReady, now_micros,
};

/// The JSON line `tail` prints for `event` at `partition:offset`, without the timestamp
/// (checked separately).
fn expected(event: &Event, partition: i32, offset: i64) -> serde_json::Value {
    json!({
        "topic": topics::LIFECYCLE,
        "partition": partition,
        "offset": offset,
        "key": event.meta.tenant_id,
        "headers": {"event_type": event.event_type(), "tenant_id": event.meta.tenant_id},
        "event_type": event.event_type(),
        "event": serde_json::to_value(event).expect("event json"),
    })
}

#[tokio::test]
async fn tail_prints_one_tenants_events_decoded_in_log_order() {
    let config = testing::stack_config();
    let partitions = topics::spec(topics::LIFECYCLE)
        .expect("declared")
        .partitions;
    // Two tenants in the same partition, so the tenant filter is what separates them.
    let tenant = tenant_in_partition(partitions, 3);
    let other = tenant_in_partition(partitions, 3);
    let (u1, u2) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let meta = |t: &str, u: &str| EventMeta::new(t, Some(u.to_string()), "ops-tests", u, None);
    let events = vec![
        Event::new(meta(&tenant, &u1), UploadCompletionRequested {}),
        Event::new(meta(&other, &u1), UploadReady { variant_count: 9 }),
        Event::new(meta(&tenant, &u2), UploadExpired {}),
        Event::new(meta(&tenant, &u1), UploadReady { variant_count: 2 }),
    ];
    let started_ms = now_micros() / 1000;
    let deliveries = publish(&config, &events).await;
    let first = deliveries[0].offset.to_string();

    // The tenant's three events, exactly, in log order.
    let stdout = ops_ok(&[
        "tail",
        "lifecycle",
        "--tenant",
        &tenant,
        "--offset",
        &first,
        "--max",
        "3",
        "--timeout",
        "60",
    ]);
    let mut lines = json_lines(&stdout);
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in &mut lines {
        let at = line["timestamp_ms"].as_i64().expect("timestamp");
        assert!(at >= started_ms - 1000, "{line}");
        line.as_object_mut().expect("object").remove("timestamp_ms");
    }
    let want: Vec<serde_json::Value> = [0, 2, 3]
        .iter()
        .map(|&i| expected(&events[i], deliveries[i].partition, deliveries[i].offset))
        .collect();
    assert_eq!(lines, want);

    // By upload, up to the end of the log as it was: two events of u1, nothing else.
    let stdout = ops_ok(&[
        "tail",
        "lifecycle",
        "--tenant",
        &tenant,
        "--upload",
        &u1,
        "--offset",
        &first,
        "--to-end",
        "--timeout",
        "60",
    ]);
    let offsets: Vec<i64> = json_lines(&stdout)
        .iter()
        .map(|l| l["offset"].as_i64().expect("offset"))
        .collect();
    assert_eq!(offsets, [deliveries[0].offset, deliveries[3].offset]);

    // By event type.
    let stdout = ops_ok(&[
        "tail",
        "uploads",
        "--tenant",
        &tenant,
        "--event-type",
        "UploadExpired",
        "--offset",
        &first,
        "--to-end",
        "--timeout",
        "60",
    ]);
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0]["event"]["meta"]["upload_id"], json!(u2));

    // Replay: the tenant's whole history from offset 0, in log order; by upload too.
    let replayed: Vec<serde_json::Value> = json_lines(&ops_ok(&["replay", "--tenant", &tenant]))
        .into_iter()
        .map(|line| line["event"].clone())
        .collect();
    let own: Vec<serde_json::Value> = [0, 2, 3]
        .iter()
        .map(|&i| serde_json::to_value(&events[i]).expect("json"))
        .collect();
    assert_eq!(replayed, own);
    let replayed = json_lines(&ops_ok(&["replay", "--tenant", &tenant, "--upload", &u2]));
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0]["event_type"], "UploadExpired");
}

#[tokio::test]
async fn tail_follows_new_records_and_stops_at_its_timeout() {
    let config = testing::stack_config();
    let tenant = testing::unique("opsfollow");
    let upload = uuid::Uuid::now_v7().to_string();
    // Started before anything is published: it must see the record that comes later.
    let child = std::process::Command::new(common::OPS)
        .args([
            "tail",
            "lifecycle",
            "--tenant",
            &tenant,
            "--max",
            "1",
            "--timeout",
            "60",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tail");
    // Give it time to assign its partition at the end of the log.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let event = Event::new(
        EventMeta::new(&tenant, Some(upload.clone()), "ops-tests", &upload, None),
        UploadReady { variant_count: 1 },
    );
    publish(&config, std::slice::from_ref(&event)).await;
    let output = child.wait_with_output().expect("tail output");
    assert!(output.status.success());
    let lines = json_lines(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0]["event"],
        serde_json::to_value(&event).expect("json")
    );

    // Nothing arrives: the timeout ends it, successfully, with no output.
    let started = std::time::Instant::now();
    let stdout = ops_ok(&["tail", "lifecycle", "--tenant", &tenant, "--timeout", "2"]);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
