//! A tenant with 100,000 uploads lists newest first, in stable pages, from the real
//! Cassandra after a real projection.

mod common;

use std::time::{Duration, Instant};

use common::{Projector, publish, publisher};
use tributary_projections::read::ReadModels;
use tributary_runtime::{cql, testing};
use tributary_schemas::{Event, EventMeta, UploadInitiated};

const UPLOADS: usize = 100_000;

fn initiated(tenant: &str, n: usize) -> Event {
    let upload = uuid::Uuid::now_v7().to_string();
    Event::new(
        EventMeta::new(tenant, Some(upload.clone()), "tests", &upload, None),
        UploadInitiated {
            filename: format!("f{n}.bin"),
            size: 1,
            content_type: "application/octet-stream".into(),
            bucket: "tributary".into(),
            object_key: format!("uploads/{tenant}/{upload}/original"),
            s3_upload_id: "s".into(),
            part_size: 1,
            part_count: 1,
            sha256: None,
            metadata: Default::default(),
            expires_at: tributary_schemas::now_micros(),
        },
    )
}

#[tokio::test]
async fn a_tenant_with_100k_uploads_lists_newest_first_with_stable_cursors() {
    let _exclusive = common::exclusive().await;
    let config = testing::stack_config();
    let session = cql::connect(&config.cql).await.expect("cql");
    let group = testing::unique("projector-listing");
    common::start_at_end(&config, &group).await;
    let live = Projector::start(&config, &group);
    let tenant = testing::unique("big-tenant");
    let events: Vec<Event> = (0..UPLOADS).map(|n| initiated(&tenant, n)).collect();
    let publisher = publisher(&config);
    publish(&publisher, &events).await;

    let readers = ReadModels::prepare(&session, &config.cql.keyspace)
        .await
        .expect("readers");
    // Wait until the oldest one is listed on the last page... simpler: until the count is right.
    let deadline = Instant::now() + Duration::from_secs(300);
    let newest: Vec<String> = {
        let mut ids: Vec<String> = events
            .iter()
            .filter_map(|e| e.meta.upload_id.clone())
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    };
    loop {
        let first = readers
            .upload(&session, newest.last().expect("oldest"))
            .await
            .expect("read");
        let last = readers.upload(&session, &newest[0]).await.expect("read");
        if first.is_some() && last.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "100k uploads not projected within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut listed = Vec::with_capacity(UPLOADS);
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = readers
            .list(&session, &tenant, cursor.as_deref(), 500)
            .await
            .expect("list");
        pages += 1;
        if pages == 10 {
            // Uploads created while paging are newer than the cursor: they never show up in
            // the pages still to come, and nothing is skipped or repeated.
            let extra: Vec<Event> = (0..20).map(|n| initiated(&tenant, UPLOADS + n)).collect();
            publish(&publisher, &extra).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        listed.extend(page.uploads.into_iter().map(|u| u.upload_id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    live.stop().await;
    assert_eq!(
        listed.len(),
        UPLOADS,
        "every upload listed once, none of the later ones"
    );
    assert_eq!(listed, newest, "newest first, without gaps or repeats");
}
