//! With storage (Garage) stopped, initiation answers 503 with `Retry-After`, emits no event
//! and keeps no reservation; with storage back, it works again.
//!
//! Its own test binary: it stops the shared S3 server, which no other test may see.

mod common;

use std::time::Duration;

use common::{
    Api, EngineStopped, assert_initiation_unavailable, initiate_after_recovery, lifecycle_events,
    now_ms, types,
};
use serde_json::json;

#[tokio::test]
async fn storage_down_means_503_no_event_no_reservation_then_recovery() {
    let api = Api::start(&[]).await;
    let tenant = api.create_tenant(json!({})).await;
    let since = now_ms();
    let body =
        json!({"filename": "a.bin", "size": 4321, "content_type": "application/octet-stream"});

    {
        let _stopped = EngineStopped::stop("garage");
        assert_initiation_unavailable(&api, &tenant, &body, Duration::from_secs(25)).await;
    }
    assert!(
        lifecycle_events(&tenant.id, since).is_empty(),
        "a refused initiation emits nothing"
    );

    // Storage is back (the guard restarted it): initiation works again.
    let session = initiate_after_recovery(&api, &tenant, &body, Duration::from_secs(60)).await;
    assert_eq!(api.tenant_usage(&tenant).await, (4321, 1));
    let events = lifecycle_events(&tenant.id, since);
    assert_eq!(types(&events), ["UploadInitiated"]);
    assert_eq!(
        events[0].meta.upload_id.as_deref(),
        session["upload_id"].as_str()
    );
}
