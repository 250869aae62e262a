//! Holds idle SSE connections to a running bridge from one loopback source address, for the
//! multi-process run (`examples/load-100k.sh`): several of these, each with its own
//! `127.0.0.x`, against several bridge processes sharing one port.
//!
//! ```sh
//! hold --addr=127.0.0.1:18181 --connections=16000 --source=127.0.0.2 --hold-secs=20 --secret=...
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tributary_runtime::token::{Capability, Claims, TokenSigner};

/// Opens one SSE connection and reads until the `retry:` block.
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
    let mut buf = [0u8; 512];
    while !seen.windows(6).any(|w| w == b"retry:") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!("closed: {}", String::from_utf8_lossy(&seen));
        }
        seen.extend_from_slice(&buf[..n]);
    }
    Ok(stream)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut addr: Option<SocketAddr> = None;
    let mut connections = 1000usize;
    let mut source = Ipv4Addr::LOCALHOST;
    let mut hold = Duration::from_secs(20);
    let mut secret = String::new();
    for arg in std::env::args().skip(1) {
        let (key, value) = arg.split_once('=').context("arguments are --key=value")?;
        match key {
            "--addr" => addr = Some(value.parse()?),
            "--connections" => connections = value.parse()?,
            "--source" => source = value.parse()?,
            "--hold-secs" => hold = Duration::from_secs(value.parse()?),
            "--secret" => secret = value.to_string(),
            other => bail!("unknown argument {other}"),
        }
    }
    let addr = addr.context("--addr is required")?;
    if !addr.ip().is_loopback() || !source.is_loopback() {
        bail!("loopback only");
    }
    rlimit::increase_nofile_limit(u64::MAX)?;
    let now = tributary_schemas::now_micros() / 1_000_000;
    let token = TokenSigner::new(secret.as_bytes()).sign(&Claims {
        tid: format!("hold_{}", std::process::id()),
        cap: vec![Capability::Subscribe],
        exp: now + 3600,
        iat: now,
    });
    let request = Arc::new(
        format!("GET /v1/events?token={token} HTTP/1.1\r\nhost: bridge\r\n\r\n").into_bytes(),
    );
    let started = Instant::now();
    let results: Vec<anyhow::Result<TcpStream>> = futures::stream::iter(0..connections)
        .map(|_| {
            let request = request.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(60), connect(addr, source, request))
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("connect timed out")))
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let mut held = Vec::new();
    let mut failed = 0usize;
    let mut first_error = None;
    for result in results {
        match result {
            Ok(stream) => held.push(stream),
            Err(error) => {
                failed += 1;
                first_error.get_or_insert(error);
            }
        }
    }
    println!(
        "opened {} of {connections} from {source} in {:.1} s ({failed} failed{})",
        held.len(),
        started.elapsed().as_secs_f64(),
        first_error.map(|e| format!(": {e}")).unwrap_or_default()
    );
    tokio::time::sleep(hold).await;
    drop(held);
    Ok(())
}
