//! Upload sessions end to end against the real stack: the `ingest-api` binary, Kafka,
//! Cassandra and Garage. Bytes go straight to storage through presigned URLs, as a browser's
//! would; the API only plans, signs, verifies and records events.

mod common;

use std::time::Duration;

use common::{Api, Tenant, lifecycle_events, now_ms, types};
use serde_json::{Value, json};

const MIB: usize = 1024 * 1024;

fn file_of(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 % 251) as u8).collect()
}

/// PUTs `bytes` to a presigned part URL; returns the ETag storage answered.
async fn put_part(api: &Api, url: &str, bytes: Vec<u8>) -> String {
    let response = api
        .http
        .put(url)
        .body(bytes)
        .send()
        .await
        .expect("put part");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .to_string()
}

async fn confirm(
    api: &Api,
    tenant: &Tenant,
    upload_id: &str,
    part: &str,
    etag: &str,
) -> (u16, Value) {
    let response = api
        .http
        .put(api.url(&format!("/v1/uploads/{upload_id}/parts/{part}")))
        .bearer_auth(&tenant.key)
        .json(&json!({"etag": etag}))
        .send()
        .await
        .expect("confirm");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn complete(api: &Api, tenant: &Tenant, upload_id: &str) -> (u16, Value) {
    let response = api
        .http
        .post(api.url(&format!("/v1/uploads/{upload_id}/complete")))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .expect("complete");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn part_url(session: &Value, number: u64) -> String {
    session["parts"]
        .as_array()
        .and_then(|parts| parts.iter().find(|p| p["part_number"] == number))
        .and_then(|p| p["url"].as_str())
        .expect("part url")
        .to_string()
}

#[tokio::test]
async fn a_multipart_file_uploads_through_presigned_urls_and_every_step_is_an_event() {
    let api = Api::start(&[]).await;
    let tenant = api
        .create_tenant(json!({"allowed_content_types": ["application/*"]}))
        .await;
    let since = now_ms();
    let file = file_of(2 * 8 * MIB + 123_457);
    let (status, session) = api
        .initiate(&tenant, &json!({"filename": "backup.tar", "size": file.len(), "content_type": "application/x-tar"}))
        .await;
    assert_eq!(status, 201, "{session}");
    let upload_id = session["upload_id"].as_str().expect("id").to_string();
    assert_eq!(session["part_size"], 8 * MIB);
    assert_eq!(session["part_count"], 3);
    assert_eq!(session["parts"].as_array().map(Vec::len), Some(3));
    assert!(
        session["events_url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/v1/uploads/{upload_id}/events")))
    );

    for (index, chunk) in file.chunks(8 * MIB).enumerate() {
        let number = index as u64 + 1;
        let etag = put_part(&api, &part_url(&session, number), chunk.to_vec()).await;
        let (status, body) = confirm(&api, &tenant, &upload_id, &number.to_string(), &etag).await;
        assert_eq!(status, 200, "{body}");
        // Confirming again is harmless and emits nothing new.
        let (status, _) = confirm(&api, &tenant, &upload_id, &number.to_string(), &etag).await;
        assert_eq!(status, 200);
    }
    let (status, body) = complete(&api, &tenant, &upload_id).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        complete(&api, &tenant, &upload_id).await.0,
        202,
        "completing twice is harmless"
    );

    let events = lifecycle_events(&tenant.id, since);
    assert_eq!(
        types(&events),
        [
            "UploadInitiated",
            "PartConfirmed",
            "PartConfirmed",
            "PartConfirmed",
            "UploadCompletionRequested"
        ],
        "each step once, in order"
    );
    assert!(
        events
            .iter()
            .all(|e| e.meta.upload_id.as_deref() == Some(upload_id.as_str()))
    );

    // The parts really are in storage, complete and in order: assemble them as the
    // processors will and compare.
    let config = tributary_runtime::testing::stack_config();
    let s3 = tributary_runtime::s3::client(&config.s3);
    let initiated = &events[0];
    let tributary_schemas::EventPayload::UploadInitiated(init) = &initiated.payload else {
        panic!("first event is the initiation")
    };
    assert_eq!(
        init.object_key,
        format!("uploads/{}/{upload_id}/original", tenant.id),
        "tenant-prefixed key"
    );
    let parts = s3
        .list_parts()
        .bucket(&init.bucket)
        .key(&init.object_key)
        .upload_id(&init.s3_upload_id)
        .send()
        .await
        .expect("list parts");
    let sizes: Vec<i64> = parts.parts().iter().filter_map(|p| p.size()).collect();
    assert_eq!(sizes, [8 * MIB as i64, 8 * MIB as i64, 123_457]);
}

