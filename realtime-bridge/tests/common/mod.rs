//! Shared helpers of the bridge tests: an in-process bridge on a loopback port against the
//! real Kafka, a publisher of events, tokens, and SSE clients (reqwest, and a raw socket with
//! a tiny receive buffer for the slow reader).

#![allow(dead_code, reason = "each test uses a different subset")]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio_util::sync::CancellationToken;
use tributary_realtime_bridge::{BridgeSettings, Settings, listen, serve};
use tributary_runtime::events::EventPublisher;
use tributary_runtime::kafka::Producer;
use tributary_runtime::token::{Capability, Claims, TokenSigner};
use tributary_runtime::{Config, telemetry, testing};
use tributary_schemas::{
    Event, EventMeta, PartConfirmed, SchemaCatalog, UploadInitiated, UploadProgress,
};

/// The token secret of the test bridges.
pub const SECRET: &str = "realtime-bridge-tests-secret-0123456789abcdef";

/// A bridge served in-process on a free loopback port; stopped when dropped.
pub struct Bridge {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Stops it.
    pub stop: CancellationToken,
    /// The stack configuration it uses.
    pub config: Config,
    /// Signs tokens it accepts.
    pub signer: TokenSigner,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts a bridge with default settings changed by `tune`.
pub async fn start_bridge(tune: impl FnOnce(&mut BridgeSettings)) -> Bridge {
    let config = testing::stack_config();
    let telemetry = telemetry::init("realtime-bridge-tests", &config.telemetry).expect("telemetry");
    let mut settings = Settings::with_secret(SECRET);
    tune(&mut settings.bridge);
    // Bound as the binary binds it (send buffer included).
    let listener = listen(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        false,
        settings.bridge.socket_send_buffer,
    )
    .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let server = serve(config.clone(), settings, telemetry, listener, stop.clone());
    tokio::spawn(async move {
        if let Err(error) = server.await {
            panic!("bridge failed: {error}");
        }
    });
    Bridge {
        addr,
        stop,
        config,
        signer: TokenSigner::new(SECRET.as_bytes()),
    }
}

impl Bridge {
    /// A token of `tenant` with `cap`, valid for `ttl_secs` (negative: already expired).
    pub fn token(&self, tenant: &str, cap: &[Capability], ttl_secs: i64) -> String {
        let now = tributary_schemas::now_micros() / 1_000_000;
        self.signer.sign(&Claims {
            tid: tenant.to_string(),
            cap: cap.to_vec(),
            exp: now + ttl_secs,
            iat: now,
        })
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Opens an SSE stream with a bearer token and an optional `Last-Event-ID` header.
    pub async fn open(&self, path: &str, token: &str, last_event_id: Option<i64>) -> Sse {
        let mut request = reqwest::Client::new()
            .get(self.url(path))
            .header("authorization", format!("Bearer {token}"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = tokio::time::timeout(Duration::from_secs(20), request.send())
            .await
            .expect("response in time")
            .expect("request");
        Sse::from_response(response)
    }
}

/// The lifecycle partition of a tenant, as the producers choose it.
pub fn partition_of(tenant: &str) -> i32 {
    let partitions = tributary_runtime::topics::spec(tributary_runtime::topics::LIFECYCLE)
        .expect("declared")
        .partitions;
    tributary_runtime::kafka::partition_for(tenant.as_bytes(), partitions)
}

/// A publisher with the embedded schema ids.
pub fn publisher(config: &Config) -> EventPublisher {
    let producer = Producer::new(&config.kafka, "realtime-bridge-tests").expect("producer");
    EventPublisher::new(
        producer,
        Arc::new(SchemaCatalog::embedded().expect("catalog")),
    )
}

fn meta(tenant: &str, upload: &str) -> EventMeta {
    EventMeta::new(tenant, Some(upload.to_string()), "tests", upload, None)
}

/// `UploadInitiated` of a session that expires in a day (so the janitor leaves it alone).
pub fn initiated(tenant: &str, upload: &str) -> Event {
    Event::new(
        meta(tenant, upload),
        UploadInitiated {
            filename: "photo.jpg".into(),
            size: 5_242_880,
            content_type: "image/jpeg".into(),
            bucket: "tributary".into(),
            object_key: format!("uploads/{tenant}/{upload}/original"),
            s3_upload_id: "bridge-test".into(),
            part_size: 5_242_880,
            part_count: 10_000,
            sha256: None,
            metadata: Default::default(),
            expires_at: tributary_schemas::now_micros() + 86_400_000_000,
        },
    )
}

/// `PartConfirmed` of part `n`, with an etag of `etag_len` characters (bigger frames).
pub fn part(tenant: &str, upload: &str, n: i32, etag_len: usize) -> Event {
    Event::new(
        meta(tenant, upload),
        PartConfirmed {
            part_number: n,
            etag: format!("\"{n}-{}\"", "e".repeat(etag_len)),
            size: 5_242_880,
        },
    )
}

/// `UploadProgress` at `percent`.
pub fn progress(tenant: &str, upload: &str, percent: f64) -> Event {
    Event::new(
        meta(tenant, upload),
        UploadProgress {
            stage: "uploading".into(),
            bytes_done: (percent * 1000.0) as i64,
            bytes_total: 100_000,
            percent,
        },
    )
}

/// One SSE block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    /// `id:`.
    pub id: Option<String>,
    /// `event:`.
    pub event: Option<String>,
    /// `data:` lines joined.
    pub data: String,
    /// `retry:`.
    pub retry: Option<u64>,
    /// Only comments (a heartbeat).
    pub comment: bool,
}

impl SseEvent {
    /// The lifecycle offset of the id.
    pub fn offset(&self) -> Option<i64> {
        self.id.as_deref().and_then(|id| id.parse().ok())
    }

    /// Whether this is an event a page's listener would get (not retry, not heartbeat).
    pub fn is_event(&self) -> bool {
        self.event.is_some()
    }

    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).expect("json data")
    }
}

/// Takes one complete block off the front of `buf`.
pub fn take_block(buf: &mut Vec<u8>) -> Option<SseEvent> {
    let end = buf.windows(2).position(|w| w == b"\n\n")?;
    let block: Vec<u8> = buf.drain(..end + 2).collect();
    let text = String::from_utf8(block).expect("utf-8");
    let mut event = SseEvent {
        comment: true,
        ..Default::default()
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with(':') {
            continue;
        }
        event.comment = false;
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => event.id = Some(value.to_string()),
            "event" => event.event = Some(value.to_string()),
            "data" => {
                if !event.data.is_empty() {
                    event.data.push('\n');
                }
                event.data.push_str(value);
            }
            "retry" => event.retry = value.parse().ok(),
            other => panic!("unknown field {other}"),
        }
    }
    Some(event)
}

