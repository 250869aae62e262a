//! The `tributary` command against the real stack: the ingest-api, assembler and validator
//! binaries and an in-process projector on the local Kafka, Cassandra and Garage. Uploads are
//! killed mid-file and resumed; the stored object is checked byte for byte (sha256).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tributary_runtime::{testing, topics};
use tributary_schemas::EventPayload;

const ADMIN: &str = "dev-admin-token";
const CLI: &str = env!("CARGO_BIN_EXE_tributary");

/// The services these tests run, built next to the CLI (other packages' binaries, which
/// Cargo does not build for this package's tests).
fn service_exe(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--locked",
                "-p",
                "tributary-ingest-api",
                "-p",
                "tributary-processors",
                "--bin",
                "ingest-api",
                "--bin",
                "assembler",
                "--bin",
                "validator",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the services failed");
    });
    PathBuf::from(CLI).with_file_name(name)
}

/// Tests share the engines and consumer positions: one stack at a time.
fn exclusive() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// A free port on 127.0.0.4 (not 127.0.0.1, whose ephemeral ports outgoing connections
/// keep taking).
fn free_addr() -> String {
    let port = std::net::TcpListener::bind(("127.0.0.4", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    format!("127.0.0.4:{port}")
}

/// The API, the assembler, the validator and a projector, in fresh consumer groups.
struct Stack {
    _exclusive: tokio::sync::MutexGuard<'static, ()>,
    children: Vec<Child>,
    base: String,
    projector: CancellationToken,
    http: reqwest::Client,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.projector.cancel();
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Stack {
    async fn start() -> Self {
        let exclusive = exclusive().lock().await;
        let config = testing::stack_config();
        let suffix = testing::unique("cli");
        let mut children = Vec::new();
        for name in ["assembler", "validator"] {
            let group = format!("{name}-{suffix}");
            testing::start_group_at_end(&config, &group, topics::LIFECYCLE)
                .await
                .expect("position group");
            children.push(
                Command::new(service_exe(name))
                    .env("TRIBUTARY_HTTP__LISTEN", free_addr())
                    .env("TRIBUTARY_PROCESSORS__GROUP", group)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("spawn processor"),
            );
        }
        let group = format!("projector-{suffix}");
        for topic in [topics::LIFECYCLE, topics::TENANT_ADMIN, topics::PROGRESS] {
            testing::start_group_at_end(&config, &group, topic)
                .await
                .expect("position projector");
        }
        let projector = CancellationToken::new();
        tokio::spawn({
            let stop = projector.clone();
            async move {
                if let Err(error) =
                    tributary_projections::projector::run(&config, &group, stop).await
                {
                    eprintln!("test projector failed: {error}");
                }
            }
        });
        let addr = free_addr();
        children.push(
            Command::new(service_exe("ingest-api"))
                .env("TRIBUTARY_HTTP__LISTEN", &addr)
                .env("TRIBUTARY_API__MANAGE_BUCKET_CORS", "false")
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn ingest-api"),
        );
        let stack = Self {
            _exclusive: exclusive,
            children,
            base: format!("http://{addr}"),
            projector,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while stack
            .http
            .get(format!("{}/healthz", stack.base))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "ingest-api did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stack
    }

    /// Creates a tenant with `policy`; returns (tenant id, API key).
    async fn tenant(&self, policy: Value) -> (String, String) {
        let mut body = json!({ "name": testing::unique("cli-tenant") });
        if let (Some(body), Some(policy)) = (body.as_object_mut(), policy.as_object()) {
            body.extend(policy.clone());
        }
        let created: Value = self
            .http
            .post(format!("{}/v1/admin/tenants", self.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .expect("create tenant")
            .json()
            .await
            .expect("json");
        (
            created["tenant_id"].as_str().expect("tenant_id").into(),
            created["api_key"].as_str().expect("api_key").into(),
        )
    }

    /// The CLI with this stack's URL and `key`, and its state in `state_dir`.
    fn cli(&self, key: &str, state_dir: &Path) -> Command {
        let mut command = Command::new(CLI);
        command
            .env("TRIBUTARY_API_URL", &self.base)
            .env("TRIBUTARY_API_KEY", key)
            .env("TRIBUTARY_STATE_DIR", state_dir)
            .stdin(Stdio::null());
        command
    }
}

/// `len` bytes that do not repeat (so a misplaced part changes the hash).
fn random_file(dir: &Path, name: &str, len: usize) -> (PathBuf, String) {
    let mut bytes = Vec::with_capacity(len);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    let path = dir.join(name);
    std::fs::write(&path, &bytes).expect("write file");
    (path, hex::encode(Sha256::digest(&bytes)))
}

fn confirmed_in_state(state_dir: &Path) -> Option<(String, Vec<u64>)> {
    let entry = std::fs::read_dir(state_dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "json"))?;
    let state: Value = serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
    let parts = state["confirmed"]
        .as_array()?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    Some((state["upload_id"].as_str()?.to_string(), parts))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn stdout_json(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

// Multi-threaded: the in-process projector keeps running while the test waits on the CLI's
// processes (blocking calls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_killed_mid_file_resumes_and_stores_the_exact_bytes() {
    let since = now_ms();
    let stack = Stack::start().await;
    let (tenant, key) = stack.tenant(json!({})).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("state");
    // 12 parts of 8 MiB.
    let (file, sha256) = random_file(dir.path(), "archive.bin", 96 << 20);

    // First run, throttled, one part at a time: killed once a few parts are confirmed.
    let mut first = stack
        .cli(&key, &state_dir)
        .args(["upload", "--json", "--parallel", "1", "--limit-rate", "16M"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cli");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (upload_id, before) = loop {
        if let Some((id, parts)) = confirmed_in_state(&state_dir)
            && parts.len() >= 3
        {
            first.kill().expect("kill");
            first.wait().expect("reap");
            break confirmed_in_state(&state_dir)
                .map(|(_, p)| (id, p))
                .expect("state");
        }
        assert!(Instant::now() < deadline, "no parts confirmed in time");
        assert!(
            first.try_wait().expect("poll").is_none(),
            "the first run ended before it could be interrupted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(before.len() < 12, "killed too late: {before:?}");

    // `watch` follows the upload from "uploading" to "ready" while the resume runs.
    let watcher = stack
        .cli(&key, &state_dir)
        .args(["watch", &upload_id, "--timeout", "120"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn watch");

    let resumed = stack
        .cli(&key, &state_dir)
        .args(["upload", "--json"])
        .arg(&file)
        .output()
        .expect("run cli");
    assert!(
        resumed.status.success(),
        "{:?} {}",
        resumed.status,
        String::from_utf8_lossy(&resumed.stderr)
    );
    let report = stdout_json(&resumed).pop().expect("json report");
    assert_eq!(report["upload_id"], upload_id.as_str());
    assert_eq!(report["sha256"], sha256.as_str());
    assert_eq!(report["parts"], 12);
    assert_eq!(report["parts_resumed"], before.len());
    assert_eq!(report["parts_sent"], 12 - before.len());
    assert!(
        confirmed_in_state(&state_dir).is_none(),
        "state kept after completion"
    );

    let watched = watcher.wait_with_output().expect("watch");
    let lines = String::from_utf8_lossy(&watched.stdout).to_string();
    assert!(watched.status.success(), "watch: {lines}");
    let states: Vec<&str> = lines
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(states.first(), Some(&"uploading"), "{lines}");
    assert_eq!(states.last(), Some(&"ready"), "{lines}");

    // No confirmed part was sent again: each part was confirmed exactly once.
    let config = testing::stack_config();
    let log = testing::events_since(&config, topics::LIFECYCLE, &tenant, since);
    let mut confirmations = vec![0; 12];
    for event in &log {
        if let EventPayload::PartConfirmed(part) = &event.payload
            && event.meta.upload_id.as_deref() == Some(upload_id.as_str())
        {
            confirmations[usize::try_from(part.part_number - 1).expect("part")] += 1;
        }
    }
    assert_eq!(confirmations, vec![1; 12]);

    // The stored object is the file, byte for byte.
    let s3 = tributary_runtime::s3::client(&config.s3);
    let object = s3
        .get_object()
        .bucket(&config.s3.bucket)
        .key(format!("uploads/{tenant}/{upload_id}/original"))
        .send()
        .await
        .expect("get original");
    let stored = object.body.collect().await.expect("body").into_bytes();
    assert_eq!(hex::encode(Sha256::digest(&stored)), sha256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_outages_have_their_exit_codes() {
    let stack = Stack::start().await;
    let (_, key) = stack.tenant(json!({ "max_file_size": 1_048_576 })).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("state");
    let (big, _) = random_file(dir.path(), "big.bin", 2 << 20);
    let (small, _) = random_file(dir.path(), "photo.png", 4096);

    // Too large for the tenant's policy: refused (3), with the API's reason.
    let output = stack
        .cli(&key, &state_dir)
        .args(["upload"])
        .arg(&big)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("413"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A wrong key: refused (3).
    let output = stack
        .cli("trk_nobody_secret", &state_dir)
        .args(["upload"])
        .arg(&small)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(3));

    // Nobody listening: unavailable (4) after the retries.
    let output = stack
        .cli(&key, &state_dir)
        .args([
            "--api",
            "http://127.0.0.4:9",
            "--retries",
            "2",
            "status",
            "x",
        ])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(4));

    // Bytes that are not the declared PNG: accepted for upload, then rejected by the
    // validator; `upload --wait` ends with 5 and the reason.
    let output = stack
        .cli(&key, &state_dir)
        .args(["upload", "--wait"])
        .arg(&small)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(5), "{stdout}");
    assert!(stdout.contains("rejected"), "{stdout}");

    // Usage errors: 2.
    let output = stack
        .cli(&key, &state_dir)
        .args(["upload"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
}
