//! `s3.credentials = "aws"` against the local Garage: keys come from an ECS-style container
//! credentials endpoint (served by this test, as the ECS agent serves a task role's keys),
//! carry a session token, sign both the SDK's requests and our presigned URLs, and are
//! fetched again before they expire.
//!
//! The test runs itself again as a child process whose environment points AWS's default
//! chain at the test endpoint: the real process environment, as on ECS, without mutating
//! this process's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tributary_runtime::config::S3Credentials;
use tributary_runtime::presign::Presigner;
use tributary_runtime::{s3, testing};

/// Serves the local stack's keys as a container credentials endpoint: each answer has a new
/// session token and expires in 30 minutes, which is within the refresh margin, so the
/// refresher fetches again after its retry pause.
async fn credentials_endpoint(
    listener: std::net::TcpListener,
    access_key_id: String,
    secret: String,
) -> Arc<AtomicUsize> {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let app = axum::Router::new().route(
        "/task-role",
        axum::routing::get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let expires = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_secs()
                + 1800;
            let expiration = aws_smithy_types::DateTime::from_secs(expires as i64)
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .expect("rfc 3339");
            let body = serde_json::json!({
                "AccessKeyId": access_key_id,
                "SecretAccessKey": secret,
                "Token": format!("session-token-{n}"),
                "Expiration": expiration,
                "RoleArn": "arn:aws:iam::123456789012:role/tributary-ingest-api",
            });
            async move { axum::Json(body) }
        }),
    );
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    tokio::spawn(async move { axum::serve(listener, app).await });
    fetches
}

/// Set in the child: the address the parent reserved for the credentials endpoint.
const CHILD_MARKER: &str = "TRIBUTARY_TEST_CREDENTIALS_ENDPOINT";

#[test]
fn role_credentials_sign_sdk_requests_and_presigned_urls_and_are_refreshed() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        return child();
    }
    // Reserve the endpoint's port here, so the child's environment can name it up front.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "role_credentials_sign_sdk_requests_and_presigned_urls_and_are_refreshed",
            "--nocapture",
        ])
        .env(CHILD_MARKER, address.to_string())
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{address}/task-role"),
        )
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .output()
        .expect("child test");
    assert!(
        output.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 passed"),
        "the child ran the test"
    );
}

#[tokio::main(flavor = "current_thread")]
async fn child() {
    let mut config = testing::stack_config();
    let address = std::env::var(CHILD_MARKER).expect("set by the parent");
    let listener = std::net::TcpListener::bind(&address).expect("reserved port");
    let fetches = credentials_endpoint(
        listener,
        config.s3.access_key_id.clone(),
        config.s3.secret_access_key.clone(),
    )
    .await;
    // The static keys must play no part.
    config.s3.credentials = S3Credentials::Aws;
    config.s3.access_key_id = "unused".into();
    config.s3.secret_access_key = "unused".into();

    let credentials = config.s3.credential_source();
    credentials
        .ready(Duration::from_secs(15))
        .await
        .expect("role credentials from the container endpoint");
    let first = credentials.current(Duration::ZERO).expect("keys");
    assert_eq!(first.session_token.as_deref(), Some("session-token-1"));
    assert!(first.expires_at.is_some());

    // The SDK signs with them (session token included)...
    let client = s3::client_with(&config.s3, credentials.clone());
    s3::check_bucket(&client, &config.s3)
        .await
        .expect("bucket reachable with role credentials");

    // ...and so does the presigner: create a multipart upload and put a part through URLs.
    let presigner = Presigner::new(&config.s3, credentials.clone()).expect("presigner");
    let bucket = config.s3.bucket.clone();
    let key = format!("uploads/{}/original", testing::unique("role"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let http = reqwest::Client::new();
    let url = presigner.create_multipart_upload(&bucket, &key, 60, now);
    assert!(
        url.contains("X-Amz-Security-Token=session-token-1"),
        "{url}"
    );
    let answer = http.post(&url).send().await.expect("create request");
    assert_eq!(
        answer.status(),
        200,
        "{}",
        answer.text().await.unwrap_or_default()
    );
    let body = answer.text().await.expect("body");
    let upload_id = body
        .split("<UploadId>")
        .nth(1)
        .and_then(|rest| rest.split("</UploadId>").next())
        .expect("upload id in the answer")
        .to_string();
    let part = presigner.upload_part(&bucket, &key, &upload_id, 1, 60, now);
    let answer = http
        .put(&part)
        .body(vec![7u8; 1024])
        .send()
        .await
        .expect("part request");
    assert_eq!(answer.status(), 200, "part through a role-signed URL");

    // A URL signed with a session token that is not the one it names is refused: the token
    // is part of what is signed.
    let forged = url.replace("session-token-1", "session-token-9");
    let answer = http.post(&forged).send().await.expect("forged request");
    assert_eq!(answer.status(), 403, "a token swapped into a signed URL");

    // The keys expire in 30 minutes, inside the refresh margin: new ones are fetched.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = credentials.current(Duration::ZERO).expect("keys");
        if now.session_token != first.session_token {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no refresh within 30 s ({} fetches)",
            fetches.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(fetches.load(Ordering::SeqCst) >= 2);

    client
        .abort_multipart_upload()
        .bucket(&bucket)
        .key(&key)
        .upload_id(&upload_id)
        .send()
        .await
        .expect("abort with refreshed keys");
}