#[tokio::test]
async fn a_7_gib_session_is_planned_in_896_parts_with_urls_on_demand() {
    let api = Api::start(&[]).await;
    let tenant = api
        .create_tenant(json!({"max_file_size": 8_i64 << 30}))
        .await;
    let size = 7_i64 << 30;
    let (status, session) = api
        .initiate(
            &tenant,
            &json!({"filename": "archive.zip", "size": size, "content_type": "application/zip"}),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    assert_eq!(session["part_size"], 8 * MIB);
    assert_eq!(session["part_count"], 896);
    assert_eq!(
        session["parts"].as_array().map(Vec::len),
        Some(32),
        "the first 32 urls; the rest on demand"
    );
    let upload_id = session["upload_id"].as_str().expect("id");

    let get = |query: &str| {
        let url = api.url(&format!("/v1/uploads/{upload_id}/parts?{query}"));
        let request = api.http.get(url).bearer_auth(&tenant.key);
        async move {
            let response = request.send().await.expect("parts");
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, tail) = get("from=880&count=100").await;
    assert_eq!(status, 200, "{tail}");
    let numbers: Vec<u64> = tail["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .filter_map(|p| p["part_number"].as_u64())
        .collect();
    assert_eq!(
        numbers,
        (880..=896).collect::<Vec<_>>(),
        "clipped at the last part"
    );
    assert_eq!(get("from=897").await.0, 400);
    assert_eq!(get("from=0").await.0, 400);
    assert_eq!(get("from=1&count=100000").await.0, 400);

    let (reserved, active) = api.tenant_usage(&tenant).await;
    assert_eq!((reserved, active), (size, 1));
    let deleted = api
        .http
        .delete(api.url(&format!("/v1/uploads/{upload_id}")))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        api.tenant_usage(&tenant).await,
        (0, 0),
        "abort releases the reservation"
    );
}

#[tokio::test]
async fn an_interrupted_part_is_resumed_with_a_fresh_url() {
    let api = Api::start(&[]).await;
    let tenant = api.create_tenant(json!({})).await;
    let file = file_of(8 * MIB + 5);
    let (status, session) = api
        .initiate(&tenant, &json!({"filename": "clip.bin", "size": file.len(), "content_type": "application/octet-stream"}))
        .await;
    assert_eq!(status, 201);
    let upload_id = session["upload_id"].as_str().expect("id").to_string();

    // Part 1 is cut off mid-body, as by a dropped network.
    let first = file[..8 * MIB].to_vec();
    let half = bytes::Bytes::copy_from_slice(&first[..4 * MIB]);
    let stream = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(half),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "network dropped",
        )),
    ]);
    let interrupted = api
        .http
        .put(part_url(&session, 1))
        .header("content-length", first.len())
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    assert!(interrupted.is_err() || !interrupted.as_ref().is_ok_and(|r| r.status().is_success()));
    let (status, body) = confirm(&api, &tenant, &upload_id, "1", "\"made-up\"").await;
    assert_eq!(
        status, 409,
        "an unfinished part cannot be confirmed: {body}"
    );
    assert_eq!(body["error"]["code"], "part_not_uploaded");

    // Resume: fresh URL for part 1, upload it whole, then part 2.
    let fresh: Value = api
        .http
        .get(api.url(&format!("/v1/uploads/{upload_id}/parts?from=1&count=1")))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .expect("parts")
        .json()
        .await
        .expect("json");
    let etag = put_part(&api, &part_url(&fresh, 1), first).await;
    assert_eq!(confirm(&api, &tenant, &upload_id, "1", &etag).await.0, 200);
    let etag = put_part(&api, &part_url(&session, 2), file[8 * MIB..].to_vec()).await;
    // A wrong ETag is refused: storage is the authority.
    let (status, body) = confirm(
        &api,
        &tenant,
        &upload_id,
        "2",
        "\"0123456789abcdef0123456789abcdef\"",
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("etag_mismatch"))
    );
    assert_eq!(confirm(&api, &tenant, &upload_id, "2", &etag).await.0, 200);
    assert_eq!(complete(&api, &tenant, &upload_id).await.0, 202);
}

