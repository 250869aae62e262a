//! Load generator of the realtime bridge (issue #6), and of Centrifugo as the measured peer.
//!
//! Starts the server process on a free loopback port (the bridge, or with
//! `--target=centrifugo` a Centrifugo binary with a generated config), holds `--connections`
//! idle SSE connections to it (the bridge: spread over `--tenants` tenants, default 1;
//! Centrifugo: its unidirectional SSE transport, one channel), reports the server's RSS per
//! connection, then publishes `--events` events one at a time and reports the fan-out
//! latency: publish call -> frame read by each subscriber (the first tenant's, or the channel's).
//!
//! - bridge: the event is produced to Kafka (the clock starts before the produce call);
//!   the bridge reads it from the log, encodes it once and writes it to every socket.
//! - Centrifugo: the event is `POST /api/publish`ed over HTTP (the clock starts before the
//!   request); Centrifugo does not read Kafka, so no log is in its path.
//!
//! The subscribers are read by one thread on one epoll set (`mio`): each socket is read once
//! per readiness, timestamped right after the read, so the generator costs one read per
//! frame and never competes with the server for more than one core.
//!
//! Bounded in count (`--connections`, at most what the open-file limit allows) and in time
//! (`--deadline-secs`); loopback only. The bridge mode needs Kafka (`./devstack up`).
//!
//! ```sh
//! cargo build --release -p tributary-realtime-bridge --bin realtime-bridge --example load
//! $CARGO_TARGET_DIR/release/examples/load --connections=10000 --events=20
//! $CARGO_TARGET_DIR/release/examples/load --target=centrifugo --connections=10000 --events=20
//! ```
//!
//! The last line of output is `RESULT key=value ...` for scripts (`bench/bridge-vs-centrifugo.sh`).

use std::collections::HashMap;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tributary_runtime::events::EventPublisher;
use tributary_runtime::kafka::Producer;
use tributary_runtime::token::{Capability, Claims, TokenSigner};
use tributary_schemas::{Event, EventMeta, PartConfirmed, SchemaCatalog};

const SECRET: &str = "realtime-bridge-load-generator-secret-0123456789";
/// Centrifugo's HTTP API key in the generated config.
const API_KEY: &str = "load-generator-api-key";
/// The Centrifugo channel every subscriber is subscribed to (by its connection token).
const CHANNEL: &str = "bench";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Bridge,
    Centrifugo,
}

struct Args {
    /// What is measured.
    target: Target,
    /// Connections held.
    connections: usize,
    /// Events published for the latency run.
    events: usize,
    /// Tenants the connections are spread over (bridge only).
    tenants: usize,
    /// Whole-run bound.
    deadline: Duration,
    /// Source addresses connections are spread over (each gives ~28k ephemeral ports).
    sources: Vec<Ipv4Addr>,
    /// The bridge binary.
    bridge: std::path::PathBuf,
    /// The Centrifugo binary.
    centrifugo: std::path::PathBuf,
    /// Pause between events.
    gap: Duration,
}

