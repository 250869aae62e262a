//! The S3 client against the local Garage server: a part uploaded through a presigned URL
//! (as a browser would) lands in storage, and the server rejects expired and tampered URLs —
//! the property the whole direct-to-storage design rests on.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tributary_runtime::{s3, testing};

#[tokio::test]
async fn presigned_part_upload_works_and_expired_or_tampered_urls_are_rejected() {
    let config = testing::stack_config();
    let client = s3::client(&config.s3);
    s3::check_bucket(&client, &config.s3)
        .await
        .expect("local garage bucket");
    let bucket = config.s3.bucket.as_str();
    let key = format!("uploads/{}/original", testing::unique("tenant"));

    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(&key)
        .content_type("application/octet-stream")
        .send()
        .await
        .expect("create multipart upload");
    let upload_id = created.upload_id().expect("upload id").to_string();

    let presign = |expires: Duration| {
        let client = client.clone();
        let key = key.clone();
        let upload_id = upload_id.clone();
        async move {
            client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(1)
                .presigned(PresigningConfig::expires_in(expires).expect("valid expiry"))
                .await
                .expect("presign")
                .uri()
                .to_string()
        }
    };
    let http = reqwest::Client::new();
    let body: Vec<u8> = (0..5 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    // Refused requests carry a small body: the server answers 403 before reading a large one
    // and closes the connection, which the client would see as a broken pipe instead.
    let probe = vec![7_u8; 1024];

    // Tampered: one character of the signature changed.
    let url = presign(Duration::from_secs(300)).await;
    let tampered = tamper_signature(&url);
    let response = http
        .put(&tampered)
        .body(probe.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 403, "tampered signature must be refused");
    // Tampered: a signed parameter changed (another part number).
    let other_part = url.replace("partNumber=1", "partNumber=2");
    assert_ne!(other_part, url);
    let response = http
        .put(&other_part)
        .body(probe.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(
        response.status(),
        403,
        "changed signed parameter must be refused"
    );

    // Expired.
    let short = presign(Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let response = http
        .put(&short)
        .body(probe.clone())
        .send()
        .await
        .expect("put");
    // AWS answers 403 "Request has expired"; Garage answers 400 "Date is too old". Clients
    // (our page, the CLI) re-sign on either.
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    assert!(
        matches!(status, 400 | 403),
        "expired URL must be refused, got {status}: {text}"
    );
    assert!(
        text.contains("too old") || text.contains("expired"),
        "reason given: {text}"
    );

    // The genuine URL works, and the server reports the part it stored.
    let response = http.put(&url).body(body.clone()).send().await.expect("put");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag header")
        .to_string();
    let parts = client
        .list_parts()
        .bucket(bucket)
        .key(&key)
        .upload_id(&upload_id)
        .send()
        .await
        .expect("list parts");
    let stored = parts.parts().first().expect("one part");
    assert_eq!(stored.part_number(), Some(1));
    assert_eq!(stored.size(), Some(body.len() as i64));
    assert_eq!(stored.e_tag(), Some(etag.as_str()));

    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(&key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(&etag).build())
                .build(),
        )
        .send()
        .await
        .expect("complete");
    let object = client
        .get_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .expect("get");
    let bytes = object.body.collect().await.expect("body").into_bytes();
    assert_eq!(bytes.as_ref(), body.as_slice());
    client
        .delete_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .expect("delete");
}

/// Flips one hex digit of `X-Amz-Signature`.
fn tamper_signature(url: &str) -> String {
    let marker = "X-Amz-Signature=";
    let start = url.find(marker).expect("signed url") + marker.len();
    let mut bytes = url.as_bytes().to_vec();
    bytes[start] = if bytes[start] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).expect("ascii url")
}

/// The fast presigner's URLs against the same server: accepted when genuine, refused when
/// tampered or expired.
#[tokio::test]
async fn fast_presigner_urls_are_accepted_and_tampered_or_expired_ones_refused() {
    use tributary_runtime::presign::Presigner;

    let config = testing::stack_config();
    let client = s3::client(&config.s3);
    let presigner = Presigner::new(&config.s3, config.s3.credential_source()).expect("presigner");
    let bucket = config.s3.bucket.as_str();
    let key = format!(
        "uploads/{}/with space ü/original",
        testing::unique("tenant")
    );
    let upload_id = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .expect("create")
        .upload_id()
        .expect("id")
        .to_string();
    let now = || tributary_schemas::now_micros() / 1_000_000;
    let http = reqwest::Client::new();
    let probe = vec![1_u8; 1024];

    let url = presigner.upload_part(bucket, &key, &upload_id, 1, 300, now());
    let tampered = tamper_signature(&url);
    assert_eq!(
        http.put(&tampered)
            .body(probe.clone())
            .send()
            .await
            .expect("put")
            .status(),
        403
    );
    let other_part = url.replace("partNumber=1", "partNumber=2");
    assert_eq!(
        http.put(&other_part)
            .body(probe.clone())
            .send()
            .await
            .expect("put")
            .status(),
        403
    );
    let expired = presigner.upload_part(bucket, &key, &upload_id, 1, 1, now() - 10);
    let status = http
        .put(&expired)
        .body(probe.clone())
        .send()
        .await
        .expect("put")
        .status()
        .as_u16();
    assert!(matches!(status, 400 | 403), "expired: {status}");

    let response = http
        .put(&url)
        .body(probe.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .to_string();
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(&key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(&etag).build())
                .build(),
        )
        .send()
        .await
        .expect("complete");
    let got = http
        .get(presigner.get_object(bucket, &key, 60, now()))
        .send()
        .await
        .expect("get");
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.expect("body").as_ref(), probe.as_slice());
    client
        .delete_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .expect("delete");
}