#[tokio::test]
async fn initiation_with_an_idempotency_key_returns_the_same_session() {
    let api = Api::start(&[]).await;
    let tenant = api.create_tenant(json!({})).await;
    let since = now_ms();
    let body = json!({"filename": "a.png", "size": 1000, "content_type": "image/png", "metadata": {"album": "x"}});
    let send = |body: Value, key: &'static str| {
        let request = api
            .http
            .post(api.url("/v1/uploads"))
            .bearer_auth(&tenant.key)
            .header("Idempotency-Key", key)
            .json(&body);
        async move {
            let response = request.send().await.expect("initiate");
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (first_status, first) = send(body.clone(), "retry-me-1").await;
    let (second_status, second) = send(body.clone(), "retry-me-1").await;
    assert_eq!((first_status, second_status), (201, 201));
    assert_eq!(first["upload_id"], second["upload_id"]);
    let mut changed = body.clone();
    changed["size"] = json!(1001);
    let (status, error) = send(changed, "retry-me-1").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    assert_eq!(
        types(&lifecycle_events(&tenant.id, since)),
        ["UploadInitiated"],
        "one session, one event"
    );
    assert_eq!(api.tenant_usage(&tenant).await, (1000, 1), "reserved once");
}

#[tokio::test]
async fn twenty_concurrent_initiations_never_over_commit_the_quota() {
    let api = Api::start(&[]).await;
    let size = 10 * MIB as i64;
    let tenant = api
        .create_tenant(json!({"byte_quota": 7 * size, "max_concurrent_uploads": 100}))
        .await;
    let body =
        json!({"filename": "f.bin", "size": size, "content_type": "application/octet-stream"});
    let attempts = (0..20).map(|_| api.initiate(&tenant, &body));
    let results = futures::future::join_all(attempts).await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 409)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created, 7, "exactly the quota: {results:?}");
    assert_eq!(refused.len(), 13);
    assert!(
        refused
            .iter()
            .all(|b| b["error"]["code"] == "quota_exceeded")
    );
    assert_eq!(api.tenant_usage(&tenant).await, (7 * size, 7));
}