fn args() -> anyhow::Result<Args> {
    let exe = std::env::current_exe()?;
    // target/release/examples/load -> target/release/realtime-bridge
    let default_bridge = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("realtime-bridge"))
        .context("no target directory")?;
    let home = std::env::var("HOME").unwrap_or_default();
    let mut args = Args {
        target: Target::Bridge,
        connections: 10_000,
        events: 20,
        tenants: 1,
        deadline: Duration::from_secs(180),
        sources: vec![Ipv4Addr::LOCALHOST],
        bridge: default_bridge,
        centrifugo: format!("{home}/.cache/tributary/centrifugo-v6.9.1/bin/centrifugo").into(),
        gap: Duration::from_millis(250),
    };
    for arg in std::env::args().skip(1) {
        let (key, value) = arg.split_once('=').context("arguments are --key=value")?;
        match key {
            "--target" => {
                args.target = match value {
                    "bridge" => Target::Bridge,
                    "centrifugo" => Target::Centrifugo,
                    other => bail!("unknown target {other} (bridge or centrifugo)"),
                }
            }
            "--connections" => args.connections = value.parse()?,
            "--events" => args.events = value.parse()?,
            "--tenants" => args.tenants = value.parse::<usize>()?.max(1),
            "--deadline-secs" => args.deadline = Duration::from_secs(value.parse()?),
            "--gap-ms" => args.gap = Duration::from_millis(value.parse()?),
            "--sources" => {
                args.sources = value.split(',').map(str::parse).collect::<Result<_, _>>()?;
                if args.sources.iter().any(|s| !s.is_loopback()) {
                    bail!("sources must be loopback addresses");
                }
            }
            "--bridge" => args.bridge = value.into(),
            "--centrifugo-bin" => args.centrifugo = value.into(),
            other => bail!("unknown argument {other}"),
        }
    }
    if args.target == Target::Centrifugo {
        args.tenants = 1;
    }
    Ok(args)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// CPU time (user + system) a process has used, in clock ticks (1/100 s here).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    field(11) + field(12)
}

/// An HS256 JWT with `claims`.
fn jwt(secret: &[u8], claims: &serde_json::Value) -> anyhow::Result<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).context("hmac key")?;
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{signature}"))
}

/// Percent-encodes a query parameter value.
fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Opens one SSE connection and reads until the response head and the stream's first
/// block (`retry:` from the bridge, the `connect` push from Centrifugo).
async fn connect(
    addr: SocketAddr,
    source: Ipv4Addr,
    request: Arc<Vec<u8>>,
    opened: &'static [u8],
) -> anyhow::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let mut stream = socket.connect(addr).await?;
    stream.write_all(&request).await?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(opened.len()).any(|w| w == opened) {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!("closed: {}", String::from_utf8_lossy(&seen));
        }
        seen.extend_from_slice(&buf[..n]);
    }
    if !seen.starts_with(b"HTTP/1.1 200") {
        bail!("refused: {}", String::from_utf8_lossy(&seen));
    }
    Ok(stream)
}

