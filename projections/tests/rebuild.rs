//! The read models against the real stack: projected live, redelivered, rebuilt from offset
//! 0 into a new version, switched, and through a Cassandra outage — always the same rows.

mod common;

use std::time::Duration;

use common::{
    Projector, commit_offsets, dump, projected_ends, publish, publisher, start_at_end,
    wait_projected, workload,
};
use tributary_projections::projector::{self, RebuildOptions};
use tributary_projections::read::ReadModels;
use tributary_projections::versions;
use tributary_runtime::{cql, testing};

const WITHIN: Duration = Duration::from_secs(120);

#[tokio::test]
async fn live_projection_equals_a_rebuild_from_offset_zero_and_redelivery_changes_nothing() {
    let _exclusive = common::exclusive().await;
    let config = testing::stack_config();
    let session = cql::connect(&config.cql).await.expect("cql");
    let base = config.cql.keyspace.clone();
    let group = testing::unique("projector-live");
    start_at_end(&config, &group).await;
    let before = projected_ends(&config).await;

    let work = workload(4, 25);
    let live = Projector::start(&config, &group);
    publish(&publisher(&config), &work.events).await;
    let active = versions::keyspace_of(
        &base,
        versions::active(&session, &base).await.expect("active"),
    );
    let projected = wait_projected(&session, &active, &work, WITHIN).await;
    assert_eq!(
        projected
            .iter()
            .filter(|l| l.starts_with("upload_timeline "))
            .count(),
        work.lifecycle_events
    );
    live.stop().await;

    // The typed read side over the new tables: tenants, keys, usage.
    let readers = ReadModels::prepare(&session, &base).await.expect("readers");
    for tenant in &work.tenants {
        let row = readers
            .tenant(&session, tenant)
            .await
            .expect("tenant")
            .expect("tenant projected");
        assert_eq!(row.byte_quota, Some(common::FINAL_QUOTA));
        assert_eq!(row.allowed_content_types, ["image/*", "video/*"]);
        let usage = readers.tenant_usage(&session, tenant).await.expect("usage");
        assert_eq!(usage.stored_bytes, work.expected_usage[tenant], "{tenant}");
        assert_eq!((usage.reserved_bytes, usage.active_uploads), (0, 0));
        let keys = readers.api_keys(&session, tenant).await.expect("keys");
        assert_eq!(keys.len(), 2);
    }
    let now = tributary_schemas::now_micros() / 1000;
    let revoked = readers
        .api_key(&session, &work.keys[0])
        .await
        .expect("key")
        .expect("projected");
    assert!(!revoked.is_valid_at(now), "{revoked:?}");
    let live_key = readers
        .api_key(&session, &work.keys[1])
        .await
        .expect("key")
        .expect("projected");
    assert!(live_key.is_valid_at(now), "{live_key:?}");
    // Progress: the last report of the batch wins, earlier ones are not projected over it.
    let mut with_progress = 0;
    for upload in &work.uploads {
        if let Some(progress) = readers.progress(&session, upload).await.expect("progress") {
            assert_eq!((progress.percent, progress.bytes_done), (100.0, 1000));
            with_progress += 1;
        }
    }
    assert_eq!(
        with_progress,
        work.uploads.len() * 4 / 5,
        "ready uploads report progress"
    );
    assert_eq!(
        live_key.key_hash.as_deref(),
        Some(&*format!("sha256:{}", work.keys[1]))
    );

    // Every event delivered a second time (the group rewound to before the workload).
    commit_offsets(&config, &group, &before).await;
    let again = Projector::start(&config, &group);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let redelivered = wait_projected(&session, &active, &work, WITHIN).await;
    again.stop().await;
    common::assert_same(
        &projected,
        &redelivered,
        "redelivery changed the read models",
    );

    // A rebuild from offset 0 into a new version, not activated: the same rows.
    let options = RebuildOptions {
        group: testing::unique("projector-rebuild"),
        activate: false,
        handover: Duration::ZERO,
    };
    let mut reports = 0;
    let report = projector::rebuild(&config, &options, |_, _| reports += 1)
        .await
        .expect("rebuild");
    assert!(reports > 0, "the rebuild reported progress");
    assert!(!report.activated);
    assert!(report.events >= work.events.len() as u64);
    let rebuilt = dump(&session, &report.keyspace, &work).await;
    versions::drop_version(&session, &base, report.version)
        .await
        .expect("drop");
    common::assert_same(
        &projected,
        &rebuilt,
        "the rebuilt read models differ from the live ones",
    );
}