#[tokio::test]
async fn bad_input_gets_the_right_4xx_and_emits_nothing() {
    let api = Api::start(&[]).await;
    let tenant = api
        .create_tenant(json!({"max_file_size": 10 * MIB, "allowed_content_types": ["image/*"]}))
        .await;
    let other = api.create_tenant(json!({})).await;
    let (status, session) = api
        .initiate(
            &tenant,
            &json!({"filename": "ok.jpg", "size": 9 * MIB, "content_type": "image/jpeg"}),
        )
        .await;
    assert_eq!(status, 201);
    let upload_id = session["upload_id"].as_str().expect("id").to_string();
    let since = now_ms();
    let usage_before = api.tenant_usage(&tenant).await;

    let http = &api.http;
    let upload = |path: &str| api.url(&format!("/v1/uploads/{upload_id}{path}"));
    let valid = json!({"filename": "b.jpg", "size": 100, "content_type": "image/jpeg"});
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    // Expired token: minted with a 1 s lifetime, used after it ran out.
    let token: Value = http
        .post(api.url("/v1/tokens"))
        .bearer_auth(&tenant.key)
        .json(&json!({"ttl_seconds": 1}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let token = token["token"].as_str().expect("token").to_string();
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "unknown tenant key",
            http.post(api.url("/v1/uploads"))
                .bearer_auth("trk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
                .json(&valid),
            401,
            "unauthorized",
        ),
        (
            "no credential",
            http.post(api.url("/v1/uploads")).json(&valid),
            401,
            "unauthorized",
        ),
        (
            "expired token",
            http.post(api.url("/v1/uploads"))
                .bearer_auth(&token)
                .json(&valid),
            401,
            "unauthorized",
        ),
        (
            "other tenant's upload: confirm",
            http.put(upload("/parts/1"))
                .bearer_auth(&other.key)
                .json(&json!({"etag": "x"})),
            404,
            "not_found",
        ),
        (
            "other tenant's upload: complete",
            http.post(upload("/complete")).bearer_auth(&other.key),
            404,
            "not_found",
        ),
        (
            "other tenant's upload: parts",
            http.get(upload("/parts")).bearer_auth(&other.key),
            404,
            "not_found",
        ),
        (
            "other tenant's upload: delete",
            http.delete(upload("")).bearer_auth(&other.key),
            404,
            "not_found",
        ),
        (
            "oversize",
            http.post(api.url("/v1/uploads"))
                .bearer_auth(&tenant.key)
                .json(&with("size", json!(10 * MIB + 1))),
            413,
            "file_too_large",
        ),
        (
            "disallowed type",
            http.post(api.url("/v1/uploads"))
                .bearer_auth(&tenant.key)
                .json(&with("content_type", json!("application/x-msdownload"))),
            415,
            "content_type_not_allowed",
        ),
        (
            "part number 0",
            http.put(upload("/parts/0"))
                .bearer_auth(&tenant.key)
                .json(&json!({"etag": "x"})),
            400,
            "invalid_part_number",
        ),
        (
            "part number 10001",
            http.put(upload("/parts/10001"))
                .bearer_auth(&tenant.key)
                .json(&json!({"etag": "x"})),
            400,
            "invalid_part_number",
        ),
        (
            "part number not a number",
            http.put(upload("/parts/one"))
                .bearer_auth(&tenant.key)
                .json(&json!({"etag": "x"})),
            400,
            "invalid_part_number",
        ),
        (
            "completing with a missing part",
            http.post(upload("/complete")).bearer_auth(&tenant.key),
            409,
            "missing_parts",
        ),
        (
            "malformed json",
            http.post(api.url("/v1/uploads"))
                .bearer_auth(&tenant.key)
                .header("content-type", "application/json")
                .body("{\"filename\": \"x"),
            400,
            "invalid_json",
        ),
        (
            "wrong json types",
            http.post(api.url("/v1/uploads"))
                .bearer_auth(&tenant.key)
                .json(&with("size", json!("big"))),
            400,
            "invalid_request",
        ),
        (
            "unknown field",
            http.post(api.url("/v1/uploads"))
                .bearer_auth(&tenant.key)
                .json(&with("bucket", json!("other"))),
            400,
            "invalid_request",
        ),
        (
            "not json",
            http.post(api.url("/v1/uploads"))
                .bearer_auth(&tenant.key)
                .body("filename=x"),
            415,
            "unsupported_media_type",
        ),
        (
            "path traversal filename",
            http.post(api.url("/v1/uploads"))
                .bearer_auth(&tenant.key)
                .json(&with("filename", json!("../../etc/passwd"))),
            400,
            "invalid_filename",
        ),
        (
            "control characters in filename",
            http.post(api.url("/v1/uploads"))
                .bearer_auth(&tenant.key)
                .json(&with("filename", json!("a\u{0}b.jpg"))),
            400,
            "invalid_filename",
        ),
        (
            "zero size",
            http.post(api.url("/v1/uploads"))
                .bearer_auth(&tenant.key)
                .json(&with("size", json!(0))),
            400,
            "invalid_size",
        ),
        (
            "bad sha256",
            http.post(api.url("/v1/uploads"))
                .bearer_auth(&tenant.key)
                .json(&with("sha256", json!("abc"))),
            400,
            "invalid_sha256",
        ),
        (
            "huge body",
            http.post(api.url("/v1/uploads"))
                .bearer_auth(&tenant.key)
                .json(&with("filename", json!("x".repeat(100_000)))),
            413,
            "payload_too_large",
        ),
        (
            "no such upload",
            http.post(api.url("/v1/uploads/not-a-uuid/complete"))
                .bearer_auth(&tenant.key),
            404,
            "not_found",
        ),
        (
            "admin route with a tenant key",
            http.post(api.url("/v1/admin/tenants"))
                .bearer_auth(&tenant.key)
                .json(&json!({"name": "x"})),
            401,
            "unauthorized",
        ),
        (
            "unknown route",
            http.get(api.url("/v1/nothing")).bearer_auth(&tenant.key),
            404,
            "not_found",
        ),
        (
            "wrong method",
            http.patch(api.url("/v1/uploads")).bearer_auth(&tenant.key),
            405,
            "method_not_allowed",
        ),
    ];
    for (name, request, status, code) in cases {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(got, status, "{name}: {body}");
        assert_eq!(body["error"]["code"], code, "{name}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: {body}"
        );
    }
    assert!(
        lifecycle_events(&tenant.id, since).is_empty(),
        "bad input emitted nothing for the tenant"
    );
    assert!(
        lifecycle_events(&other.id, since).is_empty(),
        "nor for the other tenant"
    );
    assert_eq!(
        api.tenant_usage(&tenant).await,
        usage_before,
        "and reserved nothing"
    );
}

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let api = Api::start(&[
        ("TRIBUTARY_API__RATE_LIMIT_PER_SECOND", "0.5"),
        ("TRIBUTARY_API__RATE_LIMIT_BURST", "3"),
    ])
    .await;
    let noisy = api.create_tenant(json!({})).await;
    let quiet = api.create_tenant(json!({})).await;
    let body = json!({"filename": "a.bin", "size": 10, "content_type": "application/octet-stream"});
    for attempt in 0..3 {
        assert_eq!(
            api.initiate(&noisy, &body).await.0,
            201,
            "attempt {attempt} is within the burst"
        );
    }
    let response = api
        .http
        .post(api.url("/v1/uploads"))
        .bearer_auth(&noisy.key)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 429);
    let retry_after: u32 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["error"]["code"], "rate_limited");
    assert_eq!(
        api.initiate(&quiet, &body).await.0,
        201,
        "other tenants are unaffected"
    );
}

