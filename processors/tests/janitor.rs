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
