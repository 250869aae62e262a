//! With Kafka stopped, initiation answers 503 with `Retry-After` — never 2xx, since a 2xx
//! promises the event is durable — and leaves nothing half-created: no reservation, no
//! multipart upload. With Kafka back, it works again.
//!
//! Its own test binary: it stops the shared broker, which no other test may see.

mod common;

use std::time::{Duration, Instant};

use common::{Api, EngineStopped};
use serde_json::json;

#[tokio::test]
async fn kafka_down_means_503_and_nothing_half_created_then_recovery() {
    let api = Api::start(&[("TRIBUTARY_KAFKA__DELIVERY_TIMEOUT_MS", "3000")]).await;
    let tenant = api.create_tenant(json!({})).await;
    let body =
        json!({"filename": "a.bin", "size": 1234, "content_type": "application/octet-stream"});
    let config = tributary_runtime::testing::stack_config();
    let s3 = tributary_runtime::s3::client(&config.s3);
    let open_multiparts = || async {
        s3.list_multipart_uploads()
            .bucket(&config.s3.bucket)
            .prefix(format!("uploads/{}/", tenant.id))
            .send()
            .await
            .expect("list multipart uploads")
            .uploads()
            .len()
    };

    {
        let _stopped = EngineStopped::stop("kafka");
        let started = Instant::now();
        let response = api
            .http
            .post(api.url("/v1/uploads"))
            .bearer_auth(&tenant.key)
            .json(&body)
            .send()
            .await
            .expect("answer while kafka is down");
        assert_eq!(response.status(), 503);
        assert!(
            response.headers().contains_key("retry-after"),
            "503 carries Retry-After"
        );
        let error: serde_json::Value = response.json().await.expect("json error");
        assert_eq!(error["error"]["code"], "unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "answered within the delivery timeout"
        );
        assert_eq!(
            api.tenant_usage(&tenant).await,
            (0, 0),
            "the reservation was released"
        );
        assert_eq!(
            open_multiparts().await,
            0,
            "the multipart upload was aborted"
        );
    }

    // Kafka is back (the guard restarted it): initiation works again once the producer has
    // reconnected.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, session) = api.initiate(&tenant, &body).await;
        if status == 201 {
            assert!(session["upload_id"].is_string());
            break;
        }
        assert_eq!(status, 503, "only 503 while recovering: {session}");
        assert!(Instant::now() < deadline, "no recovery within 90 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(api.tenant_usage(&tenant).await, (1234, 1));
    assert_eq!(open_multiparts().await, 1);
}