#[tokio::test]
async fn cors_allows_configured_origins_only() {
    let api = Api::start(&[(
        "TRIBUTARY_API__CORS_ORIGINS",
        "[\"https://app.example.com\"]",
    )])
    .await;
    let preflight = |origin: &'static str| {
        api.http
            .request(reqwest::Method::OPTIONS, api.url("/v1/uploads"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://app.example.com")
        .await
        .expect("preflight");
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example.com")
    );
    let denied = preflight("https://evil.example.net")
        .await
        .expect("preflight");
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn storage_lets_configured_browser_origins_put_parts_and_read_the_etag() {
    let api = Api::start(&[
        (
            "TRIBUTARY_API__CORS_ORIGINS",
            "[\"https://app.example.com\"]",
        ),
        ("TRIBUTARY_API__MANAGE_BUCKET_CORS", "true"),
    ])
    .await;
    let tenant = api.create_tenant(json!({})).await;
    let (status, session) = api
        .initiate(
            &tenant,
            &json!({"filename": "a.bin", "size": 10, "content_type": "application/octet-stream"}),
        )
        .await;
    assert_eq!(status, 201);
    let url = part_url(&session, 1);
    let preflight = api
        .http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example.com")
    );
    let put = api
        .http
        .put(&url)
        .header("origin", "https://app.example.com")
        .body(vec![0u8; 10])
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 200);
    let exposed = put
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("etag"),
        "ETag must be readable by the page: {exposed:?}"
    );
}
