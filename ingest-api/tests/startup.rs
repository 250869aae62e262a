//! The `ingest-api` binary over the wire: bad configuration and unreachable engines fail at
//! start-up with one clear line and a non-zero exit; a healthy start serves health, readiness,
//! metrics and the schema registry subset, and stops cleanly on SIGTERM.

use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ingest-api");

/// Runs the binary with extra environment until it exits (at most `limit`).
fn run_to_exit(env: &[(&str, &str)], limit: Duration) -> Output {
    let mut command = Command::new(BIN);
    command
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn ingest-api");
    wait_within(&mut child, limit);
    child.wait_with_output().expect("collect output")
}

fn wait_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ingest-api did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts a failed start: non-zero exit, no panic, and a last stderr line that is the one
/// error line, containing `expected`.
fn assert_clear_failure(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "must fail; stderr:\n{stderr}");
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit code 1; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "no panic:\n{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ingest-api: error: "),
        "last line is the error: {last}"
    );
    assert!(last.contains(expected), "'{expected}' in: {last}");
}

#[test]
fn invalid_configuration_is_one_line_and_exit_1() {
    for (key, value, expected) in [
        ("TRIBUTARY_KAFKA__BROKERS", "", "kafka.brokers"),
        ("TRIBUTARY_S3__ENDPOINT", "", "s3.endpoint"),
        ("TRIBUTARY_HTTP__LISTEN", "not-an-address", "listen"),
        (
            "TRIBUTARY_CQL__REPLICATION_FACTOR",
            "-3",
            "replication_factor",
        ),
    ] {
        let output = run_to_exit(&[(key, value)], Duration::from_secs(10));
        assert_clear_failure(&output, expected);
    }
}

#[test]
fn unreachable_engines_fail_fast_naming_the_engine() {
    let quick = [
        ("TRIBUTARY_KAFKA__CONNECT_TIMEOUT_MS", "2000"),
        ("TRIBUTARY_CQL__CONNECT_TIMEOUT_MS", "2000"),
    ];
    for (key, value, expected) in [
        (
            "TRIBUTARY_KAFKA__BROKERS",
            "127.0.0.1:1",
            "kafka at 127.0.0.1:1 is unreachable",
        ),
        (
            "TRIBUTARY_CQL__CONTACT_POINTS",
            "[\"127.0.0.1:1\"]",
            "cql at 127.0.0.1:1 is unreachable",
        ),
        (
            "TRIBUTARY_S3__ENDPOINT",
            "http://127.0.0.1:1",
            "s3 bucket tributary at http://127.0.0.1:1 is unreachable",
        ),
    ] {
        let mut env = quick.to_vec();
        env.push((key, value));
        let started = Instant::now();
        let output = run_to_exit(&env, Duration::from_secs(60));
        assert_clear_failure(&output, expected);
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "{key}: took {:?}",
            started.elapsed()
        );
    }
}

/// Kills the server if an assertion fails first, so no process outlives the test.
struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test]
async fn healthy_start_serves_probes_metrics_and_registry_then_stops_on_sigterm() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut guard = ServerGuard(
        Command::new(BIN)
            .env("TRIBUTARY_HTTP__LISTEN", &listen)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let child = &mut guard.0;
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();

    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        match http.get(format!("{base}/healthz")).send().await {
            Ok(response) => break response,
            Err(_) if Instant::now() < deadline => {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    panic!("ingest-api exited early: {status}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("ingest-api never answered: {error}"),
        }
    };
    assert_eq!(health.status(), 200);

    let ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["checks"]["kafka"], "ok", "{body}");
    assert_eq!(body["checks"]["cql"], "ok", "{body}");
    assert_eq!(body["checks"]["storage"], "ok", "{body}");

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("text");
    assert!(text.contains("tributary_build_info"), "{text}");

    let missing = http
        .get(format!("{base}/no/such/route"))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("json error");
    assert_eq!(body["error"]["code"], "not_found");

    let subjects: Vec<String> = http
        .get(format!("{base}/subjects"))
        .send()
        .await
        .expect("subjects")
        .json()
        .await
        .expect("json");
    assert!(
        subjects
            .iter()
            .any(|s| s == "tributary.events.UploadInitiated"),
        "{subjects:?}"
    );
    let latest: serde_json::Value = http
        .get(format!(
            "{base}/subjects/tributary.events.UploadInitiated/versions/latest"
        ))
        .send()
        .await
        .expect("latest")
        .json()
        .await
        .expect("json");
    let id = latest["id"].as_u64().expect("id");
    let by_id = http
        .get(format!("{base}/schemas/ids/{id}"))
        .send()
        .await
        .expect("by id");
    assert_eq!(
        by_id
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/vnd.schemaregistry.v1+json")
    );
    let by_id: serde_json::Value = by_id.json().await.expect("json");
    assert_eq!(by_id["schema"], latest["schema"]);
    let unknown = http
        .get(format!("{base}/schemas/ids/999999"))
        .send()
        .await
        .expect("unknown");
    assert_eq!(unknown.status(), 404);
    let body: serde_json::Value = unknown.json().await.expect("json");
    assert_eq!(body["error_code"], 40403);

    // Graceful shutdown: SIGTERM ends the process with success.
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = wait_within(child, Duration::from_secs(15));
    assert!(status.success(), "clean exit after SIGTERM: {status}");
}
