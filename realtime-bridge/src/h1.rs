//! A lean HTTP/1.1 path for the SSE routes, next to axum.
//!
//! hyper gives every HTTP/1.1 connection an 8 KiB read buffer and an 8 KiB write buffer for
//! its whole life; for a stream that writes a few hundred bytes a minute that is most of the
//! connection's memory. So the accept loop peeks at each new connection's request head: a
//! `GET` of a stream route over HTTP/1.1 is consumed and served here (the head is parsed from
//! a buffer that is freed before streaming, frames are written as chunks straight from the
//! shared `Bytes`); anything else (health, metrics, preflights, HTTP/2, malformed requests)
//! is handed, unread, to axum through [`HandOff`], which serves it as usual.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::error::HttpError;
use crate::fanout::{self, Slot};
use crate::routes;
use crate::session::Step;

/// Largest request head the lean path reads; bigger ones go to axum (which answers 431).
const MAX_HEAD: usize = 8 * 1024;
/// Longest wait for a complete request head before the connection goes to axum (whose own
/// timeouts then apply).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Headers parsed at most.
const MAX_HEADERS: usize = 32;

/// The connections axum serves: everything the lean path did not take.
pub struct HandOff {
    /// Connections handed over by the accept loop.
    connections: mpsc::Receiver<(TcpStream, SocketAddr)>,
    /// The listening address.
    local: SocketAddr,
}

impl axum::serve::Listener for HandOff {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop stopped (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Accepts connections until `stop`: stream requests are served here, the rest go to the
/// returned [`HandOff`].
pub fn split(
    listener: TcpListener,
    app: AppState,
    stop: CancellationToken,
) -> std::io::Result<HandOff> {
    let local = listener.local_addr()?;
    let (handoff, connections) = mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    // Frames are small and must leave at once.
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(route(stream, peer, app.clone(), handoff.clone()));
                }
                Err(error) => {
                    // Out of descriptors, typically: wait for connections to close instead of
                    // spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    Ok(HandOff { connections, local })
}

/// A stream request's head, parsed.
struct Head {
    /// Length of the head in bytes (consumed before streaming).
    len: usize,
    /// Request target.
    uri: Uri,
    /// Upload of the route, if it is the one-upload route.
    upload: Option<String>,
    /// Request headers.
    headers: HeaderMap,
}

async fn route(
    stream: TcpStream,
    peer: SocketAddr,
    app: AppState,
    handoff: mpsc::Sender<(TcpStream, SocketAddr)>,
) {
    let Some(head) = peek_stream_request(&stream).await else {
        // Not ours: axum reads the request from the start.
        let _ = handoff.send((stream, peer)).await;
        return;
    };
    serve_stream(stream, head, app).await;
}

/// Peeks at the request head without consuming it; `Some` only for a complete
/// `GET /v1/events` or `GET /v1/uploads/{id}/events` over HTTP/1.1.
async fn peek_stream_request(stream: &TcpStream) -> Option<Head> {
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    let mut buf = vec![0u8; MAX_HEAD];
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..n]) {
            Ok(httparse::Status::Complete(len)) => {
                if request.method != Some("GET") || request.version != Some(1) {
                    return None;
                }
                let uri: Uri = request.path?.parse().ok()?;
                let upload = routes::stream_route(uri.path())?;
                let mut map = HeaderMap::with_capacity(request.headers.len());
                for header in request.headers.iter() {
                    let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
                    let value = HeaderValue::from_bytes(header.value).ok()?;
                    map.append(name, value);
                }
                return Some(Head {
                    len,
                    uri,
                    upload,
                    headers: map,
                });
            }
            // The rest of the head is still on its way (rare: heads fit one segment).
            Ok(httparse::Status::Partial) if n < buf.len() => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Too big, malformed or too many headers: axum answers it properly.
            _ => return None,
        }
    }
}

