//! Shared harness of the processors' integration tests: the real ingest-api, the projector
//! and the four processor binaries against the local stack, each test with its own consumer
//! groups positioned at the end of the log.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tributary_runtime::{testing, topics};
use tributary_schemas::Event;

/// The development admin token (the API's default).
pub const ADMIN: &str = "dev-admin-token";

/// The processor binaries of this package.
pub const PROCESSORS: [&str; 4] = ["assembler", "validator", "transformer", "janitor"];

fn processor_exe(name: &str) -> &'static str {
    match name {
        "assembler" => env!("CARGO_BIN_EXE_assembler"),
        "validator" => env!("CARGO_BIN_EXE_validator"),
        "transformer" => env!("CARGO_BIN_EXE_transformer"),
        _ => env!("CARGO_BIN_EXE_janitor"),
    }
}

/// The ingest-api binary, built (or found up to date) next to this package's binaries: it
/// belongs to another package, which Cargo does not build for this one's tests.
fn api_exe() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--quiet",
                    "--locked",
                    "-p",
                    "tributary-ingest-api",
                    "--bin",
                    "ingest-api",
                ])
                .status()
                .expect("run cargo build for ingest-api");
            assert!(status.success(), "building ingest-api failed");
            PathBuf::from(env!("CARGO_BIN_EXE_assembler")).with_file_name("ingest-api")
        })
        .clone()
}

/// Loopback address the pipeline's servers listen on: not 127.0.0.1, whose ephemeral ports
/// the tests' own outgoing connections (Kafka, Cassandra, S3) keep taking, so a port found
/// free there could be gone by the time a child binds it.
const LISTEN_IP: &str = "127.0.0.3";

/// A free `LISTEN_IP:port`.
fn free_addr() -> String {
    let port = TcpListener::bind((LISTEN_IP, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    format!("{LISTEN_IP}:{port}")
}

/// A tenant created for a test.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Its id.
    pub id: String,
    /// Its first API key.
    pub key: String,
}

/// One pipeline at a time: two sets of processors in different consumer groups would both
/// act on every event (two deployments of the same service), racing each other.
fn exclusive() -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static LOCK: OnceLock<std::sync::Arc<tokio::sync::Mutex<()>>> = OnceLock::new();
    LOCK.get_or_init(Default::default).clone()
}

/// The whole pipeline of one test. Processes are killed when it is dropped.
pub struct Pipeline {
    _exclusive: tokio::sync::OwnedMutexGuard<()>,
    api: Child,
    /// `http://127.0.0.1:<port>` of the API.
    pub base: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Running processors by name.
    processors: Vec<(String, Child)>,
    /// Consumer group suffix of this pipeline.
    pub suffix: String,
    projector_stop: CancellationToken,
    /// Extra environment of the processors.
    env: Vec<(String, String)>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.projector_stop.cancel();
        for (_, child) in &mut self.processors {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.api.kill();
        let _ = self.api.wait();
    }
}

