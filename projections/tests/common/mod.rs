//! Shared helpers of the projection tests: a generated multi-tenant workload published to the
//! real Kafka, canonical dumps of the read models from the real Cassandra, and control of the
//! in-process projector.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use scylla::client::session::Session;
use tokio_util::sync::CancellationToken;
use tributary_runtime::events::EventPublisher;
use tributary_runtime::kafka::Producer;
use tributary_runtime::{Config, testing, topics};
use tributary_schemas::{
    ApiKeyIssued, ApiKeyRevoked, Event, EventMeta, MediaJobRequested, PartConfirmed, QuotaChanged,
    SchemaCatalog, TenantCreated, UploadAssembled, UploadCompletionRequested, UploadInitiated,
    UploadProgress, UploadReady, UploadRejected, UploadValidated, VariantProduced,
};

/// The topics the projector reads.
pub const PROJECTED: &[&str] = &[topics::LIFECYCLE, topics::TENANT_ADMIN, topics::PROGRESS];

/// The byte quota every workload tenant ends with (set by its last admin event).
pub const FINAL_QUOTA: i64 = 777_000_000;

/// Tests of this binary share the projector's versions and the engines: one at a time.
pub async fn exclusive() -> tokio::sync::OwnedMutexGuard<()> {
    static LOCK: OnceLock<Arc<tokio::sync::Mutex<()>>> = OnceLock::new();
    LOCK.get_or_init(Default::default)
        .clone()
        .lock_owned()
        .await
}

/// The `./devstack` script, for stopping and starting engines.
pub const DEVSTACK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../devstack");

/// Runs `./devstack ARGS`.
pub fn devstack(args: &[&str]) {
    let status = std::process::Command::new(DEVSTACK)
        .args(args)
        .status()
        .expect("run devstack");
    assert!(status.success(), "./devstack {args:?} failed");
}

/// A publisher with the embedded schema ids.
pub fn publisher(config: &Config) -> EventPublisher {
    let producer = Producer::new(&config.kafka, "projection-tests").expect("producer");
    EventPublisher::new(
        producer,
        Arc::new(SchemaCatalog::embedded().expect("catalog")),
    )
}

/// A generated workload: its tenants, uploads and events in publishing order.
pub struct Workload {
    /// Tenant ids.
    pub tenants: Vec<String>,
    /// API key ids, two per tenant: the first revoked, the second live.
    pub keys: Vec<String>,
    /// Upload ids.
    pub uploads: Vec<String>,
    /// The events.
    pub events: Vec<Event>,
    /// Lifecycle events only (what the timeline holds one row each of).
    pub lifecycle_events: usize,
    /// Per tenant: (stored bytes, uploads) the usage read model must show at the end.
    pub expected_usage: HashMap<String, i64>,
}

