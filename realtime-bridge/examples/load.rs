//! Load generator of the realtime bridge (issue #6): starts a bridge process on a free
//! loopback port, holds `--connections` idle SSE connections to it (spread over `--tenants`
//! tenants, default 1), reports the bridge's RSS per connection, then publishes `--events`
//! lifecycle events of the first tenant and reports the end-to-end fan-out latency (publish ->
//! frame read by each of that tenant's subscribers).
//!
//! Bounded in count (`--connections`, at most what the open-file limit allows) and in time
//! (`--deadline-secs`); loopback only. Needs Kafka (`./devstack up`).
//!
//! ```sh
//! cargo build -p tributary-realtime-bridge --bin realtime-bridge --example load
//! $CARGO_TARGET_DIR/debug/examples/load --connections=10000 --events=20
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tributary_runtime::events::EventPublisher;
use tributary_runtime::kafka::Producer;
use tributary_runtime::token::{Capability, Claims, TokenSigner};
use tributary_schemas::{Event, EventMeta, PartConfirmed, SchemaCatalog};

const SECRET: &str = "realtime-bridge-load-generator-secret-0123456789";

struct Args {
    /// Connections held.
    connections: usize,
    /// Events published for the latency run.
    events: usize,
    /// Tenants the connections are spread over (each has its own rings in the bridge).
    tenants: usize,
    /// Whole-run bound.
    deadline: Duration,
    /// Source addresses connections are spread over (each gives ~28k ephemeral ports).
    sources: Vec<Ipv4Addr>,
    /// The bridge binary.
    bridge: std::path::PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let exe = std::env::current_exe()?;
    // target/debug/examples/load -> target/debug/realtime-bridge
    let default_bridge = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("realtime-bridge"))
        .context("no target directory")?;
    let mut args = Args {
        connections: 10_000,
        events: 20,
        tenants: 1,
        deadline: Duration::from_secs(180),
        sources: vec![Ipv4Addr::LOCALHOST],
        bridge: default_bridge,
    };
    for arg in std::env::args().skip(1) {
        let (key, value) = arg.split_once('=').context("arguments are --key=value")?;
        match key {
            "--connections" => args.connections = value.parse()?,
            "--events" => args.events = value.parse()?,
            "--tenants" => args.tenants = value.parse::<usize>()?.max(1),
            "--deadline-secs" => args.deadline = Duration::from_secs(value.parse()?),
            "--sources" => {
                args.sources = value.split(',').map(str::parse).collect::<Result<_, _>>()?;
                if args.sources.iter().any(|s| !s.is_loopback()) {
                    bail!("sources must be loopback addresses");
                }
            }
            "--bridge" => args.bridge = value.into(),
            other => bail!("unknown argument {other}"),
        }
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

/// Opens one SSE connection and reads until the response head and the `retry:` block.
async fn connect(
    addr: SocketAddr,
    source: Ipv4Addr,
    request: Arc<Vec<u8>>,
) -> anyhow::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let mut stream = socket.connect(addr).await?;
    stream.write_all(&request).await?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(6).any(|w| w == b"retry:") {
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

/// Reads `id:` lines until `count` were seen or `until`; returns (offset, when read) and the
/// stream, so no connection closes while others still measure.
async fn read_ids(
    mut stream: TcpStream,
    count: usize,
    until: tokio::time::Instant,
) -> (Vec<(i64, Instant)>, TcpStream) {
    let mut seen = Vec::with_capacity(count);
    let mut carry = Vec::new();
    let mut buf = vec![0u8; 4096];
    while seen.len() < count {
        let Ok(Ok(n)) = tokio::time::timeout_at(until, stream.read(&mut buf)).await else {
            break;
        };
        if n == 0 {
            break;
        }
        let now = Instant::now();
        carry.extend_from_slice(&buf[..n]);
        while let Some(end) = carry.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = carry.drain(..=end).collect();
            if let Some(id) = line.strip_prefix(b"id: ")
                && let Ok(offset) = std::str::from_utf8(id).unwrap_or("").trim().parse()
            {
                seen.push((offset, now));
            }
        }
    }
    (seen, stream)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
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

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut bridge = tokio::process::Command::new(&args.bridge)
        .env("TRIBUTARY_HTTP__LISTEN", addr.to_string())
        .env("TRIBUTARY_API__TOKEN_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", args.bridge.display()))?;
    let pid = bridge.id().context("bridge pid")?;
    while TcpStream::connect(addr).await.is_err() {
        if tokio::time::Instant::now() > until {
            bail!("the bridge did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(pid)?;

    let tenant_of = |i: usize| format!("load_{}_{}", std::process::id(), i % args.tenants);
    let tenant = tenant_of(0);
    let now = tributary_schemas::now_micros() / 1_000_000;
    let signer = TokenSigner::new(SECRET.as_bytes());
    let requests: Vec<Arc<Vec<u8>>> = (0..args.tenants)
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
    let connect_started = Instant::now();
    let sources = args.sources.clone();
    // `buffered` keeps the order: connection i belongs to tenant i % tenants.
    let streams: Vec<TcpStream> = futures::stream::iter(0..args.connections)
        .map(|i| {
            connect(
                addr,
                sources[i % sources.len()],
                requests[i % args.tenants].clone(),
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
    let mut readers = Vec::new();
    for (i, stream) in streams.into_iter().enumerate() {
        if i % args.tenants == 0 {
            readers.push(tokio::spawn(read_ids(stream, args.events, until)));
        } else {
            idle.push(stream);
        }
    }
    let subscribers = readers.len();
    let config = tributary_runtime::testing::stack_config();
    let publisher = EventPublisher::new(
        Producer::new(&config.kafka, "bridge-load")?,
        Arc::new(SchemaCatalog::embedded()?),
    );
    let upload = uuid::Uuid::now_v7().to_string();
    // Warm-up: the producer's first send connects and fetches metadata (hundreds of ms), which
    // is not fan-out; a tenant without subscribers takes it.
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
    let mut sent = std::collections::HashMap::new();
    for n in 0..args.events {
        let event = Event::new(
            EventMeta::new(&tenant, Some(upload.clone()), "load", &upload, None),
            PartConfirmed {
                part_number: i32::try_from(n + 1)?,
                etag: format!("\"{n}\""),
                size: 5_242_880,
            },
        );
        let at = Instant::now();
        let delivery = publisher.publish(&event).await?;
        sent.insert(delivery.offset, at);
        // One event at a time: each measures a full fan-out, not a queue.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut latencies = Vec::new();
    let mut per_event: std::collections::BTreeMap<i64, Vec<Duration>> = Default::default();
    let mut delivered = 0usize;
    let mut finished = Vec::new();
    for reader in readers {
        let (seen, stream) = reader.await?;
        finished.push(stream);
        for (offset, at) in seen {
            if let Some(sent_at) = sent.get(&offset) {
                delivered += 1;
                let latency = at.saturating_duration_since(*sent_at);
                latencies.push(latency);
                per_event.entry(offset).or_default().push(latency);
            }
        }
    }
    let per_event: Vec<String> = per_event
        .into_values()
        .map(|mut l| {
            l.sort_unstable();
            format!(
                "{:.0}/{:.0}",
                percentile(&l, 0.5).as_secs_f64() * 1000.0,
                percentile(&l, 1.0).as_secs_f64() * 1000.0
            )
        })
        .collect();
    println!("per event p50/max ms: {}", per_event.join(" "));
    let rss_after = rss_kib(pid)?;
    // The bridge's own view: Kafka append time -> frame handed to the connection's writer.
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .text()
        .await?;
    let bridge_view: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("tributary_bridge_fanout_latency_seconds"))
        .collect();
    latencies.sort_unstable();
    let expected = subscribers * args.events;
    drop(idle);
    drop(finished);
    println!(
        "connections: {} over {} tenants (opened in {:.1} s)\nbridge rss: {} KiB before, {} KiB with idle connections -> {} B per idle connection; {} KiB after the fan-out\nfan-out of {} events to {} subscribers: {delivered}/{expected} delivered; latency (publish -> read) p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\nrun took {:.1} s",
        args.connections,
        args.tenants,
        connect_time.as_secs_f64(),
        rss_before,
        rss_idle,
        per_connection,
        rss_after,
        args.events,
        subscribers,
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64(),
    );
    println!("bridge histogram:\n{}", bridge_view.join("\n"));
    bridge.kill().await?;
    if delivered < expected {
        bail!("{} frames were not delivered in time", expected - delivered);
    }
    Ok(())
}
