//! The Companion-compatible routes, driven with exactly the requests `@uppy/aws-s3` 6.x
//! sends (`${companionEndpoint}/s3/...`, plain fetch, no Authorization header: the browser
//! token travels in the endpoint path). Bytes go to storage through the presigned URLs.

mod common;

use common::{Api, Tenant, lifecycle_events, now_ms, types};
use serde_json::{Value, json};

const MIB: usize = 1024 * 1024;

async fn token(api: &Api, tenant: &Tenant) -> String {
    let body: Value = api
        .http
        .post(api.url("/v1/tokens"))
        .bearer_auth(&tenant.key)
        .json(&json!({"capabilities": ["upload"]}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    body["token"].as_str().expect("token").to_string()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn uppy_uploads_through_the_companion_routes_with_a_token_in_the_endpoint() {
    let api = Api::start(&[]).await;
    let tenant = api
        .create_tenant(json!({"allowed_content_types": ["video/*"]}))
        .await;
    let since = now_ms();
    let endpoint = api.url(&format!("/v1/uppy/{}", token(&api, &tenant).await));
    let http = &api.http;

    // createMultipartUpload
    let created: Value = http
        .post(format!("{endpoint}/s3/multipart"))
        .json(&json!({"filename": "clip.mp4", "type": "video/mp4", "metadata": {"name": "clip.mp4", "type": "video/mp4", "relativePath": null}}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let upload_id = created["uploadId"].as_str().expect("uploadId").to_string();
    let key = created["key"].as_str().expect("key").to_string();
    assert_eq!(key, format!("uploads/{}/{upload_id}/original", tenant.id));

    // uploadPart x2 with Uppy's 5 MiB chunks: sign, PUT, read the ETag.
    let file: Vec<u8> = (0..5 * MIB + 777).map(|i| (i % 253) as u8).collect();
    let mut etags = Vec::new();
    for (index, chunk) in file.chunks(5 * MIB).enumerate() {
        let number = index + 1;
        let signed: Value = http
            .get(format!(
                "{endpoint}/s3/multipart/{}/{number}?key={}",
                encode(&upload_id),
                encode(&key)
            ))
            .send()
            .await
            .expect("sign")
            .json()
            .await
            .expect("json");
        let put = http
            .put(signed["url"].as_str().expect("url"))
            .body(chunk.to_vec())
            .send()
            .await
            .expect("put");
        assert_eq!(put.status(), 200);
        etags.push(
            put.headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .expect("etag")
                .to_string(),
        );
    }

    // listParts (what Uppy resumes from)
    let listed: Vec<Value> = http
        .get(format!(
            "{endpoint}/s3/multipart/{}?key={}",
            encode(&upload_id),
            encode(&key)
        ))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["Size"], 777);

    // completeMultipartUpload
    let response = http
        .post(format!("{endpoint}/s3/multipart/{}/complete?key={}", encode(&upload_id), encode(&key)))
        .json(&json!({"parts": [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": etags[1]}]}))
        .send()
        .await
        .expect("complete");
    assert_eq!(response.status(), 200);
    let completed: Value = response.json().await.expect("json");
    assert_eq!(completed["key"], key.as_str());
    assert!(
        completed["location"]
            .as_str()
            .is_some_and(|l| l.ends_with(&key))
    );

    let events = lifecycle_events(&tenant.id, since);
    assert_eq!(
        types(&events),
        [
            "UploadInitiated",
            "PartConfirmed",
            "PartConfirmed",
            "UploadCompletionRequested"
        ]
    );
    let sizes: Vec<i64> = events
        .iter()
        .filter_map(|e| match &e.payload {
            tributary_schemas::EventPayload::PartConfirmed(p) => Some(p.size),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, [5 * MIB as i64, 777], "server-verified sizes");
    assert_eq!(
        api.tenant_usage(&tenant).await,
        ((5 * MIB + 777) as i64, 1),
        "bytes reserved at completion"
    );
}

#[tokio::test]
async fn companion_routes_refuse_what_they_must() {
    let api = Api::start(&[]).await;
    let tenant = api
        .create_tenant(json!({"allowed_content_types": ["image/*"]}))
        .await;
    let other = api.create_tenant(json!({})).await;
    let since = now_ms();
    let endpoint = api.url(&format!("/v1/uppy/{}", token(&api, &tenant).await));
    let other_endpoint = api.url(&format!("/v1/uppy/{}", token(&api, &other).await));
    let http = &api.http;
    let created: Value = http
        .post(format!("{endpoint}/s3/multipart"))
        .json(&json!({"filename": "a.png", "type": "image/png", "metadata": {}}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let upload_id = created["uploadId"].as_str().expect("id").to_string();
    let key = created["key"].as_str().expect("key").to_string();

    let status = |r: reqwest::Response| async move {
        let code = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        (
            code,
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let cases = [
        (
            "tampered token",
            http.post(api.url("/v1/uppy/trt_e30.AAAA/s3/multipart"))
                .json(&json!({"filename": "a.png", "type": "image/png"})),
            401,
            "unauthorized",
        ),
        (
            "disallowed type",
            http.post(format!("{endpoint}/s3/multipart"))
                .json(&json!({"filename": "a.exe", "type": "application/x-msdownload"})),
            415,
            "content_type_not_allowed",
        ),
        (
            "hostile filename",
            http.post(format!("{endpoint}/s3/multipart"))
                .json(&json!({"filename": "../../etc/passwd", "type": "image/png"})),
            400,
            "invalid_filename",
        ),
        (
            "other tenant signs",
            http.get(format!(
                "{other_endpoint}/s3/multipart/{upload_id}/1?key={}",
                encode(&key)
            )),
            404,
            "not_found",
        ),
        (
            "wrong key",
            http.get(format!(
                "{endpoint}/s3/multipart/{upload_id}/1?key=uploads%2Fx"
            )),
            404,
            "not_found",
        ),
        (
            "part 0",
            http.get(format!(
                "{endpoint}/s3/multipart/{upload_id}/0?key={}",
                encode(&key)
            )),
            400,
            "invalid_part_number",
        ),
        (
            "part 10001",
            http.get(format!(
                "{endpoint}/s3/multipart/{upload_id}/10001?key={}",
                encode(&key)
            )),
            400,
            "invalid_part_number",
        ),
        (
            "complete with a part never uploaded",
            http.post(format!(
                "{endpoint}/s3/multipart/{upload_id}/complete?key={}",
                encode(&key)
            ))
            .json(&json!({"parts": [{"PartNumber": 1, "ETag": "\"abc\""}]})),
            409,
            "part_not_uploaded",
        ),
        (
            "non-multipart mode",
            http.get(format!(
                "{endpoint}/s3/params?filename=a.png&type=image%2Fpng"
            )),
            400,
            "multipart_required",
        ),
    ];
    for (name, request, code, error) in cases {
        let got = status(request.send().await.expect(name)).await;
        assert_eq!(got, (code, error.to_string()), "{name}");
    }
    // Abort releases the slot and is recorded.
    let aborted = http
        .delete(format!(
            "{endpoint}/s3/multipart/{upload_id}?key={}",
            encode(&key)
        ))
        .send()
        .await
        .expect("abort");
    assert_eq!(aborted.status(), 200);
    assert_eq!(api.tenant_usage(&tenant).await, (0, 0));
    assert_eq!(
        types(&lifecycle_events(&tenant.id, since)),
        ["UploadInitiated", "UploadAborted"]
    );
}

#[tokio::test]
async fn a_same_origin_page_can_use_the_companion_routes_with_a_session_cookie() {
    let api = Api::start(&[]).await;
    let tenant = api.create_tenant(json!({})).await;
    let http = &api.http;
    let set = http
        .post(api.url("/v1/session"))
        .json(&json!({"token": token(&api, &tenant).await}))
        .send()
        .await
        .expect("session");
    assert_eq!(set.status(), 204);
    let cookie = set
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("set-cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("name=value").to_string();

    let body = json!({"filename": "a.bin", "type": "application/octet-stream", "metadata": {}});
    let with_cookie = http
        .post(api.url("/s3/multipart"))
        .header("cookie", &pair)
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(with_cookie.status(), 200);
    let created: Value = with_cookie.json().await.expect("json");
    assert!(created["uploadId"].is_string());
    let without = http
        .post(api.url("/s3/multipart"))
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(without.status(), 401);
    let forged = http
        .post(api.url("/s3/multipart"))
        .header("cookie", "tributary_token=trt_e30.AAAA")
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(forged.status(), 401);
    let refused = http
        .post(api.url("/v1/session"))
        .json(&json!({"token": "trt_e30.AAAA"}))
        .send()
        .await
        .expect("session");
    assert_eq!(refused.status(), 401);
}

/// Real Uppy — `@uppy/core` and `@uppy/aws-s3` 6.3.1 from npm (lock file in `uppy-node/`,
/// installed by `./devstack`) — run in Node against the token-scoped Companion endpoint.
#[tokio::test]
async fn real_uppy_uploads_a_file_end_to_end() {
    let api = Api::start(&[]).await;
    let tenant = api.create_tenant(json!({})).await;
    let since = now_ms();
    let endpoint = api.url(&format!("/v1/uppy/{}", token(&api, &tenant).await));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/uppy-node/upload.mjs");
    let size = 12_000_000_i64;
    let output = tokio::process::Command::new("node")
        .arg(script)
        .arg(&endpoint)
        .arg(size.to_string())
        .output()
        .await
        .expect("node runs (./devstack installs the npm packages)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "uppy run failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .expect("uppy's result as json");
    assert_eq!(
        result["failed"].as_array().map(Vec::len),
        Some(0),
        "{result}"
    );
    assert_eq!(
        result["successful"].as_array().map(Vec::len),
        Some(1),
        "{result}"
    );

    // Uppy's 5 MiB chunks became server-verified parts, then the completion request.
    let events = lifecycle_events(&tenant.id, since);
    assert_eq!(
        types(&events),
        [
            "UploadInitiated",
            "PartConfirmed",
            "PartConfirmed",
            "PartConfirmed",
            "UploadCompletionRequested"
        ]
    );
    assert_eq!(api.tenant_usage(&tenant).await, (size, 1));
}
