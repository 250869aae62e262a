//! Projector benchmark: a burst of lifecycle events (a generated multi-tenant workload) is
//! published to the local Kafka as fast as the producer goes, while a live projector (the
//! same code as the `projector` binary, in this process, its own consumer group) folds it
//! into the local Cassandra. Reports sustained events/s and how long after the burst ended
//! the projection caught up. Run by `bench/projector.sh`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tributary_runtime::events::EventPublisher;
use tributary_runtime::kafka::Producer;
use tributary_runtime::{cql, testing, topics};
use tributary_schemas::{
    Event, EventMeta, PartConfirmed, SchemaCatalog, UploadAssembled, UploadCompletionRequested,
    UploadInitiated, UploadReady, UploadValidated, VariantProduced,
};

/// The life of one upload: 9 events.
fn upload_events(tenant: &str) -> Vec<Event> {
    let upload = uuid::Uuid::now_v7().to_string();
    let meta = || EventMeta::new(tenant, Some(upload.clone()), "bench", &upload, None);
    let mut events = vec![Event::new(
        meta(),
        UploadInitiated {
            filename: "photo.jpg".into(),
            size: 10_485_760,
            content_type: "image/jpeg".into(),
            bucket: "tributary".into(),
            object_key: format!("uploads/{tenant}/{upload}/original"),
            s3_upload_id: "s3".into(),
            part_size: 5_242_880,
            part_count: 2,
            sha256: None,
            metadata: Default::default(),
            expires_at: tributary_schemas::now_micros() + 86_400_000_000,
        },
    )];
    for part in 1..=2 {
        events.push(Event::new(
            meta(),
            PartConfirmed {
                part_number: part,
                etag: "\"e\"".into(),
                size: 5_242_880,
            },
        ));
    }
    events.push(Event::new(meta(), UploadCompletionRequested {}));
    events.push(Event::new(
        meta(),
        UploadAssembled {
            size: 10_485_760,
            etag: "\"m\"".into(),
            sha256: None,
        },
    ));
    events.push(Event::new(
        meta(),
        UploadValidated {
            detected_content_type: "image/jpeg".into(),
        },
    ));
    for (variant, side) in [("display", 1280), ("thumb", 320)] {
        events.push(Event::new(
            meta(),
            VariantProduced {
                variant: variant.into(),
                object_key: format!("uploads/{tenant}/{upload}/variants/{variant}.webp"),
                content_type: "image/webp".into(),
                size: 50_000,
                width: Some(side),
                height: Some(side * 3 / 4),
                placeholder: None,
            },
        ));
    }
    events.push(Event::new(meta(), UploadReady { variant_count: 2 }));
    events
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let target: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let tenants = 50;
    let config = testing::stack_config();
    let session = cql::connect(&config.cql).await?;
    let group = testing::unique("bench-projector");
    testing::start_group_at_end(&config, &group, topics::LIFECYCLE).await?;
    let stop = CancellationToken::new();
    let projector = tokio::spawn({
        let (config, group, stop) = (config.clone(), group.clone(), stop.clone());
        async move { tributary_projections::projector::run(&config, &group, stop).await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;

    let names: Vec<String> = (0..tenants)
        .map(|t| testing::unique(&format!("bench{t}")))
        .collect();
    let per_tenant = target / tenants / 9;
    let by_tenant: Vec<Vec<Event>> = names
        .iter()
        .map(|t| (0..per_tenant).flat_map(|_| upload_events(t)).collect())
        .collect();
    let total: usize = by_tenant.iter().map(Vec::len).sum();
    let last_of_tenant: Vec<String> = by_tenant
        .iter()
        .filter_map(|events| events.last().and_then(|e| e.meta.upload_id.clone()))
        .collect();
    let publisher = EventPublisher::new(
        Producer::new(&config.kafka, "bench")?,
        Arc::new(SchemaCatalog::embedded()?),
    );

    let started = Instant::now();
    futures::stream::iter(by_tenant)
        .for_each_concurrent(tenants, |events| {
            let publisher = publisher.clone();
            async move {
                // One tenant's events in order, many in flight (the idempotent producer keeps a
                // partition's order).
                futures::stream::iter(events.iter())
                    .map(|e| publisher.publish(e))
                    .buffered(256)
                    .for_each(|r| async move {
                        r.expect("publish");
                    })
                    .await;
            }
        })
        .await;
    let published = started.elapsed();

    // Caught up when each tenant's last upload is `ready` (its partition is applied in order).
    let query = session
        .prepare(format!(
            "SELECT state FROM {}.uploads_by_id WHERE upload_id = ?",
            config.cql.keyspace
        ))
        .await?;
    let mut pending = last_of_tenant;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            let state = session
                .execute_unpaged(&query, (&id,))
                .await?
                .into_rows_result()?
                .maybe_first_row::<(Option<String>,)>()?
                .and_then(|(s,)| s);
            if state.as_deref() != Some("ready") {
                still.push(id);
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "not caught up within 600 s"
        );
    }
    let projected = started.elapsed();
    stop.cancel();
    projector.await??;
    println!(
        "{{\"events\":{total},\"publish_secs\":{:.3},\"projected_secs\":{:.3},\"events_per_sec\":{:.0},\"lag_after_burst_secs\":{:.3}}}",
        published.as_secs_f64(),
        projected.as_secs_f64(),
        total as f64 / projected.as_secs_f64(),
        (projected - published).as_secs_f64()
    );
    Ok(())
}
