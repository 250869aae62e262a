//! With Kafka stopped, initiation answers 503 with `Retry-After` — never 2xx, since a 2xx
//! promises the event is durable — and leaves nothing half-created: no reservation, no
//! multipart upload. With Kafka back, it works again.
//!
//! Its own test binary: it stops the shared broker, which no other test may see.

mod common;

use std::time::Duration;

use common::{Api, EngineStopped, assert_initiation_unavailable, initiate_after_recovery};
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
        // Within the delivery timeout (3 s here) plus the undoing of the other steps.
        assert_initiation_unavailable(&api, &tenant, &body, Duration::from_secs(20)).await;
        assert_eq!(
            open_multiparts().await,
            0,
            "the multipart upload was aborted"
        );
    }

    // Kafka is back (the guard restarted it): initiation works again once the producer has
    // reconnected.
    let session = initiate_after_recovery(&api, &tenant, &body, Duration::from_secs(90)).await;
    assert!(session["upload_id"].is_string());
    assert_eq!(api.tenant_usage(&tenant).await, (1234, 1));
    assert_eq!(open_multiparts().await, 1);
}
