//! `tributary-ops dlq` against the real stack: a poison event on the lifecycle topic is
//! dead-lettered by a real projector, listed, shown, refused as it is, fixed, re-driven to
//! its topic, and then reaches its projection in the read models.

mod common;

use std::time::Duration;

use common::{json_lines, ops, ops_ok, wait_for};
use tokio_util::sync::CancellationToken;
use tributary_projections::read::ReadModels;
use tributary_runtime::kafka::Producer;
use tributary_runtime::{cql, testing, topics};
use tributary_schemas::{Event, EventMeta, SchemaCatalog, UploadInitiated, now_micros};

#[tokio::test]
async fn a_poison_event_fixed_and_redriven_reaches_its_projection() {
    let config = testing::stack_config();
    let tenant = testing::unique("opsdlq");
    let upload = uuid::Uuid::now_v7().to_string();
    let group = testing::unique("ops-projector");
    for topic in [topics::LIFECYCLE, topics::TENANT_ADMIN, topics::PROGRESS] {
        testing::start_group_at_end(&config, &group, topic)
            .await
            .expect("position the projector's group");
    }
    let stop = CancellationToken::new();
    let projector = tokio::spawn({
        let (config, group, stop) = (config.clone(), group.clone(), stop.clone());
        async move { tributary_projections::projector::run(&config, &group, stop).await }
    });
    let _stop_on_exit = stop.clone().drop_guard();

    // The event as it should have been, and the poison: its encoding cut short.
    let event = Event::new(
        EventMeta::new(&tenant, Some(upload.clone()), "ops-tests", &upload, None),
        UploadInitiated {
            filename: "redriven.jpg".into(),
            size: 1234,
            content_type: "image/jpeg".into(),
            bucket: "tributary".into(),
            object_key: format!("uploads/{tenant}/{upload}/original"),
            s3_upload_id: "s3-redrive".into(),
            part_size: 5_242_880,
            part_count: 1,
            sha256: None,
            metadata: Default::default(),
            expires_at: now_micros() + 86_400_000_000,
        },
    );
    let catalog = SchemaCatalog::embedded().expect("catalog");
    let good = catalog.encode(&event).expect("encode");
    let poison = &good[..good.len() - 8];
    let producer = Producer::new(&config.kafka, "ops-tests").expect("producer");
    let sent = producer
        .send(
            topics::LIFECYCLE,
            tenant.as_bytes(),
            poison,
            &[
                ("event_type", b"UploadInitiated"),
                ("tenant_id", tenant.as_bytes()),
            ],
        )
        .await
        .expect("produce the poison");

    // The projector gives up on it: listed with where it came from and why.
    let letter = wait_for(
        "the poison in the dead-letter topic",
        Duration::from_secs(90),
        async || {
            let stdout = ops_ok(&[
                "dlq", "list", "--json", "--group", &group, "--tenant", &tenant,
            ]);
            json_lines(&stdout).into_iter().next()
        },
    )
    .await;
    assert_eq!(letter["group"], group.as_str());
    assert_eq!(letter["topic"], topics::LIFECYCLE);
    assert_eq!(letter["partition"], sent.partition);
    assert_eq!(letter["offset"], sent.offset);
    assert_eq!(letter["event_type"], "UploadInitiated");
    assert_eq!(letter["tenant_id"], tenant.as_str());
    assert!(
        !letter["error"].as_str().unwrap_or_default().is_empty(),
        "{letter}"
    );
    let position = letter["dlq"].as_str().expect("dlq position").to_string();

    // Shown in full: the decode error and the raw value.
    let shown: serde_json::Value =
        serde_json::from_str(&ops_ok(&["dlq", "show", &position])).expect("show json");
    assert_eq!(shown["topic"], topics::DEAD_LETTERS);
    assert_eq!(shown["headers"]["dlq_group"], group.as_str());
    assert!(shown["error"].is_string(), "{shown}");
    assert!(shown["payload_base64"].is_string(), "{shown}");

    // Re-driving it unchanged is refused: it would only poison again.
    let refused = ops(&["dlq", "redrive", &position]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("does not decode"), "{stderr}");

    // Fixed and re-driven: back on the lifecycle topic, in the tenant's partition.
    let dir = tempfile::tempdir().expect("temp dir");
    let fix = dir.path().join("fixed.json");
    std::fs::write(&fix, serde_json::to_vec(&event).expect("json")).expect("write fix");
    let stdout = ops_ok(&[
        "dlq",
        "redrive",
        &position,
        "--event",
        fix.to_str().expect("utf-8 path"),
    ]);
    let redriven = &json_lines(&stdout)[0];
    assert_eq!(redriven["redriven"], position.as_str());
    assert_eq!(redriven["topic"], topics::LIFECYCLE);
    assert_eq!(redriven["partition"], sent.partition);

    // The projector applies it: the upload is in the read models.
    let session = cql::connect(&config.cql).await.expect("cql");
    let readers = ReadModels::prepare(&session, &config.cql.keyspace)
        .await
        .expect("readers");
    let row = wait_for(
        "the re-driven upload's projection",
        Duration::from_secs(90),
        async || readers.upload(&session, &upload).await.ok().flatten(),
    )
    .await;
    assert_eq!(row.tenant_id, tenant);
    assert_eq!(row.filename.as_deref(), Some("redriven.jpg"));
    assert_eq!(row.state.as_deref(), Some("initiated"));

    // The re-driven record says where it came from.
    let stdout = ops_ok(&[
        "tail",
        "lifecycle",
        "--tenant",
        &tenant,
        "--offset",
        &redriven["offset"].to_string(),
        "--max",
        "1",
        "--timeout",
        "30",
    ]);
    let line = &json_lines(&stdout)[0];
    assert_eq!(line["headers"]["dlq_redriven_from"], position.as_str());
    assert_eq!(line["event"], serde_json::to_value(&event).expect("json"));

    stop.cancel();
    projector
        .await
        .expect("projector task")
        .expect("projector ran");
}
