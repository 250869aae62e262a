//! Browser clients in headless Chromium (playwright-core driving Debian's `/usr/bin/chromium`,
//! scripts in `tests/browser-node/`) against the real stack: each test starts the ingest-api,
//! the assembler, validator and transformer (fresh consumer groups at the end of their topics),
//! the realtime bridge and an in-process projector.
//!
//! - `uploader.mjs`: the web uploader page (`ingest-api/web/`, served at `/`) uploads a 3-part
//!   noisy PNG, is reloaded mid-upload, gets the file again and finishes without re-sending a
//!   confirmed part, and shows the thumbnail after `UploadReady` arrived over SSE.
//! - `uppy.mjs`: real Uppy (`@uppy/core` + `@uppy/aws-s3`) in the page uploads the same kind of
//!   file through the Companion-compatible routes, authenticated by the session cookie.
//!
//! This side then checks the log (each part confirmed exactly once, `UploadReady`).
//!
//! `TRIBUTARY_SCREENSHOT=docs/web-uploader.png` (relative to the repository) keeps a
//! screenshot of the finished page.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tributary_runtime::{testing, topics};
use tributary_schemas::EventPayload;

const ADMIN: &str = "dev-admin-token";
const MIB: i64 = 1024 * 1024;

/// The other services, built next to the API (Cargo builds only this package's binaries for
/// its tests).
fn service_exe(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--locked",
                "-p",
                "tributary-processors",
                "-p",
                "tributary-realtime-bridge",
                "--bin",
                "assembler",
                "--bin",
                "validator",
                "--bin",
                "transformer",
                "--bin",
                "realtime-bridge",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the services failed");
    });
    PathBuf::from(env!("CARGO_BIN_EXE_ingest-api")).with_file_name(name)
}

