//! Shared helpers of the ops command's tests: running `tributary-ops`, the services it talks
//! to (built next to it), and events published to the real Kafka.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tributary_runtime::events::EventPublisher;
use tributary_runtime::kafka::{Delivery, Producer};
use tributary_runtime::{Config, testing};
use tributary_schemas::{Event, SchemaCatalog};

/// The command under test.
pub const OPS: &str = env!("CARGO_BIN_EXE_tributary-ops");

/// The development admin token (the API's default).
pub const ADMIN: &str = "dev-admin-token";

/// Runs `tributary-ops ARGS` to completion (bounded by the command's own `--timeout`s).
pub fn ops(args: &[&str]) -> Output {
    ops_with_env(args, &[])
}

/// [`ops`] with extra environment variables (e.g. another Kafka configuration).
pub fn ops_with_env(args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(OPS)
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run tributary-ops")
}

/// Runs `tributary-ops ARGS`, asserts success, and returns stdout.
pub fn ops_ok(args: &[&str]) -> String {
    ops_ok_with_env(args, &[])
}

/// [`ops_ok`] with extra environment variables.
pub fn ops_ok_with_env(args: &[&str], env: &[(&str, String)]) -> String {
    let output = ops_with_env(args, env);
    assert!(
        output.status.success(),
        "tributary-ops {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// The JSON lines of an output.
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not json ({e}): {l}")))
        .collect()
}

/// Other packages' binaries, built (or found up to date) next to this one: Cargo does not
/// build them for this package's tests.
pub fn service_exe(name: &str) -> PathBuf {
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
                "-p",
                "tributary-projections",
                "--bin",
                "ingest-api",
                "--bin",
                "assembler",
                "--bin",
                "validator",
                "--bin",
                "transformer",
                "--bin",
                "projector",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the services failed");
    });
    PathBuf::from(OPS).with_file_name(name)
}

/// A free port on 127.0.0.5 (not 127.0.0.1, whose ephemeral ports the tests' outgoing
/// connections keep taking).
pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind(("127.0.0.5", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    format!("127.0.0.5:{port}")
}

/// Child processes killed when dropped.
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the ingest-api with `env` on a free address; returns its base URL once healthy.
pub async fn start_api(children: &mut Children, env: &[(&str, &str)]) -> String {
    let addr = free_addr();
    children.0.push(
        Command::new(service_exe("ingest-api"))
            .env("TRIBUTARY_HTTP__LISTEN", &addr)
            .env("TRIBUTARY_API__MANAGE_BUCKET_CORS", "false")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn ingest-api"),
    );
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "ingest-api did not start in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    base
}

/// A publisher with the embedded schema ids.
pub fn publisher(config: &Config) -> EventPublisher {
    EventPublisher::new(
        Producer::new(&config.kafka, "ops-tests").expect("producer"),
        Arc::new(SchemaCatalog::embedded().expect("catalog")),
    )
}

/// Publishes `events` in order; returns where each landed.
pub async fn publish(config: &Config, events: &[Event]) -> Vec<Delivery> {
    let publisher = publisher(config);
    let mut deliveries = Vec::new();
    for event in events {
        deliveries.push(publisher.publish(event).await.expect("publish"));
    }
    deliveries
}

/// A tenant id unique to this run whose lifecycle partition is `partition` (so tests can put
/// two tenants in one partition).
pub fn tenant_in_partition(partitions: i32, partition: i32) -> String {
    loop {
        let tenant = testing::unique("opst");
        if tributary_runtime::kafka::partition_for(tenant.as_bytes(), partitions) == partition {
            return tenant;
        }
    }
}

/// Polls `check` every 500 ms until it returns `Some`, for at most `within`.
pub async fn wait_for<T>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
