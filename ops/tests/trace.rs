//! One upload, one trace: the ingest-api, assembler, validator, transformer and projector
//! binaries export their spans over OTLP/HTTP to a receiver run by this test, and the spans
//! of an image uploaded end to end share one trace id (the upload id's), whether it came
//! through the native API or through Uppy's Companion routes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ADMIN, Children, free_addr, service_exe, start_api, wait_for};
use serde_json::{Value, json};
use tributary_projections::versions;
use tributary_runtime::{cql, testing, topics};

/// Spans received: (service.name, trace id, span name).
type Received = Arc<Mutex<Vec<(String, String, String)>>>;

/// A minimal OTLP/HTTP receiver (JSON encoding): `POST /v1/traces`.
async fn start_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post({
            let received = received.clone();
            move |body: axum::body::Bytes| async move {
                let Ok(request) = serde_json::from_slice::<Value>(&body) else {
                    return (axum::http::StatusCode::BAD_REQUEST, "not json");
                };
                let mut spans = received.lock().expect("lock");
                for resource in request["resourceSpans"].as_array().into_iter().flatten() {
                    let service = resource["resource"]["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|a| a["key"] == "service.name")
                        .and_then(|a| a["value"]["stringValue"].as_str())
                        .unwrap_or("?")
                        .to_string();
                    for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                        for span in scope["spans"].as_array().into_iter().flatten() {
                            spans.push((
                                service.clone(),
                                span["traceId"].as_str().unwrap_or("?").to_ascii_lowercase(),
                                span["name"].as_str().unwrap_or("?").to_string(),
                            ));
                        }
                    }
                }
                (axum::http::StatusCode::OK, "{}")
            }
        }),
    );
    let addr = free_addr();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .expect("bind receiver");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

/// A small JPEG.
fn jpeg() -> Vec<u8> {
    let image = image::RgbImage::from_fn(96, 64, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, 128])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&image)
        .expect("encode jpeg");
    out
}