/// A frame's number in what a subscriber read: the bridge's `id: <offset>` line, or the
/// `"seq":<n>` of the data Centrifugo delivers.
fn frame_id(line: &[u8], target: Target) -> Option<i64> {
    let digits = match target {
        Target::Bridge => line.strip_prefix(b"id: ")?,
        Target::Centrifugo => {
            let at = line.windows(6).position(|w| w == b"\"seq\":")?;
            &line[at + 6..]
        }
    };
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// What the reader thread saw: per connection, (frame id, when read).
type Seen = Vec<Vec<(i64, Instant)>>;

/// Reads every subscriber on one thread and one epoll set until each has `count` frames or
/// `until`; the sockets stay open until all are measured.
fn read_all(
    streams: Vec<std::net::TcpStream>,
    count: usize,
    target: Target,
    until: Instant,
) -> anyhow::Result<Seen> {
    let mut poll = mio::Poll::new()?;
    let mut sockets = Vec::with_capacity(streams.len());
    for (i, stream) in streams.into_iter().enumerate() {
        stream.set_nonblocking(true)?;
        let mut socket = mio::net::TcpStream::from_std(stream);
        poll.registry()
            .register(&mut socket, mio::Token(i), mio::Interest::READABLE)?;
        sockets.push(socket);
    }
    let mut seen: Seen = vec![Vec::with_capacity(count); sockets.len()];
    let mut carry: Vec<Vec<u8>> = vec![Vec::new(); sockets.len()];
    let mut complete = 0usize;
    let mut events = mio::Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    while complete < sockets.len() {
        let now = Instant::now();
        if now >= until {
            break;
        }
        poll.poll(
            &mut events,
            Some((until - now).min(Duration::from_millis(200))),
        )?;
        for event in &events {
            let i = event.token().0;
            loop {
                let n = match sockets[i].read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let read_at = Instant::now();
                let pending = &mut carry[i];
                pending.extend_from_slice(&buf[..n]);
                let mut consumed = 0;
                while let Some(end) = pending[consumed..].iter().position(|&b| b == b'\n') {
                    let line = &pending[consumed..consumed + end];
                    if let Some(id) = frame_id(line, target) {
                        seen[i].push((id, read_at));
                        if seen[i].len() == count {
                            complete += 1;
                        }
                    }
                    consumed += end + 1;
                }
                pending.drain(..consumed);
                // A short read emptied the receive queue: the next frame is a new edge.
                if n < buf.len() {
                    break;
                }
            }
        }
    }
    drop(sockets);
    Ok(seen)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The server under test: its process, address and how subscribers open a stream.
struct Server {
    child: tokio::process::Child,
    addr: SocketAddr,
    pid: u32,
    /// Request of subscriber `i`.
    requests: Vec<Arc<Vec<u8>>>,
    /// What marks a stream as open (read before the connection counts).
    opened: &'static [u8],
    /// Files to remove at the end.
    config: Option<std::path::PathBuf>,
}

async fn start_server(args: &Args, until: tokio::time::Instant) -> anyhow::Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let now = tributary_schemas::now_micros() / 1_000_000;
    let (child, requests, opened, config) = match args.target {
        Target::Bridge => {
            let child = tokio::process::Command::new(&args.bridge)
                .env("TRIBUTARY_HTTP__LISTEN", addr.to_string())
                .env("TRIBUTARY_API__TOKEN_SECRET", SECRET)
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", args.bridge.display()))?;
            let signer = TokenSigner::new(SECRET.as_bytes());
            let requests = (0..args.tenants)
                .map(|t| {
                    let token = signer.sign(&Claims {
                        tid: tenant_of(t),
                        cap: vec![Capability::Subscribe],
                        exp: now + 3600,
                        iat: now,
                    });
                    Arc::new(
                        format!("GET /v1/events?token={token} HTTP/1.1\r\nhost: bridge\r\n\r\n")
                            .into_bytes(),
                    )
                })
                .collect();
            (child, requests, &b"retry:"[..], None)
        }
        Target::Centrifugo => {
            let config = std::env::temp_dir().join(format!(
                "centrifugo-load-{}-{port}.json",
                std::process::id()
            ));
            let settings = serde_json::json!({
                "http_server": {"address": "127.0.0.1", "port": port},
                "log": {"level": "error"},
                "client": {"token": {"hmac_secret_key": SECRET}, "allowed_origins": ["*"]},
                "http_api": {"key": API_KEY},
                "uni_sse": {"enabled": true},
            });
            std::fs::write(&config, serde_json::to_vec_pretty(&settings)?)?;
            let child = tokio::process::Command::new(&args.centrifugo)
                .arg("--config")
                .arg(&config)
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", args.centrifugo.display()))?;
            // A connection token subscribing to the channel (server-side subscription): the
            // uni-directional transport cannot subscribe by itself.
            let token = jwt(
                SECRET.as_bytes(),
                &serde_json::json!({"sub": "load", "exp": now + 3600, "channels": [CHANNEL]}),
            )?;
            let connect = encode_query(&serde_json::json!({"token": token}).to_string());
            let request = format!(
                "GET /connection/uni_sse?cf_connect={connect} HTTP/1.1\r\nhost: centrifugo\r\n\r\n"
            );
            (
                child,
                vec![Arc::new(request.into_bytes())],
                &b"\"connect\""[..],
                Some(config),
            )
        }
    };
    let pid = child.id().context("server pid")?;
    while TcpStream::connect(addr).await.is_err() {
        if tokio::time::Instant::now() > until {
            bail!("the server did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Server {
        child,
        addr,
        pid,
        requests,
        opened,
        config,
    })
}

fn tenant_of(i: usize) -> String {
    format!("load_{}_{i}", std::process::id())
}

/// Publishes events one at a time; returns frame id -> when its publish call started.
enum Publisher {
    Kafka {
        publisher: EventPublisher,
        tenant: String,
        upload: String,
    },
    Centrifugo {
        client: reqwest::Client,
        url: String,
    },
}

impl Publisher {
    async fn new(args: &Args, server: &Server) -> anyhow::Result<Self> {
        let upload = uuid::Uuid::now_v7().to_string();
        let this = match args.target {
            Target::Bridge => {
                let config = tributary_runtime::testing::stack_config();
                let publisher = EventPublisher::new(
                    Producer::new(&config.kafka, "bridge-load")?,
                    Arc::new(SchemaCatalog::embedded()?),
                );
                // Warm-up: the producer's first send connects and fetches metadata
                // (hundreds of ms), which is not fan-out; a tenant without subscribers
                // takes it.
                publisher
                    .publish(&Event::new(
                        EventMeta::new("load_warmup", Some(upload.clone()), "load", &upload, None),
                        PartConfirmed {
                            part_number: 1,
                            etag: "\"warmup\"".into(),
                            size: 1,
                        },
                    ))
                    .await?;
                Self::Kafka {
                    publisher,
                    tenant: tenant_of(0),
                    upload,
                }
            }
            Target::Centrifugo => {
                let this = Self::Centrifugo {
                    client: reqwest::Client::new(),
                    url: format!("http://{}/api/publish", server.addr),
                };
                // Warm-up: the HTTP connection; a channel without subscribers takes it.
                this.publish_centrifugo("warmup", 0).await?;
                this
            }
        };
        Ok(this)
    }

    async fn publish_centrifugo(&self, channel: &str, seq: usize) -> anyhow::Result<()> {
        let Self::Centrifugo { client, url } = self else {
            bail!("not centrifugo");
        };
        // About the size of the bridge's PartConfirmed frame, so both write as many bytes.
        let body = serde_json::json!({
            "channel": channel,
            "data": {"seq": seq, "type": "PartConfirmed", "part_number": seq + 1,
                     "etag": format!("\"{seq}\""), "size": 5_242_880,
                     "pad": "p".repeat(300)},
        });
        let response = client
            .post(url)
            .header("X-API-Key", API_KEY)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() || text.contains("\"error\"") {
            bail!("publish failed: {status} {text}");
        }
        Ok(())
    }

    /// Publishes event `n`; returns its frame id.
    async fn publish(&self, n: usize) -> anyhow::Result<i64> {
        match self {
            Self::Kafka {
                publisher,
                tenant,
                upload,
            } => {
                let event = Event::new(
                    EventMeta::new(tenant, Some(upload.clone()), "load", upload, None),
                    PartConfirmed {
                        part_number: i32::try_from(n + 1)?,
                        etag: format!("\"{n}\""),
                        size: 5_242_880,
                    },
                );
                Ok(publisher.publish(&event).await?.offset)
            }
            Self::Centrifugo { .. } => {
                self.publish_centrifugo(CHANNEL, n).await?;
                Ok(i64::try_from(n)?)
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let started = tokio::time::Instant::now();
    let until = started + args.deadline;
    let limit = rlimit::increase_nofile_limit(u64::MAX)?;
    if args.connections as u64 + 100 > limit {
        bail!(
            "{} connections need more descriptors than this process's limit ({limit})",
            args.connections
        );
    }
    let mut server = start_server(&args, until).await?;
    let result = run(&args, &server, until).await;
    let _ = server.child.kill().await;
    if let Some(config) = &server.config {
        let _ = std::fs::remove_file(config);
    }
    result
}

async fn run(args: &Args, server: &Server, until: tokio::time::Instant) -> anyhow::Result<()> {
    let started = Instant::now();
    let pid = server.pid;
    let rss_before = rss_kib(pid)?;
    let connect_started = Instant::now();
    let sources = args.sources.clone();
    // `buffered` keeps the order: connection i belongs to tenant i % tenants.
    let streams: Vec<TcpStream> = futures::stream::iter(0..args.connections)
        .map(|i| {
            connect(
                server.addr,
                sources[i % sources.len()],
                server.requests[i % server.requests.len()].clone(),
                server.opened,
            )
        })
        .buffered(256)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let connect_time = connect_started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = rss_kib(pid)?;
    let per_connection = (rss_idle.saturating_sub(rss_before)) * 1024 / args.connections as u64;

    // The first tenant's subscribers measure; the others stay connected, idle.
    let mut idle = Vec::new();
    let mut measured = Vec::new();
    for (i, stream) in streams.into_iter().enumerate() {
        if i % args.tenants == 0 {
            measured.push(stream.into_std()?);
        } else {
            idle.push(stream);
        }
    }
    let subscribers = measured.len();
    let publisher = Publisher::new(args, server).await?;
    let (events, target) = (args.events, args.target);
    let read_until = until.into_std();
    let reader = std::thread::spawn(move || read_all(measured, events, target, read_until));
    let cpu_before = cpu_ticks(pid);
    let mut sent = HashMap::new();
    for n in 0..args.events {
        let at = Instant::now();
        let id = publisher.publish(n).await?;
        sent.insert(id, at);
        // One event at a time: each measures a full fan-out, not a queue.
        tokio::time::sleep(args.gap).await;
    }
    let seen = tokio::task::spawn_blocking(move || reader.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
    let cpu_ticks_used = cpu_ticks(pid).saturating_sub(cpu_before);
    let mut latencies = Vec::new();
    let mut per_event: std::collections::BTreeMap<i64, Vec<Duration>> = Default::default();
    let mut delivered = 0usize;
    for connection in seen {
        for (id, at) in connection {
            if let Some(sent_at) = sent.get(&id) {
                delivered += 1;
                let latency = at.saturating_duration_since(*sent_at);
                latencies.push(latency);
                per_event.entry(id).or_default().push(latency);
            }
        }
    }
    let per_event: Vec<String> = per_event
        .into_values()
        .map(|mut l| {
            l.sort_unstable();
            format!(
                "{:.0}/{:.0}",
                ms(percentile(&l, 0.5)),
                ms(percentile(&l, 1.0))
            )
        })
        .collect();
    println!("per event p50/max ms: {}", per_event.join(" "));
    let rss_after = rss_kib(pid)?;
    latencies.sort_unstable();
    let expected = subscribers * args.events;
    let name = match args.target {
        Target::Bridge => "bridge",
        Target::Centrifugo => "centrifugo",
    };
    println!(
        "{name}: connections: {} over {} tenants (opened in {:.1} s)\nrss: {} KiB before, {} KiB with idle connections -> {} B per idle connection; {} KiB after the fan-out\nfan-out of {} events to {} subscribers: {delivered}/{expected} delivered; latency (publish call -> read) p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; server cpu {} ms for the fan-out phase\nrun took {:.1} s",
        args.connections,
        args.tenants,
        connect_time.as_secs_f64(),
        rss_before,
        rss_idle,
        per_connection,
        rss_after,
        args.events,
        subscribers,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        cpu_ticks_used * 10,
        started.elapsed().as_secs_f64(),
    );
    if args.target == Target::Bridge {
        // The bridge's own view: Kafka append time -> frame handed to the socket.
        let metrics = reqwest::get(format!("http://{}/metrics", server.addr))
            .await?
            .text()
            .await?;
        let bridge_view: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("tributary_bridge_fanout_latency_seconds"))
            .collect();
        println!("bridge histogram:\n{}", bridge_view.join("\n"));
    }
    drop(idle);
    println!(
        "RESULT target={name} connections={} subscribers={subscribers} events={} delivered={delivered} expected={expected} rss_per_conn_b={per_connection} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} server_cpu_ms={}",
        args.connections,
        args.events,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        cpu_ticks_used * 10,
    );
    if delivered < expected {
        bail!("{} frames were not delivered in time", expected - delivered);
    }
    Ok(())
}
