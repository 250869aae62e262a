//! With storage (Garage) stopped, initiation answers 503 with `Retry-After`, emits no event
//! and keeps no reservation; with storage back, it works again.
//!
//! Its own test binary: it stops the shared S3 server, which no other test may see.

mod common;

use std::time::{Duration, Instant};

use common::{Api, EngineStopped, lifecycle_events, now_ms, types};
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
        let started = Instant::now();
        let response = api
            .http
            .post(api.url("/v1/uploads"))
            .bearer_auth(&tenant.key)
            .json(&body)
            .send()
            .await
            .expect("answer while storage is down");
        assert_eq!(response.status(), 503);
        assert!(
            response.headers().contains_key("retry-after"),
            "503 carries Retry-After"
        );
        let error: serde_json::Value = response.json().await.expect("json error");
        assert_eq!(error["error"]["code"], "unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "answered within the storage timeout"
        );
        assert_eq!(
            api.tenant_usage(&tenant).await,
            (0, 0),
            "the reservation was released"
        );
    }
    assert!(
        lifecycle_events(&tenant.id, since).is_empty(),
        "a refused initiation emits nothing"
    );

    // Storage is back (the guard restarted it): initiation works again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let upload_id = loop {
        let (status, session) = api.initiate(&tenant, &body).await;
        if status == 201 {
            break session["upload_id"]
                .as_str()
                .expect("upload id")
                .to_string();
        }
        assert_eq!(status, 503, "only 503 while recovering: {session}");
        assert!(Instant::now() < deadline, "no recovery within 60 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(api.tenant_usage(&tenant).await, (4321, 1));
    let events = lifecycle_events(&tenant.id, since);
    assert_eq!(types(&events), ["UploadInitiated"]);
    assert_eq!(
        events[0].meta.upload_id.as_deref(),
        Some(upload_id.as_str())
    );
}