/// This package's directory, read at run time (a compile-time path goes stale when a shared
/// target directory serves another checkout).
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// A free port on 127.0.0.4 (not 127.0.0.1, whose ephemeral ports outgoing connections keep
/// taking).
fn free_addr() -> String {
    let port = std::net::TcpListener::bind(("127.0.0.4", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    format!("127.0.0.4:{port}")
}

/// Child processes and the projector, stopped when dropped.
struct Services {
    children: Vec<Child>,
    projector: CancellationToken,
}

impl Drop for Services {
    fn drop(&mut self) {
        self.projector.cancel();
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn wait_healthy(http: &reqwest::Client, base: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Tests share the engines: one stack at a time.
fn exclusive() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// The services, a tenant of images up to 40 MiB and a browser token of it.
struct Stack {
    _services: Services,
    _exclusive: tokio::sync::MutexGuard<'static, ()>,
    base: String,
    http: reqwest::Client,
    tenant: String,
    key: String,
    token: String,
}

impl Stack {
    async fn start() -> Self {
        let exclusive = exclusive().lock().await;
        assert!(
            node_dir().join("node_modules/playwright-core").is_dir(),
            "run `npm ci` in {} (./devstack test does)",
            node_dir().display()
        );
        assert!(
            Path::new(&chromium()).exists(),
            "{} is missing: apt-get install chromium (./devstack test does)",
            chromium()
        );
        let config = testing::stack_config();
        let suffix = testing::unique("browser");
        let mut services = Services {
            children: Vec::new(),
            projector: CancellationToken::new(),
        };
        for (name, topic) in [
            ("assembler", topics::LIFECYCLE),
            ("validator", topics::LIFECYCLE),
            ("transformer", topics::MEDIA_JOBS),
        ] {
            let group = format!("{name}-{suffix}");
            testing::start_group_at_end(&config, &group, topic)
                .await
                .expect("position the group");
            services.children.push(
                Command::new(service_exe(name))
                    .env("TRIBUTARY_HTTP__LISTEN", free_addr())
                    .env("TRIBUTARY_PROCESSORS__GROUP", group)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("spawn {name}: {e}")),
            );
        }
        let group = format!("projector-{suffix}");
        for topic in [topics::LIFECYCLE, topics::TENANT_ADMIN, topics::PROGRESS] {
            testing::start_group_at_end(&config, &group, topic)
                .await
                .expect("position the projector");
        }
        tokio::spawn({
            let stop = services.projector.clone();
            async move {
                if let Err(error) =
                    tributary_projections::projector::run(&config, &group, stop).await
                {
                    eprintln!("test projector failed: {error}");
                }
            }
        });

        // The page's origin is the API's; storage (bucket CORS, set by the API at start-up)
        // and the bridge must let it in. The local defaults stay allowed for the dev stack.
        let api_addr = free_addr();
        let bridge_addr = free_addr();
        let base = format!("http://{api_addr}");
        let origins = json!([base, "http://127.0.0.1:8080", "http://localhost:8080"]).to_string();
        services.children.push(
            Command::new(service_exe("realtime-bridge"))
                .env("TRIBUTARY_HTTP__LISTEN", &bridge_addr)
                .env("TRIBUTARY_API__CORS_ORIGINS", &origins)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn realtime-bridge"),
        );
        services.children.push(
            Command::new(env!("CARGO_BIN_EXE_ingest-api"))
                .env("TRIBUTARY_HTTP__LISTEN", &api_addr)
                .env("TRIBUTARY_API__CORS_ORIGINS", &origins)
                .env("TRIBUTARY_API__MANAGE_BUCKET_CORS", "true")
                .env(
                    "TRIBUTARY_API__EVENTS_BASE_URL",
                    format!("http://{bridge_addr}"),
                )
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn ingest-api"),
        );
        let http = reqwest::Client::new();
        wait_healthy(&http, &base, "ingest-api").await;
        wait_healthy(&http, &format!("http://{bridge_addr}"), "realtime-bridge").await;

        // A tenant of images up to 40 MiB, and a browser token as its backend would mint it.
        let created: Value = http
            .post(format!("{base}/v1/admin/tenants"))
            .bearer_auth(ADMIN)
            .json(&json!({
                "name": testing::unique("browser-tenant"),
                "allowed_content_types": ["image/*"],
                "max_file_size": 40 * MIB,
            }))
            .send()
            .await
            .expect("create tenant")
            .json()
            .await
            .expect("json");
        let tenant = created["tenant_id"]
            .as_str()
            .expect("tenant_id")
            .to_string();
        let key = created["api_key"].as_str().expect("api_key").to_string();
        let token: Value = http
            .post(format!("{base}/v1/tokens"))
            .bearer_auth(&key)
            .json(&json!({"capabilities": ["upload", "subscribe"]}))
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        let token = token["token"].as_str().expect("token").to_string();
        Self {
            _services: services,
            _exclusive: exclusive,
            base,
            http,
            tenant,
            key,
            token,
        }
    }

    /// Runs `tests/browser-node/{script}` with this stack's origin and token (and `env`);
    /// returns the JSON line it printed last.
    async fn node(&self, script: &str, work: &Path, env: &[(&str, &Path)]) -> Value {
        let mut command = Command::new("node");
        command
            .arg(node_dir().join(script))
            .current_dir(node_dir())
            .env("BASE", &self.base)
            .env("TOKEN", &self.token)
            .env("WORK", work)
            .env("CHROMIUM", chromium())
            .envs(env.iter().copied())
            .stderr(Stdio::inherit());
        let output = tokio::task::spawn_blocking(move || command.output().expect("run node"))
            .await
            .expect("join");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{script} failed ({}): {stdout}",
            output.status
        );
        let results: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("results of {script} ({e}): {stdout}"));
        eprintln!("{script}: {results}");
        results
    }

    /// How often each part of `upload_id` was confirmed since `since_ms`, and whether it
    /// became ready, according to the log.
    async fn log_of(&self, upload_id: &str, since_ms: i64) -> (BTreeMap<i32, usize>, bool) {
        let tenant = self.tenant.clone();
        let events = tokio::task::spawn_blocking(move || {
            testing::events_since(
                &testing::stack_config(),
                topics::LIFECYCLE,
                &tenant,
                since_ms,
            )
        })
        .await
        .expect("join");
        let mut confirmations: BTreeMap<i32, usize> = BTreeMap::new();
        let mut ready = false;
        for event in events
            .iter()
            .filter(|e| e.meta.upload_id.as_deref() == Some(upload_id))
        {
            match &event.payload {
                EventPayload::PartConfirmed(p) => {
                    *confirmations.entry(p.part_number).or_default() += 1;
                }
                EventPayload::UploadReady(_) => ready = true,
                _ => {}
            }
        }
        (confirmations, ready)
    }
}

fn node_dir() -> PathBuf {
    manifest_dir().join("tests/browser-node")
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn scratch() -> PathBuf {
    let work = std::env::temp_dir().join(testing::unique("tributary-browser"));
    std::fs::create_dir_all(&work).expect("scratch dir");
    work
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_uploads_reloads_mid_upload_resumes_and_shows_the_thumbnail() {
    let stack = Stack::start().await;
    let base = &stack.base;

    // The page itself, and the policy it checks files against.
    let page = stack.http.get(base).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .is_ok_and(|csp| csp.contains("script-src 'self'"))
    );
    assert!(page.text().await.expect("html").contains("/app/app.js"));
    let policy: Value = stack
        .http
        .get(format!("{base}/v1/policy"))
        .bearer_auth(&stack.token)
        .send()
        .await
        .expect("policy")
        .json()
        .await
        .expect("json");
    assert_eq!(policy["allowed_content_types"], json!(["image/*"]));
    assert_eq!(policy["max_file_size"], 40 * MIB);

    let work = scratch();
    let screenshot = std::env::var("TRIBUTARY_SCREENSHOT")
        .map(|p| manifest_dir().join("..").join(p))
        .unwrap_or_else(|_| work.join("web-uploader.png"));
    let since = tributary_schemas::now_micros() / 1000;
    let results = stack
        .node("uploader.mjs", &work, &[("SCREENSHOT", &screenshot)])
        .await;
    assert!(screenshot.is_file(), "screenshot saved");
    let _ = std::fs::remove_dir_all(&work);

    // The log agrees: every part confirmed exactly once (none re-sent after the reload), and
    // the upload is ready.
    let upload_id = results["upload_id"].as_str().expect("upload_id");
    let (confirmations, ready) = stack.log_of(upload_id, since).await;
    assert_eq!(
        confirmations,
        BTreeMap::from([(1, 1), (2, 1), (3, 1)]),
        "each part confirmed once"
    );
    assert!(ready, "UploadReady in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uppy_in_the_browser_uploads_through_the_companion_routes_until_ready() {
    let stack = Stack::start().await;
    let work = scratch();
    let since = tributary_schemas::now_micros() / 1000;
    let results = stack.node("uppy.mjs", &work, &[]).await;
    let _ = std::fs::remove_dir_all(&work);
    let upload_id = results["upload_id"].as_str().expect("upload_id");
    let parts = results["parts"].as_u64().expect("parts");
    assert_eq!(
        results["key"],
        format!("uploads/{}/{upload_id}/original", stack.tenant)
    );

    // The pipeline takes it from there: ready, with a thumbnail.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let status: Value = stack
            .http
            .get(format!("{}/v1/uploads/{upload_id}", stack.base))
            .bearer_auth(&stack.key)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        if status["state"] == "ready" || status["state"] == "rejected" {
            break status;
        }
        assert!(Instant::now() < deadline, "not ready in time: {status}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(status["state"], "ready", "{status}");
    // Uppy plans its own parts: the session's size is known from the confirmed parts.
    assert_eq!(status["bytes_confirmed"], results["size"], "{status}");
    assert_eq!(status["parts_confirmed"], parts, "{status}");
    assert!(
        status["variants"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["variant"] == "thumb")),
        "{status}"
    );
    let (confirmations, ready) = stack.log_of(upload_id, since).await;
    let expected: BTreeMap<i32, usize> = (1..=i32::try_from(parts).expect("parts"))
        .map(|n| (n, 1))
        .collect();
    assert_eq!(confirmations, expected, "each Uppy part confirmed once");
    assert!(ready, "UploadReady in the log");
}
