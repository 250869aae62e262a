//! Shared helpers of the ingest-api integration tests: run the real binary against the local
//! stack, create tenants through the admin API, and read back what reached Kafka.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tributary_runtime::{testing, topics};
use tributary_schemas::Event;

/// The development admin token (the API's default).
pub const ADMIN: &str = "dev-admin-token";

/// A running `ingest-api` process, killed when dropped.
pub struct Api {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// HTTP client.
    pub http: reqwest::Client,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tenant created for a test.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Its id.
    pub id: String,
    /// Its first API key.
    pub key: String,
}

impl Api {
    /// Starts the binary with `env` on a free port and waits until it answers.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_ingest-api"))
            .env("TRIBUTARY_HTTP__LISTEN", &listen)
            .env("RUST_LOG", "warn")
            // The bucket's CORS rule is shared state: only the test about it changes it.
            .env("TRIBUTARY_API__MANAGE_BUCKET_CORS", "false")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ingest-api");
        let mut api = Self {
            child,
            base: format!("http://{listen}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if api.http.get(api.url("/healthz")).send().await.is_ok() {
                return api;
            }
            if let Ok(Some(status)) = api.child.try_wait() {
                panic!("ingest-api exited during start-up: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "ingest-api did not start within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

    /// `GET /v1/admin/tenants/{id}`.
    pub async fn tenant_usage(&self, tenant: &Tenant) -> (i64, i64) {
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

    /// `POST /v1/uploads` as `tenant`; returns status and body.
    pub async fn initiate(&self, tenant: &Tenant, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url("/v1/uploads"))
            .bearer_auth(&tenant.key)
            .json(body)
            .send()
            .await
            .expect("initiate");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Every lifecycle event of `tenant_id` currently in Kafka, in log order, read from the
/// offsets at `since_ms` (milliseconds since the epoch) up to each partition's end.
pub fn lifecycle_events(tenant_id: &str, since_ms: i64) -> Vec<Event> {
    testing::events_since(
        &testing::stack_config(),
        topics::LIFECYCLE,
        tenant_id,
        since_ms,
    )
}

/// Milliseconds since the epoch, to mark where a test starts reading the log.
pub fn now_ms() -> i64 {
    tributary_schemas::now_micros() / 1000
}

/// While an engine is down: `POST /v1/uploads` of `body` answers 503 `unavailable` with
/// `Retry-After` within `within` (never a 2xx, which promises a durable event), and the
/// tenant's reservation was released.
pub async fn assert_initiation_unavailable(
    api: &Api,
    tenant: &Tenant,
    body: &Value,
    within: Duration,
) {
    let started = Instant::now();
    let response = api
        .http
        .post(api.url("/v1/uploads"))
        .bearer_auth(&tenant.key)
        .json(body)
        .send()
        .await
        .expect("answer while an engine is down");
    assert_eq!(response.status(), 503);
    assert!(
        response.headers().contains_key("retry-after"),
        "503 carries Retry-After"
    );
    let error: Value = response.json().await.expect("json error");
    assert_eq!(error["error"]["code"], "unavailable");
    assert!(started.elapsed() < within, "answered within {within:?}");
    assert_eq!(
        api.tenant_usage(tenant).await,
        (0, 0),
        "the reservation was released"
    );
}

/// After an engine came back: initiates `body` until it is created (only 503s allowed
/// meanwhile, for at most `within`) and returns the session.
pub async fn initiate_after_recovery(
    api: &Api,
    tenant: &Tenant,
    body: &Value,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, session) = api.initiate(tenant, body).await;
        if status == 201 {
            return session;
        }
        assert_eq!(status, 503, "only 503 while recovering: {session}");
        assert!(Instant::now() < deadline, "no recovery within {within:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One engine of the local stack (`kafka`, `garage`, ...) stopped with `./devstack stop` and
/// started again however the test ends, so later tests find it running. Only tests that
/// have a test binary of their own may use it: no other test may see the engine gone.
pub struct EngineStopped(&'static str);

impl EngineStopped {
    /// Stops `engine`.
    pub fn stop(engine: &'static str) -> Self {
        devstack(&["stop", engine]);
        Self(engine)
    }
}

impl Drop for EngineStopped {
    fn drop(&mut self) {
        devstack(&["start", self.0]);
    }
}

fn devstack(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../devstack");
    let status = Command::new(script)
        .args(args)
        .status()
        .expect("run devstack");
    assert!(status.success(), "./devstack {args:?} failed");
}

/// The event types of `events`, in order.
pub fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::event_type).collect()
}
