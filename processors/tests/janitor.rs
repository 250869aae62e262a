//! The janitor against the real stack: abandoned sessions expire, their parts are freed in
//! storage and their quota is released.

mod common;

use std::time::Duration;

use common::{Pipeline, events, of_upload};
use serde_json::json;
use tributary_runtime::{testing, topics};

#[tokio::test]
async fn an_abandoned_session_expires_frees_its_parts_and_its_quota() {
    let since = common::now_ms();
    let pipeline = Pipeline::start(
        &[("TRIBUTARY_API__SESSION_TTL_SECS", "3")],
        &[
            ("TRIBUTARY_PROCESSORS__SWEEP_INTERVAL_SECS", "1"),
            ("TRIBUTARY_PROCESSORS__EXPIRY_GRACE_SECS", "1"),
        ],
    )
    .await;
    let tenant = pipeline.create_tenant(json!({})).await;
    let size = 6 * 1024 * 1024;
    let session = pipeline
        .initiate(&tenant, "abandoned.bin", "application/octet-stream", size)
        .await;
    let upload_id = session["upload_id"]
        .as_str()
        .expect("upload_id")
        .to_string();
    let url = session["parts"][0]["url"].as_str().expect("url");
    let put = pipeline
        .http
        .put(url)
        .body(vec![7u8; size])
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 200);
    assert_eq!(pipeline.usage(&tenant).await, (size as i64, 1));

    // Never completed: the janitor expires it a few seconds after its deadline.
    let status = pipeline
        .wait_terminal(&tenant, &upload_id, Duration::from_secs(60))
        .await;
    assert_eq!(status["state"], "expired", "{status}");
    let log = events(topics::LIFECYCLE, &tenant.id, since);
    assert_eq!(of_upload(&log, &upload_id, "UploadExpired").len(), 1);

    // The multipart upload is gone from storage (its part with it).
    let config = testing::stack_config();
    let s3 = tributary_runtime::s3::client(&config.s3);
    let listed = s3
        .list_parts()
        .bucket(&config.s3.bucket)
        .key(
            session["object_key"]
                .as_str()
                .unwrap_or(&format!("uploads/{}/{upload_id}/original", tenant.id)),
        )
        .upload_id(session["s3_upload_id"].as_str().unwrap_or_default())
        .send()
        .await;
    if session["s3_upload_id"].is_string() {
        assert!(listed.is_err(), "the multipart upload should be aborted");
    }
    let in_progress = s3
        .list_multipart_uploads()
        .bucket(&config.s3.bucket)
        .prefix(format!("uploads/{}/{upload_id}/", tenant.id))
        .send()
        .await
        .expect("list multipart uploads");
    assert!(
        in_progress.uploads().is_empty(),
        "{:?}",
        in_progress.uploads()
    );

    // Quota released, and completing now is refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while pipeline.usage(&tenant).await != (0, 0) {
        assert!(std::time::Instant::now() < deadline, "quota not released");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let complete = pipeline
        .http
        .post(pipeline.url(&format!("/v1/uploads/{upload_id}/complete")))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .expect("complete");
    assert!(complete.status().is_client_error(), "{}", complete.status());
}

#[tokio::test]
async fn an_upload_stuck_after_completion_is_failed_by_the_watchdog() {
    let since = common::now_ms();
    let mut pipeline = Pipeline::start(
        &[],
        &[
            ("TRIBUTARY_PROCESSORS__SWEEP_INTERVAL_SECS", "1"),
            ("TRIBUTARY_PROCESSORS__PROCESSING_TIMEOUT_SECS", "6"),
        ],
    )
    .await;
    let tenant = pipeline.create_tenant(json!({})).await;

    // A file that finishes normally: the watchdog must leave it alone.
    let fine = pipeline
        .upload(
            &tenant,
            "notes.bin",
            "application/octet-stream",
            &[1u8; 1000],
        )
        .await;
    let status = pipeline
        .wait_terminal(&tenant, &fine, Duration::from_secs(60))
        .await;
    assert_eq!(status["state"], "ready", "{status}");

    // An image whose media job nobody runs (the transformer is down): stuck in processing.
    pipeline.kill_processor("transformer");
    let stuck = pipeline
        .upload(
            &tenant,
            "photo.jpg",
            "image/jpeg",
            &common::oriented_jpeg(64, 48, 1),
        )
        .await;
    let status = pipeline
        .wait_terminal(&tenant, &stuck, Duration::from_secs(60))
        .await;
    assert_eq!(status["state"], "failed", "{status}");

    let log = events(topics::LIFECYCLE, &tenant.id, since);
    let failed = of_upload(&log, &stuck, "ProcessingFailed");
    assert_eq!(failed.len(), 1, "exactly one watchdog failure");
    let tributary_schemas::EventPayload::ProcessingFailed(failure) = &failed[0].payload else {
        panic!("not a ProcessingFailed: {:?}", failed[0]);
    };
    assert_eq!(failure.stage, "watchdog");
    assert!(
        failure.reason.starts_with("processing_timeout")
            && failure.reason.contains("UploadValidated"),
        "{}",
        failure.reason
    );
    // Its concurrency slot is released (the bytes stay: the original is stored).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pipeline.usage(&tenant).await.1 != 0 {
        assert!(std::time::Instant::now() < deadline, "slot not released");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The finished upload's deadline passed too, and it was not touched.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = events(topics::LIFECYCLE, &tenant.id, since);
    assert!(of_upload(&log, &fine, "ProcessingFailed").is_empty());
    assert_eq!(pipeline.status(&tenant, &fine).await["state"], "ready");
}