impl Pipeline {
    /// Starts the API (with `api_env`), an in-process projector and every processor (with
    /// `env`), each processor in a fresh consumer group that starts at the end of its topic.
    pub async fn start(api_env: &[(&str, &str)], env: &[(&str, &str)]) -> Self {
        let exclusive = exclusive().lock_owned().await;
        let suffix = testing::unique("t");
        let config = testing::stack_config();
        for name in PROCESSORS {
            let topic = if name == "transformer" {
                topics::MEDIA_JOBS
            } else {
                topics::LIFECYCLE
            };
            testing::start_group_at_end(&config, &format!("{name}-{suffix}"), topic)
                .await
                .expect("position the processor's group");
        }
        let projector_group = format!("projector-{suffix}");
        for topic in [topics::LIFECYCLE, topics::TENANT_ADMIN] {
            testing::start_group_at_end(&config, &projector_group, topic)
                .await
                .expect("position the projector's group");
        }
        let projector_stop = CancellationToken::new();
        tokio::spawn({
            let stop = projector_stop.clone();
            async move {
                if let Err(error) =
                    tributary_projections::projector::run(&config, &projector_group, stop).await
                {
                    eprintln!("test projector failed: {error}");
                }
            }
        });

        let addr = free_addr();
        let api = Command::new(api_exe())
            .env("TRIBUTARY_HTTP__LISTEN", &addr)
            .env("RUST_LOG", "warn")
            .env("TRIBUTARY_API__MANAGE_BUCKET_CORS", "false")
            .envs(api_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ingest-api");
        let mut pipeline = Self {
            _exclusive: exclusive,
            api,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            processors: Vec::new(),
            suffix,
            projector_stop,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        for name in PROCESSORS {
            pipeline.start_processor(name);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while pipeline
            .http
            .get(pipeline.url("/healthz"))
            .send()
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "ingest-api did not start within 60 s"
            );
            if let Ok(Some(status)) = pipeline.api.try_wait() {
                panic!("ingest-api exited during start-up: {status}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pipeline
    }

    /// Starts (or restarts) processor `name`.
    pub fn start_processor(&mut self, name: &str) {
        let child = Command::new(processor_exe(name))
            .env("TRIBUTARY_HTTP__LISTEN", free_addr())
            .env(
                "TRIBUTARY_PROCESSORS__GROUP",
                format!("{name}-{}", self.suffix),
            )
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        self.processors.retain(|(n, _)| n != name);
        self.processors.push((name.to_string(), child));
    }

    /// Kills processor `name` with SIGKILL (no chance to commit anything).
    pub fn kill_processor(&mut self, name: &str) {
        if let Some((_, child)) = self.processors.iter_mut().find(|(n, _)| n == name) {
            child.kill().expect("kill");
            child.wait().expect("reap");
        }
        self.processors.retain(|(n, _)| n != name);
    }

    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a tenant with `policy` fields merged over a unique name.
    pub async fn create_tenant(&self, policy: Value) -> Tenant {
        let mut body = json!({"name": testing::unique("tenant")});
        if let (Some(target), Some(extra)) = (body.as_object_mut(), policy.as_object()) {
            target.extend(extra.clone());
        }
        let response = self
            .http
            .post(self.url("/v1/admin/tenants"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .expect("create tenant");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        let created: Value = response.json().await.expect("json");
        Tenant {
            id: created["tenant_id"]
                .as_str()
                .expect("tenant_id")
                .to_string(),
            key: created["api_key"].as_str().expect("api_key").to_string(),
        }
    }

    /// `(reserved_bytes, active_uploads)` of a tenant.
    pub async fn usage(&self, tenant: &Tenant) -> (i64, i64) {
        let view: Value = self
            .http
            .get(self.url(&format!("/v1/admin/tenants/{}", tenant.id)))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("get tenant")
            .json()
            .await
            .expect("json");
        (
            view["reserved_bytes"].as_i64().expect("reserved"),
            view["active_uploads"].as_i64().expect("active"),
        )
    }

    /// The tenant's stored bytes as the admin view reports them (from the usage read model),
    /// once they equal `expected` (polled up to 30 s; the projector follows the log).
    pub async fn wait_stored_bytes(&self, tenant: &Tenant, expected: i64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let view: Value = self
                .http
                .get(self.url(&format!("/v1/admin/tenants/{}", tenant.id)))
                .bearer_auth(ADMIN)
                .send()
                .await
                .expect("get tenant")
                .json()
                .await
                .expect("json");
            if view["stored_bytes"].as_i64() == Some(expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "stored_bytes never became {expected}: {view}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Initiates an upload of `bytes`; returns the session.
    pub async fn initiate(
        &self,
        tenant: &Tenant,
        filename: &str,
        content_type: &str,
        size: usize,
    ) -> Value {
        let response = self
            .http
            .post(self.url("/v1/uploads"))
            .bearer_auth(&tenant.key)
            .json(&json!({"filename": filename, "size": size, "content_type": content_type}))
            .send()
            .await
            .expect("initiate");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        response.json().await.expect("json")
    }

    /// Uploads `bytes` through presigned URLs, confirms every part and requests completion;
    /// returns the upload id.
    pub async fn upload(
        &self,
        tenant: &Tenant,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> String {
        let session = self
            .initiate(tenant, filename, content_type, bytes.len())
            .await;
        let upload_id = session["upload_id"]
            .as_str()
            .expect("upload_id")
            .to_string();
        let part_size = session["part_size"].as_u64().expect("part_size") as usize;
        for (index, chunk) in bytes.chunks(part_size).enumerate() {
            let number = index as u64 + 1;
            let url = session["parts"]
                .as_array()
                .and_then(|parts| parts.iter().find(|p| p["part_number"] == number))
                .and_then(|p| p["url"].as_str())
                .expect("part url");
            let put = self
                .http
                .put(url)
                .body(chunk.to_vec())
                .send()
                .await
                .expect("put part");
            assert_eq!(put.status(), 200, "{:?}", put.text().await);
            let etag = put
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .expect("etag")
                .to_string();
            let confirm = self
                .http
                .put(self.url(&format!("/v1/uploads/{upload_id}/parts/{number}")))
                .bearer_auth(&tenant.key)
                .json(&json!({"etag": etag}))
                .send()
                .await
                .expect("confirm");
            assert_eq!(confirm.status(), 200, "{:?}", confirm.text().await);
        }
        let complete = self
            .http
            .post(self.url(&format!("/v1/uploads/{upload_id}/complete")))
            .bearer_auth(&tenant.key)
            .send()
            .await
            .expect("complete");
        assert_eq!(complete.status(), 202, "{:?}", complete.text().await);
        upload_id
    }

    /// `GET /v1/uploads/{id}`.
    pub async fn status(&self, tenant: &Tenant, upload_id: &str) -> Value {
        self.http
            .get(self.url(&format!("/v1/uploads/{upload_id}")))
            .bearer_auth(&tenant.key)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json")
    }

    /// Polls the status until it is one of the terminal states; returns it.
    pub async fn wait_terminal(&self, tenant: &Tenant, upload_id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status(tenant, upload_id).await;
            let state = status["state"].as_str().unwrap_or_default();
            if matches!(
                state,
                "ready" | "rejected" | "failed" | "expired" | "aborted"
            ) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "upload {upload_id} still {state} after {within:?}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Every event of `tenant_id` on `topic` from `since_ms` to the current end, in log order.
pub fn events(topic: &str, tenant_id: &str, since_ms: i64) -> Vec<Event> {
    testing::events_since(&testing::stack_config(), topic, tenant_id, since_ms)
}

/// Events of one upload, by type name.
pub fn of_upload<'a>(events: &'a [Event], upload_id: &str, event_type: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.meta.upload_id.as_deref() == Some(upload_id) && e.event_type() == event_type)
        .collect()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    tributary_schemas::now_micros() / 1000
}

/// A JPEG whose left half is red and right half blue, with EXIF orientation `orientation`.
pub fn oriented_jpeg(width: u32, height: u32, orientation: u16) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        // A little texture so the encoder has something real to do.
        let n = ((x * 7 + y * 13) % 16) as u8;
        if x < width / 2 {
            image::Rgb([210 + n, 20, 20])
        } else {
            image::Rgb([20, 20, 210 + n])
        }
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&image)
        .expect("encode jpeg");
    use tributary_processors::transformer::jpeg_meta;
    jpeg_meta::with_segment(&jpeg, &jpeg_meta::exif_segment(orientation))
}

/// Reads a whole object.
pub async fn get_object(key: &str) -> Vec<u8> {
    let config = testing::stack_config();
    let s3 = tributary_runtime::s3::client(&config.s3);
    let object = s3
        .get_object()
        .bucket(&config.s3.bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
    object
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

/// Keys under `prefix`.
pub async fn list_keys(prefix: &str) -> Vec<String> {
    let config = testing::stack_config();
    let s3 = tributary_runtime::s3::client(&config.s3);
    let listed = s3
        .list_objects_v2()
        .bucket(&config.s3.bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("list");
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}