/// Serves one stream: the head is consumed, then the session's frames are written as chunks
/// until it ends; then the connection is closed.
async fn serve_stream(mut stream: TcpStream, head: Head, app: AppState) {
    let Head {
        len,
        uri,
        upload,
        headers,
    } = head;
    // Consume exactly the head that was peeked (it is in the socket buffer already).
    let mut consumed = vec![0u8; len];
    if stream.read_exact(&mut consumed).await.is_err() {
        return;
    }
    drop(consumed);
    let cors = headers
        .get("origin")
        .and_then(|o| o.to_str().ok())
        .and_then(|o| routes::allowed_origin(&app.settings.cors_origins, o))
        .map(|origin| format!("access-control-allow-origin: {origin}\r\nvary: origin\r\n"))
        .unwrap_or_default();
    let started = routes::start(app, &headers, Query::try_from_uri(&uri), upload).await;
    drop(headers);
    let session = match started {
        Ok(session) => session,
        Err(error) => {
            let _ = write_error(&mut stream, &error, &cors).await;
            return;
        }
    };
    let mut response = String::from("HTTP/1.1 200 OK\r\n");
    for (name, value) in routes::STREAM_HEADERS {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&cors);
    response.push_str("transfer-encoding: chunked\r\n\r\n");
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    drop(response);
    // From here the socket is shared with the fan-out writers (see `crate::fanout`).
    let slot = Arc::new(Slot::new(stream));
    let attachment = fanout::attach(&session.fanout(), &slot);
    let mut session = Box::new(session);
    let ended = loop {
        match session.advance(false).await {
            Step::Block(block) => {
                // A failed write is a gone client; the session's drop cleans up.
                if write_chunk(&slot.socket, &block).await.is_err() {
                    break false;
                }
            }
            Step::End => break true,
            Step::Idle => {
                // Only live frames can come next: park the session, so the fan-out writers
                // deliver them, and wait for the timer, a hand-back or shutdown.
                let wakeup = session.next_wakeup();
                if let Err(back) = slot.park(session) {
                    session = back;
                    continue;
                }
                // Shutdown kicks every parked stream (`Hub::kick_all`).
                tokio::select! {
                    () = slot.kicked() => {}
                    () = tokio::time::sleep_until(wakeup) => {}
                }
                let Some(back) = slot.unpark() else {
                    break false;
                };
                session = back.session;
                if back.dead {
                    break false;
                }
                if let Some(rest) = back.remainder
                    && write_all(&slot.socket, &rest).await.is_err()
                {
                    break false;
                }
            }
        }
    };
    drop(attachment);
    let Ok(slot) = Arc::try_unwrap(slot) else {
        return;
    };
    let mut stream = slot.socket;
    if ended {
        // The stream ended (expiry, shutdown): finish the body so the client sees a clean end.
        let _ = stream.write_all(b"0\r\n\r\n").await;
        let _ = stream.shutdown().await;
    }
}

/// Writes `block` as one HTTP chunk.
async fn write_chunk(socket: &TcpStream, block: &[u8]) -> std::io::Result<()> {
    let mut size = [0u8; 18];
    let head = fanout::chunk_head(block.len(), &mut size);
    let mut chunk = Vec::with_capacity(head.len() + block.len() + 2);
    chunk.extend_from_slice(head);
    chunk.extend_from_slice(block);
    chunk.extend_from_slice(b"\r\n");
    write_all(socket, &chunk).await
}

/// Writes all of `bytes` to a socket shared by reference.
async fn write_all(socket: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        socket.writable().await?;
        match socket.try_write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Writes an error response (`{"error": {"code", "message"}}`) and ends the connection.
async fn write_error(stream: &mut TcpStream, error: &HttpError, cors: &str) -> std::io::Result<()> {
    let body =
        serde_json::json!({"error": {"code": error.code, "message": error.message}}).to_string();
    let retry_after = if error.status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        "retry-after: 2\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{retry_after}{cors}connection: close\r\n\r\n{body}",
        error.status.as_u16(),
        error.status.canonical_reason().unwrap_or(""),
        body.len(),
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