/// `tenants` x `uploads_per_tenant` uploads, each with its whole life: initiation, 1-3 parts,
/// completion, assembly, validation, then variants and ready, or a rejection; and each
/// tenant's administration: created, two keys issued, the first revoked, quota changed.
pub fn workload(tenants: usize, uploads_per_tenant: usize) -> Workload {
    let mut out = Workload {
        tenants: Vec::new(),
        keys: Vec::new(),
        uploads: Vec::new(),
        events: Vec::new(),
        lifecycle_events: 0,
        expected_usage: HashMap::new(),
    };
    for t in 0..tenants {
        let tenant = testing::unique(&format!("wt{t}"));
        let admin = || EventMeta::new(&tenant, None, "tests", &tenant, None);
        out.events.push(Event::new(
            admin(),
            TenantCreated {
                name: format!("tenant {t}"),
                max_file_size: 1 << 30,
                allowed_content_types: vec!["image/*".into()],
                byte_quota: 1 << 40,
                max_concurrent_uploads: 10,
            },
        ));
        let keys = [testing::unique("k"), testing::unique("k")];
        for key in &keys {
            out.events.push(Event::new(
                admin(),
                ApiKeyIssued {
                    key_id: key.clone(),
                    key_hash: format!("sha256:{key}"),
                    expires_at: None,
                },
            ));
        }
        out.events.push(Event::new(
            admin(),
            ApiKeyRevoked {
                key_id: keys[0].clone(),
            },
        ));
        out.events.push(Event::new(
            admin(),
            QuotaChanged {
                max_file_size: 1 << 30,
                allowed_content_types: vec!["image/*".into(), "video/*".into()],
                byte_quota: FINAL_QUOTA,
                max_concurrent_uploads: 20,
            },
        ));
        out.keys.extend(keys);
        let mut stored = 0;
        for u in 0..uploads_per_tenant {
            let upload = uuid::Uuid::now_v7().to_string();
            let meta = || EventMeta::new(&tenant, Some(upload.clone()), "tests", &upload, None);
            let parts = 1 + (u % 3) as i32;
            let size = i64::from(parts) * 5_242_880;
            out.events.push(Event::new(
                meta(),
                UploadInitiated {
                    filename: format!("file-{u}.jpg"),
                    size,
                    content_type: "image/jpeg".into(),
                    bucket: "tributary".into(),
                    object_key: format!("uploads/{tenant}/{upload}/original"),
                    s3_upload_id: format!("s3-{u}"),
                    part_size: 5_242_880,
                    part_count: parts,
                    sha256: None,
                    metadata: std::collections::BTreeMap::from([(
                        "album".to_string(),
                        format!("a{}", u % 4),
                    )]),
                    expires_at: tributary_schemas::now_micros() + 86_400_000_000,
                },
            ));
            for p in 1..=parts {
                out.events.push(Event::new(
                    meta(),
                    PartConfirmed {
                        part_number: p,
                        etag: format!("\"etag-{u}-{p}\""),
                        size: 5_242_880,
                    },
                ));
            }
            out.events
                .push(Event::new(meta(), UploadCompletionRequested {}));
            out.events.push(Event::new(
                meta(),
                UploadAssembled {
                    size,
                    etag: format!("\"m-{u}\""),
                    sha256: None,
                },
            ));
            if u % 5 == 4 {
                out.events.push(Event::new(
                    meta(),
                    UploadRejected {
                        reason_code: "content_type_mismatch".into(),
                        reason: "declared image/jpeg, found application/zip".into(),
                        stage: "validation".into(),
                    },
                ));
            } else {
                out.events.push(Event::new(
                    meta(),
                    UploadValidated {
                        detected_content_type: "image/jpeg".into(),
                    },
                ));
                let _ = MediaJobRequested::KIND_IMAGE;
                // Progress reports (progress topic): only the last one must be projected.
                for percent in [25.0, 50.0, 100.0] {
                    out.events.push(Event::new(
                        meta(),
                        UploadProgress {
                            stage: "transform".into(),
                            bytes_done: (percent as i64) * 10,
                            bytes_total: 1000,
                            percent,
                        },
                    ));
                }
                for (variant, side) in [("display", 1280), ("thumb", 320)] {
                    out.events.push(Event::new(
                        meta(),
                        VariantProduced {
                            variant: variant.into(),
                            object_key: format!(
                                "uploads/{tenant}/{upload}/variants/{variant}.webp"
                            ),
                            content_type: "image/webp".into(),
                            size: 1000 + i64::from(side),
                            width: Some(side),
                            height: Some(side * 3 / 4),
                            placeholder: Some("3OcRJYB4d3h/iIeHeEh3eIhw+j3A".into()),
                        },
                    ));
                }
                out.events
                    .push(Event::new(meta(), UploadReady { variant_count: 2 }));
                stored += size + (1000 + 1280) + (1000 + 320);
            }
            out.uploads.push(upload);
        }
        out.expected_usage.insert(tenant.clone(), stored);
        out.tenants.push(tenant);
    }
    out.lifecycle_events = out
        .events
        .iter()
        .filter(|e| e.topic() == topics::LIFECYCLE)
        .count();
    out
}

/// Publishes events, many in flight at once (per-tenant order holds: one partition per
/// tenant, and the idempotent producer keeps a partition's order with requests in flight).
pub async fn publish(publisher: &EventPublisher, events: &[Event]) {
    // Per tenant in order; tenants concurrently.
    let mut by_tenant: HashMap<&str, Vec<&Event>> = HashMap::new();
    for event in events {
        by_tenant
            .entry(event.meta.tenant_id.as_str())
            .or_default()
            .push(event);
    }
    futures::stream::iter(by_tenant.into_values())
        .for_each_concurrent(64, |events| async move {
            for event in events {
                publisher.publish(event).await.expect("publish");
            }
        })
        .await;
}

/// The end offset of every partition of the projected topics now.
pub async fn projected_ends(config: &Config) -> Vec<(&'static str, i32, i64)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer =
        tributary_runtime::kafka::base_client_config(&config.kafka, "projection-tests")
            .create()
            .expect("consumer");
    tokio::task::spawn_blocking(move || {
        let mut ends = Vec::new();
        for &topic in PROJECTED {
            let partitions = topics::spec(topic).expect("declared").partitions;
            for p in 0..partitions {
                let (_, high) = consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .expect("watermarks");
                ends.push((topic, p, high));
            }
        }
        ends
    })
    .await
    .expect("join")
}

/// Positions a new projector group at the end of every projected topic.
pub async fn start_at_end(config: &Config, group: &str) {
    for topic in PROJECTED {
        testing::start_group_at_end(config, group, topic)
            .await
            .expect("position the group");
    }
}