/// An SSE response read with reqwest.
pub struct Sse {
    /// Response status.
    pub status: reqwest::StatusCode,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    /// Bytes not yet parsed.
    buf: Vec<u8>,
}

impl Sse {
    /// Wraps a streaming response.
    pub fn from_response(response: reqwest::Response) -> Self {
        Self {
            status: response.status(),
            headers: response.headers().clone(),
            body: Box::pin(response.bytes_stream()),
            buf: Vec::new(),
        }
    }

    /// The next block; `Ok(None)` when the stream ended, `Err(())` on timeout.
    pub async fn next_block(&mut self, timeout: Duration) -> Result<Option<SseEvent>, ()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(event) = take_block(&mut self.buf) {
                return Ok(Some(event));
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Err(()),
                Ok(None) => return Ok(None),
                Ok(Some(Err(error))) => panic!("stream error: {error}"),
                Ok(Some(Ok(bytes))) => self.buf.extend_from_slice(&bytes),
            }
        }
    }

    /// The next named event (skipping `retry:` and heartbeats); `None` on timeout or end.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_block(left).await {
                Ok(Some(event)) if event.is_event() => return Some(event),
                Ok(Some(_)) => continue,
                Ok(None) | Err(()) => return None,
            }
        }
    }

    /// The whole body as an error JSON (for refused requests).
    pub async fn error_json(mut self) -> serde_json::Value {
        while let Some(Ok(bytes)) = self.body.next().await {
            self.buf.extend_from_slice(&bytes);
        }
        serde_json::from_slice(&self.buf).expect("json error body")
    }
}

/// An SSE stream read over a raw HTTP/1.1 socket whose receive buffer is tiny, so the server
/// feels a slow reader after a few kilobytes.
pub struct RawSse {
    /// The socket.
    reader: BufReader<tokio::net::TcpStream>,
    /// Decoded body bytes not yet parsed.
    buf: Vec<u8>,
}