#[tokio::test]
async fn a_rebuild_switches_readers_and_the_live_projector_atomically() {
    let _exclusive = common::exclusive().await;
    let config = testing::stack_config();
    let session = cql::connect(&config.cql).await.expect("cql");
    let base = config.cql.keyspace.clone();
    let group = testing::unique("projector-live");
    start_at_end(&config, &group).await;
    let live = Projector::start(&config, &group);
    let first = workload(2, 10);
    publish(&publisher(&config), &first.events).await;
    let previous = versions::active(&session, &base).await.expect("active");
    wait_projected(
        &session,
        &versions::keyspace_of(&base, previous),
        &first,
        WITHIN,
    )
    .await;
    let readers = ReadModels::prepare(&session, &base).await.expect("readers");
    assert_eq!(readers.version(), previous);

    let options = RebuildOptions {
        group: testing::unique("projector-rebuild"),
        activate: true,
        handover: Duration::from_secs(1),
    };
    let report = projector::rebuild(&config, &options, |_, _| {})
        .await
        .expect("rebuild");
    assert!(report.activated);
    assert_eq!(
        versions::active(&session, &base).await.expect("active"),
        report.version
    );
    assert!(
        readers.refresh(&session).await.expect("refresh"),
        "readers follow the switch"
    );
    assert_eq!(readers.version(), report.version);
    let upload = readers
        .upload(&session, &first.uploads[0])
        .await
        .expect("read")
        .expect("present");
    assert!(matches!(
        upload.state.as_deref(),
        Some("ready" | "rejected")
    ));

    // The live projector followed: events published after the switch reach the new version.
    let second = workload(1, 5);
    publish(&publisher(&config), &second.events).await;
    wait_projected(&session, &report.keyspace, &second, WITHIN).await;

    // Back to the previous version; the rebuilt one is dropped explicitly.
    assert!(
        versions::activate(&session, &base, report.version, previous)
            .await
            .expect("activate")
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    live.stop().await;
    versions::drop_version(&session, &base, report.version)
        .await
        .expect("drop");
    assert!(
        !versions::existing(&session, &base)
            .await
            .expect("list")
            .contains(&report.version)
    );
}

#[tokio::test]
async fn cassandra_down_mid_stream_loses_and_reorders_nothing() {
    let _exclusive = common::exclusive().await;
    let config = testing::stack_config();
    let base = config.cql.keyspace.clone();
    let group = testing::unique("projector-outage");
    start_at_end(&config, &group).await;
    let live = Projector::start(&config, &group);
    let work = workload(3, 20);
    let half = work.events.len() / 2;
    let publisher = publisher(&config);
    publish(&publisher, &work.events[..half]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    common::devstack(&["stop", "cassandra"]);
    // The rest arrives while the read models cannot be written.
    publish(&publisher, &work.events[half..]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    common::devstack(&["start", "cassandra"]);

    let session = cql::connect(&config.cql).await.expect("cql after restart");
    let active = versions::keyspace_of(
        &base,
        versions::active(&session, &base).await.expect("active"),
    );
    let projected = wait_projected(&session, &active, &work, Duration::from_secs(180)).await;
    live.stop().await;
    // Order: every upload's final state is the last event of its life, not an earlier one.
    let finished = projected
        .iter()
        .filter(|l| l.starts_with("uploads_by_id "))
        .filter(|l| l.contains("\"ready\"") || l.contains("\"rejected\""))
        .count();
    assert_eq!(finished, work.uploads.len());
}