#[tokio::test]
async fn one_uploads_spans_from_every_service_share_one_trace_id() {
    let config = testing::stack_config();
    let (collector, received) = start_receiver().await;
    let suffix = testing::unique("trace");
    let telemetry_env = [
        ("TRIBUTARY_TELEMETRY__OTLP_ENDPOINT", collector.as_str()),
        // Export every half second instead of every five.
        ("OTEL_BSP_SCHEDULE_DELAY", "500"),
    ];
    let mut children = Children::default();

    // Processors and the projector in fresh groups at the end of the log.
    for (name, topic) in [
        ("assembler", topics::LIFECYCLE),
        ("validator", topics::LIFECYCLE),
        ("transformer", topics::MEDIA_JOBS),
    ] {
        let group = format!("{name}-{suffix}");
        testing::start_group_at_end(&config, &group, topic)
            .await
            .expect("position group");
        children.0.push(
            Command::new(service_exe(name))
                .env("TRIBUTARY_HTTP__LISTEN", free_addr())
                .env("TRIBUTARY_PROCESSORS__GROUP", &group)
                .env("RUST_LOG", "warn")
                .envs(telemetry_env)
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn processor"),
        );
    }
    let session = cql::connect(&config.cql).await.expect("cql");
    let active = versions::active(&session, &config.cql.keyspace)
        .await
        .expect("active version");
    let projector_group = format!("projector-{suffix}");
    for topic in [topics::LIFECYCLE, topics::TENANT_ADMIN, topics::PROGRESS] {
        testing::start_group_at_end(
            &config,
            &versions::group_of(&projector_group, active),
            topic,
        )
        .await
        .expect("position projector");
    }
    children.0.push(
        Command::new(service_exe("projector"))
            .env("TRIBUTARY_HTTP__LISTEN", free_addr())
            .env("TRIBUTARY_PROJECTOR__GROUP", &projector_group)
            .env("RUST_LOG", "warn")
            .envs(telemetry_env)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn projector"),
    );
    let api = start_api(&mut children, &telemetry_env).await;
    let http = reqwest::Client::new();

    // A tenant and an image, uploaded through a presigned URL and completed.
    let created: Value = http
        .post(format!("{api}/v1/admin/tenants"))
        .bearer_auth(ADMIN)
        .json(
            &json!({"name": testing::unique("trace tenant"), "allowed_content_types": ["image/*"]}),
        )
        .send()
        .await
        .expect("create tenant")
        .json()
        .await
        .expect("json");
    let key = created["api_key"].as_str().expect("api_key").to_string();
    let bytes = jpeg();
    let initiated: Value = http
        .post(format!("{api}/v1/uploads"))
        .bearer_auth(&key)
        .json(&json!({"filename": "traced.jpg", "size": bytes.len(), "content_type": "image/jpeg"}))
        .send()
        .await
        .expect("initiate")
        .json()
        .await
        .expect("json");
    let upload = initiated["upload_id"]
        .as_str()
        .expect("upload_id")
        .to_string();
    let url = initiated["parts"][0]["url"].as_str().expect("part url");
    let put = http.put(url).body(bytes).send().await.expect("put part");
    assert_eq!(put.status(), 200);
    let etag = put.headers()["etag"].to_str().expect("etag").to_string();
    let confirmed = http
        .put(format!("{api}/v1/uploads/{upload}/parts/1"))
        .bearer_auth(&key)
        .json(&json!({"etag": etag}))
        .send()
        .await
        .expect("confirm");
    assert_eq!(confirmed.status(), 200);
    let completed = http
        .post(format!("{api}/v1/uploads/{upload}/complete"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("complete");
    assert_eq!(completed.status(), 202);
    wait_for(
        "the upload to be ready",
        Duration::from_secs(120),
        async || {
            let status: Value = http
                .get(format!("{api}/v1/uploads/{upload}"))
                .bearer_auth(&key)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            match status["state"].as_str() {
                Some("ready") => Some(()),
                Some("rejected" | "failed") => panic!("upload ended {status}"),
                _ => None,
            }
        },
    )
    .await;

    // Every service's spans of this upload are in the upload's trace.
    let by_service = spans_by_service(&received, &upload).await;
    // The API's part: initiation, the part confirmation and completion.
    assert!(by_service["ingest-api"].len() >= 3, "{by_service:?}");
    for service in ["assembler", "validator", "transformer", "projector"] {
        assert!(
            by_service[service].iter().any(|n| n == "kafka.consume"),
            "{service}: {by_service:?}"
        );
    }

    // The same through Uppy's Companion routes: create, sign a part, complete.
    let bytes = jpeg();
    let created: Value = http
        .post(format!("{api}/s3/multipart"))
        .bearer_auth(&key)
        .json(&json!({"filename": "companion.jpg", "type": "image/jpeg", "metadata": {}}))
        .send()
        .await
        .expect("companion create")
        .json()
        .await
        .expect("json");
    let upload = created["uploadId"].as_str().expect("uploadId").to_string();
    let object_key = created["key"].as_str().expect("key").to_string();
    let encoded_key: String = object_key
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let signed: Value = http
        .get(format!("{api}/s3/multipart/{upload}/1?key={encoded_key}"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("companion sign")
        .json()
        .await
        .expect("json");
    let put = http
        .put(signed["url"].as_str().expect("url"))
        .body(bytes)
        .send()
        .await
        .expect("put part");
    assert_eq!(put.status(), 200);
    let etag = put.headers()["etag"].to_str().expect("etag").to_string();
    let completed = http
        .post(format!(
            "{api}/s3/multipart/{upload}/complete?key={encoded_key}"
        ))
        .bearer_auth(&key)
        .json(&json!({"parts": [{"PartNumber": 1, "ETag": etag}]}))
        .send()
        .await
        .expect("companion complete");
    assert_eq!(completed.status(), 200);
    let by_service = spans_by_service(&received, &upload).await;
    // create, sign and complete, each in the upload's trace.
    assert!(by_service["ingest-api"].len() >= 3, "{by_service:?}");
}

/// The span names per service in `upload`'s trace, once every service has some there.
async fn spans_by_service(received: &Received, upload: &str) -> BTreeMap<String, Vec<String>> {
    let trace_id = upload.replace('-', "");
    let wanted: BTreeSet<&str> = [
        "ingest-api",
        "assembler",
        "validator",
        "transformer",
        "projector",
    ]
    .into_iter()
    .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let spans = received.lock().expect("lock").clone();
        let mut by_service: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (service, trace, name) in spans {
            if trace == trace_id {
                by_service.entry(service).or_default().push(name);
            }
        }
        let have: BTreeSet<&str> = by_service.keys().map(String::as_str).collect();
        if wanted.is_subset(&have) {
            return by_service;
        }
        if std::time::Instant::now() >= deadline {
            let recent: Vec<_> = received
                .lock()
                .expect("lock")
                .iter()
                .rev()
                .take(30)
                .cloned()
                .collect();
            panic!(
                "not every service's spans in trace {trace_id} within 120 s: {by_service:?}; recent: {recent:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
