//! One SSE connection: the catch-up from the log, then live frames from the tenant's rings,
//! with heartbeats, `reauth` before the token expires, the close at expiry, and `reset` plus
//! a new catch-up when the subscriber falls behind.
//!
//! The seam between log and live: the session subscribes to the rings first and then reads
//! the reader's position `p` in the tenant's partition. Every lifecycle frame below `p` is in
//! the log, every frame at or above `p` arrives on the ring; the catch-up reads
//! `(last delivered, p)` and live frames at or below the last delivered offset are skipped.
//! So the stream has neither a gap nor a duplicate.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, Interval};

use crate::AppState;
use crate::frame::{self, Frame};
use crate::hub::Subscription;
use crate::log::{CatchUp, CatchUpRange};

/// Counts open streams in `tributary_bridge_connections`.
struct ConnectionGauge;

impl ConnectionGauge {
    fn open() -> Self {
        metrics::gauge!("tributary_bridge_connections").increment(1.0);
        Self
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!("tributary_bridge_connections").decrement(1.0);
    }
}

/// What a new stream starts with.
pub struct Start {
    /// The tenant of the token.
    pub tenant: String,
    /// The upload subscribed to, or every upload of the tenant.
    pub upload: Option<String>,
    /// Last lifecycle offset the client already has (`Last-Event-ID`), or where the upload's
    /// history begins minus one; `None` to start live.
    pub after: Option<i64>,
    /// Token expiry, seconds since the epoch.
    pub expires_at: i64,
    /// Now, seconds since the epoch (the token was checked against it).
    pub now: i64,
}

/// The state of one stream.
pub struct Session {
    /// Shared bridge state.
    app: AppState,
    /// Tenant of the token: the only rings this session ever holds.
    tenant: String,
    /// Upload filter.
    upload: Option<String>,
    /// The tenant's lifecycle partition.
    partition: i32,
    /// The tenant's rings.
    subscription: Subscription,
    /// Every lifecycle offset at or below it was delivered (or does not concern this
    /// subscriber); resumes continue after it.
    last: i64,
    /// Frames ready to be written.
    pending: VecDeque<Bytes>,
    /// A catch-up not yet started: `[from, end)`.
    planned: Option<(i64, i64)>,
    /// The catch-up being read.
    catchup: Option<CatchUp>,
    /// When to send `reauth`.
    reauth_at: Instant,
    /// Whether `reauth` was sent.
    reauth_sent: bool,
    /// When the token expires and the stream closes.
    expires_at: Instant,
    /// Token expiry, seconds since the epoch (for the `reauth` payload).
    expires_at_secs: i64,
    /// Heartbeat timer.
    heartbeat: Interval,
    /// Whether the stream has ended.
    done: bool,
    /// Keeps the connection gauge right however the session ends.
    _gauge: ConnectionGauge,
}

impl Session {
    /// Subscribes and plans the catch-up; the log is read lazily, once the response started.
    pub fn new(app: AppState, start: Start) -> Self {
        let partition =
            crate::partition::partition_for(start.tenant.as_bytes(), app.hub.partitions());
        // Subscribe before reading the position (see the module docs).
        let subscription = app.hub.subscribe(&start.tenant);
        let live_from = app.hub.position(partition);
        let (last, planned) = match start.after {
            Some(after) => (after, Some((after + 1, live_from))),
            None => (live_from - 1, None),
        };
        let settings = &app.settings.bridge;
        let remaining =
            Duration::from_secs(u64::try_from(start.expires_at - start.now).unwrap_or(0));
        let now = Instant::now();
        let expires_at = now + remaining;
        let reauth_at = expires_at
            .checked_sub(Duration::from_secs(settings.reauth_lead_secs))
            .unwrap_or(now)
            .max(now);
        let heartbeat_every = Duration::from_secs(settings.heartbeat_secs);
        let mut heartbeat = tokio::time::interval_at(now + heartbeat_every, heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let jitter = match settings.retry_jitter_ms {
            0 => 0,
            jitter => getrandom::u64().unwrap_or(0) % (jitter + 1),
        };
        let pending = VecDeque::from([frame::retry(settings.retry_base_ms + jitter)]);
        Self {
            tenant: start.tenant,
            upload: start.upload,
            partition,
            subscription,
            last,
            pending,
            planned,
            catchup: None,
            reauth_at,
            reauth_sent: false,
            expires_at,
            expires_at_secs: start.expires_at,
            heartbeat,
            done: false,
            _gauge: ConnectionGauge::open(),
            app,
        }
    }

    /// The body of the response.
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
        futures::stream::unfold(self, |mut session| async move {
            let next = session.next().await?;
            Some((Ok(next), session))
        })
    }