impl RawSse {
    /// Sends `GET path` and reads the response head (asserting 200).
    pub async fn open(addr: SocketAddr, path: &str) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(2048).expect("rcvbuf");
        let mut stream = socket.connect(addr).await.expect("connect");
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: bridge\r\n\r\n").as_bytes())
            .await
            .expect("request");
        let mut reader = BufReader::with_capacity(1024, stream);
        let mut status = String::new();
        reader.read_line(&mut status).await.expect("status line");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut chunked = false;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.expect("header");
            if line == "\r\n" {
                break;
            }
            chunked |= line
                .to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked");
        }
        assert!(chunked, "an SSE body is chunked over HTTP/1.1");
        Self {
            reader,
            buf: Vec::new(),
        }
    }

    /// The next block; `None` at the end of the stream or on timeout.
    pub async fn next_block(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(event) = take_block(&mut self.buf) {
                return Some(event);
            }
            let mut size = String::new();
            tokio::time::timeout_at(deadline, self.reader.read_line(&mut size))
                .await
                .ok()?
                .ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            if size == 0 {
                return None;
            }
            let mut chunk = vec![0; size + 2];
            tokio::time::timeout_at(deadline, self.reader.read_exact(&mut chunk))
                .await
                .ok()?
                .ok()?;
            chunk.truncate(size);
            self.buf.extend_from_slice(&chunk);
        }
    }
}

/// A small deterministic generator (xorshift), seeded per run and printed for reproduction.
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock.
    pub fn from_clock() -> Self {
        let seed = (tributary_schemas::now_micros() as u64) | 1;
        println!("rng seed {seed}");
        Self(seed)
    }

    /// Next value below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A lifecycle and a progress topic of a test's own, so it can delete records (retention)
/// and know every record of the partition, without touching the shared topics.
pub struct Topics {
    /// The lifecycle copy.
    pub lifecycle: String,
    /// The progress copy.
    pub progress: String,
}

impl Topics {
    /// Creates both with `partitions` partitions.
    pub async fn create(config: &Config, partitions: i32) -> Self {
        let topics = Self {
            lifecycle: testing::unique("rb_lifecycle"),
            progress: testing::unique("rb_progress"),
        };
        for topic in [&topics.lifecycle, &topics.progress] {
            testing::create_topic(config, topic, partitions)
                .await
                .expect("create topic");
        }
        topics
    }

    /// Points a bridge at them.
    pub fn apply(&self, settings: &mut BridgeSettings) {
        settings.lifecycle_topic = self.lifecycle.clone();
        settings.progress_topic = self.progress.clone();
    }

    /// Publishes a lifecycle `event` to the copy, framed and keyed as the services do.
    pub async fn publish(&self, publisher: &EventPublisher, event: &Event) -> i64 {
        let payload = publisher.catalog().encode(event).expect("encode");
        let headers: [(&str, &[u8]); 2] = [
            (
                tributary_runtime::kafka::EVENT_TYPE_HEADER,
                event.event_type().as_bytes(),
            ),
            (
                tributary_runtime::kafka::TENANT_ID_HEADER,
                event.meta.tenant_id.as_bytes(),
            ),
        ];
        publisher
            .producer()
            .send(
                &self.lifecycle,
                event.partition_key().as_bytes(),
                &payload,
                &headers,
            )
            .await
            .expect("published")
            .offset
    }

    /// Deletes the lifecycle copy's records of `partition` below `before`, as retention would.
    pub async fn delete_lifecycle_before(&self, config: &Config, partition: i32, before: i64) {
        use rdkafka::admin::{AdminClient, AdminOptions};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> =
            tributary_runtime::kafka::base_client_config(&config.kafka, "tributary-tests")
                .create()
                .expect("admin client");
        let mut offsets = rdkafka::TopicPartitionList::new();
        offsets
            .add_partition_offset(&self.lifecycle, partition, rdkafka::Offset::Offset(before))
            .expect("partition list");
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let deleted = admin
            .delete_records(&offsets, &options)
            .await
            .expect("delete records");
        for element in deleted.elements() {
            assert!(element.error().is_ok(), "delete records: {element:?}");
        }
    }

    /// Deletes both topics (best effort: a leftover is harmless, its name is unique).
    pub async fn delete(self, config: &Config) {
        for topic in [&self.lifecycle, &self.progress] {
            if let Err(error) = testing::delete_topic(config, topic).await {
                println!("cannot delete test topic {topic}: {error}");
            }
        }
    }
}

/// The value of the counter `name` with the label `label` (`key="value"`) in the bridge's
/// `/metrics` (0 when absent).
pub async fn counter(bridge: &Bridge, name: &str, label: &str) -> f64 {
    let text = reqwest::get(bridge.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the stream is open (its first block is the `retry:` advice).
pub async fn opened(sse: &mut Sse) {
    assert_eq!(sse.status, 200);
    let first = sse
        .next_block(Duration::from_secs(20))
        .await
        .expect("first block in time")
        .expect("stream open");
    assert!(first.retry.is_some(), "streams start with retry: {first:?}");
}