/// Commits `offsets` for `group` (positions a group, e.g. back to before a workload).
pub async fn commit_offsets(config: &Config, group: &str, offsets: &[(&'static str, i32, i64)]) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer =
        tributary_runtime::kafka::base_client_config(&config.kafka, "projection-tests")
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .expect("tpl");
    }
    tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
        .await
        .expect("join")
        .expect("commit offsets");
}

/// An in-process live projector, stopped when dropped.
pub struct Projector {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Projector {
    /// Starts `projector::run` as `group`.
    pub fn start(config: &Config, group: &str) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (config, group, stop) = (config.clone(), group.to_string(), stop.clone());
            async move {
                if let Err(error) =
                    tributary_projections::projector::run(&config, &group, stop).await
                {
                    panic!("projector failed: {error}");
                }
            }
        });
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Stops it and waits until it committed and left its group.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("projector task");
        }
    }
}

impl Drop for Projector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Every read-model row about `workload`, in `keyspace`, as sorted text lines: what "the same
/// read models" means in these tests.
pub async fn dump(session: &Session, keyspace: &str, workload: &Workload) -> Vec<String> {
    let mut lines = Vec::new();
    let per_upload = [
        "upload_progress",
        "uploads_by_id",
        "upload_parts",
        "upload_variants",
        "upload_timeline",
    ];
    for upload in &workload.uploads {
        for table in per_upload {
            let rows = session
                .query_unpaged(
                    format!("SELECT * FROM {keyspace}.{table} WHERE upload_id = ?"),
                    (upload,),
                )
                .await
                .expect("select")
                .into_rows_result()
                .expect("rows");
            for row in rows.rows::<scylla::value::Row>().expect("typed") {
                lines.push(format!("{table} {:?}", row.expect("row").columns));
            }
        }
    }
    for key in &workload.keys {
        let rows = session
            .query_unpaged(
                format!("SELECT * FROM {keyspace}.keys_by_id WHERE key_id = ?"),
                (key,),
            )
            .await
            .expect("select")
            .into_rows_result()
            .expect("rows");
        for row in rows.rows::<scylla::value::Row>().expect("typed") {
            lines.push(format!("keys_by_id {:?}", row.expect("row").columns));
        }
    }
    for tenant in &workload.tenants {
        for table in [
            "uploads_by_tenant",
            "tenant_months",
            "tenants",
            "keys_by_tenant",
            "tenant_usage_items",
        ] {
            let rows = session
                .query_unpaged(
                    format!("SELECT * FROM {keyspace}.{table} WHERE tenant_id = ? ALLOW FILTERING"),
                    (tenant,),
                )
                .await
                .expect("select")
                .into_rows_result()
                .expect("rows");
            for row in rows.rows::<scylla::value::Row>().expect("typed") {
                lines.push(format!("{table} {:?}", row.expect("row").columns));
            }
        }
    }
    lines.sort();
    lines
}

/// Waits until `keyspace` holds a timeline row for every event of `workload` and the final
/// state of every upload; returns the dump.
pub async fn wait_projected(
    session: &Session,
    keyspace: &str,
    workload: &Workload,
    within: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + within;
    let expected_timeline = workload.lifecycle_events;
    loop {
        let lines = dump(session, keyspace, workload).await;
        let timeline = lines
            .iter()
            .filter(|l| l.starts_with("upload_timeline "))
            .count();
        let finished = lines
            .iter()
            .filter(|l| {
                l.starts_with("uploads_by_id ")
                    && (l.contains("\"ready\"") || l.contains("\"rejected\""))
            })
            .count();
        // Each tenant's last admin event (the quota change) applied, and its key revoked.
        let administered = lines
            .iter()
            .filter(|l| l.starts_with("tenants ") && l.contains(&format!("BigInt({FINAL_QUOTA})")))
            .count();
        let revoked = lines
            .iter()
            // expires_at is null for every workload key; revoked_at only for revoked ones.
            .filter(|l| l.starts_with("keys_by_id ") && l.matches("None").count() == 1)
            .count();
        // Progress of every ready upload at its last report.
        let progressed = lines
            .iter()
            .filter(|l| l.starts_with("upload_progress ") && l.contains("Double(100.0)"))
            .count();
        let ready = lines
            .iter()
            .filter(|l| l.starts_with("uploads_by_id ") && l.contains("\"ready\""))
            .count();
        if timeline == expected_timeline
            && finished == workload.uploads.len()
            && progressed == ready
            && administered == workload.tenants.len()
            && revoked == workload.tenants.len()
        {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "not projected within {within:?}: {timeline}/{expected_timeline} timeline rows, {finished}/{} finished uploads, {administered}/{n} tenants, {revoked}/{n} revoked keys",
            workload.uploads.len(),
            n = workload.tenants.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Asserts two dumps are equal, showing only the lines that differ.
pub fn assert_same(left: &[String], right: &[String], what: &str) {
    let only_left: Vec<&String> = left
        .iter()
        .filter(|l| !right.contains(l))
        .take(10)
        .collect();
    let only_right: Vec<&String> = right
        .iter()
        .filter(|l| !left.contains(l))
        .take(10)
        .collect();
    assert!(
        only_left.is_empty() && only_right.is_empty() && left.len() == right.len(),
        "{what}: {} vs {} rows; only before: {only_left:#?}; only after: {only_right:#?}",
        left.len(),
        right.len()
    );
}