    /// The next block to write; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(bytes) = self.pending.pop_front() {
                return Some(bytes);
            }
            if self.done || self.app.stop.is_cancelled() || Instant::now() >= self.expires_at {
                return None;
            }
            if let Some((from, end)) = self.planned.take() {
                let range = CatchUpRange {
                    partition: self.partition,
                    from,
                    end,
                    tenant: self.tenant.clone(),
                    upload: self.upload.clone(),
                };
                let timeout = Duration::from_secs(self.app.settings.bridge.catchup_timeout_secs);
                match CatchUp::start(&self.app.kafka, self.app.catchups.clone(), range, timeout)
                    .await
                {
                    Ok(catchup) => self.catchup = catchup,
                    Err(error) => return self.fail(&error),
                }
                continue;
            }
            if let Some(catchup) = &mut self.catchup {
                let batch = self.app.settings.bridge.catchup_batch;
                match catchup.next_batch(&self.app.catalog, batch).await {
                    Ok(Some((frames, read_to))) => {
                        for frame in frames {
                            if let Some(offset) = frame.offset.filter(|&o| o > self.last) {
                                self.last = offset;
                                self.pending.push_back(frame.bytes.clone());
                            }
                        }
                        // Offsets read but not kept belong to other uploads or tenants.
                        self.last = self.last.max(read_to);
                    }
                    Ok(None) => self.catchup = None,
                    Err(error) => return self.fail(&error),
                }
                continue;
            }
            if let Some(bytes) = self.live().await {
                return Some(bytes);
            }
        }
    }

    /// Ends the stream after a failed catch-up: the browser reconnects with its
    /// `Last-Event-ID` and resumes exactly, so closing loses nothing.
    fn fail(&mut self, error: &crate::BridgeError) -> Option<Bytes> {
        tracing::warn!(%error, tenant = %self.tenant, "catch-up failed; closing the stream");
        self.done = true;
        None
    }

    /// Waits for the next live event; `None` when the caller should loop (a frame skipped, a
    /// catch-up planned, the stream ended).
    async fn live(&mut self) -> Option<Bytes> {
        let reauth_sent = self.reauth_sent;
        tokio::select! {
            biased;
            () = self.app.stop.cancelled() => {
                self.done = true;
                None
            }
            () = tokio::time::sleep_until(self.expires_at) => {
                self.done = true;
                None
            }
            () = tokio::time::sleep_until(self.reauth_at), if !reauth_sent => {
                self.reauth_sent = true;
                Some(frame::reauth(self.expires_at_secs))
            }
            received = self.subscription.lifecycle.recv() => match received {
                Ok(frame) => self.deliver_lifecycle(&frame),
                Err(RecvError::Lagged(_)) => Some(self.reset()),
                Err(RecvError::Closed) => {
                    self.done = true;
                    None
                }
            },
            received = self.subscription.progress.recv() => match received {
                Ok(frame) if frame.is_for(self.upload.as_deref()) => {
                    observe_latency(&frame);
                    Some(frame.bytes.clone())
                }
                Ok(_) => None,
                Err(RecvError::Lagged(missed)) => {
                    metrics::counter!("tributary_bridge_progress_dropped_total").increment(missed);
                    None
                }
                Err(RecvError::Closed) => {
                    self.done = true;
                    None
                }
            },
            _ = self.heartbeat.tick() => Some(frame::heartbeat()),
        }
    }

    fn deliver_lifecycle(&mut self, frame: &Frame) -> Option<Bytes> {
        let offset = frame.offset?;
        // At or below `last`: already sent by the catch-up (the seam) or before a reset.
        if offset <= self.last || !frame.is_for(self.upload.as_deref()) {
            return None;
        }
        self.last = offset;
        observe_latency(frame);
        Some(frame.bytes.clone())
    }

    /// The subscriber fell further behind than its tenant's ring holds: tell it where it is,
    /// take fresh receivers and plan a catch-up from the log up to where they start.
    fn reset(&mut self) -> Bytes {
        metrics::counter!("tributary_bridge_resets_total").increment(1);
        let fresh = self.app.hub.subscribe(&self.tenant);
        // The old receivers go only after the new ones exist, so the tenant's rings (and
        // their position) survive the swap.
        self.subscription = fresh;
        let live_from = self.app.hub.position(self.partition);
        self.planned = Some((self.last + 1, live_from));
        frame::reset(self.last)
    }
}

fn observe_latency(frame: &Frame) {
    if let Some(appended_ms) = frame.appended_ms {
        let now_ms = tributary_schemas::now_micros() / 1000;
        let seconds = (now_ms - appended_ms).max(0) as f64 / 1000.0;
        metrics::histogram!("tributary_bridge_fanout_latency_seconds").record(seconds);
    }
}
