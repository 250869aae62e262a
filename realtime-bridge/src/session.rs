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
use std::pin::Pin;
use tokio::sync::broadcast::error::RecvError;

use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::AppState;
use crate::frame::{self, Frame};
use crate::hub::Subscription;
use crate::log::{CatchUp, CatchUpRange};

/// The bridge's metric handles, resolved once: a registry lookup per delivered frame would
/// cost more than the delivery at 10,000 subscribers.
#[derive(Clone)]
pub struct Metrics {
    /// `tributary_bridge_connections`.
    connections: metrics::Gauge,
    /// `tributary_bridge_resets_total`.
    resets: metrics::Counter,
    /// `tributary_bridge_progress_dropped_total`.
    progress_dropped: metrics::Counter,
    /// `tributary_bridge_fanout_latency_seconds`.
    fanout_latency: metrics::Histogram,
}

impl Metrics {
    /// Registers the series (they show in `/metrics` from start-up, as zeros).
    pub fn register() -> Self {
        let this = Self {
            connections: metrics::gauge!("tributary_bridge_connections"),
            resets: metrics::counter!("tributary_bridge_resets_total"),
            progress_dropped: metrics::counter!("tributary_bridge_progress_dropped_total"),
            fanout_latency: metrics::histogram!("tributary_bridge_fanout_latency_seconds"),
        };
        // Increments by zero: other bridges in the same process (tests) share the recorder.
        this.connections.increment(0.0);
        this.resets.increment(0);
        this.progress_dropped.increment(0);
        metrics::counter!("tributary_bridge_undecodable_total").increment(0);
        this
    }

    fn observe_latency(&self, frame: &Frame) {
        if let Some(appended_ms) = frame.appended_ms {
            let now_ms = tributary_schemas::now_micros() / 1000;
            let seconds = (now_ms - appended_ms).max(0) as f64 / 1000.0;
            self.fanout_latency.record(seconds);
        }
    }
}

/// Counts the stream in `tributary_bridge_connections` while it lives.
struct ConnectionGauge(metrics::Gauge);

impl ConnectionGauge {
    fn open(gauge: &metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.decrement(1.0);
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
    /// The session's one timer, armed for the earliest of heartbeat, reauth and expiry: one
    /// timer entry per connection, not re-registered per frame.
    timer: Pin<Box<Sleep>>,
    /// Ends the stream on shutdown; kept across polls so the token's waiter list is not
    /// touched per frame.
    stopped: Pin<Box<WaitForCancellationFutureOwned>>,
    /// When the next heartbeat is due.
    next_heartbeat: Instant,
    /// Heartbeat period.
    heartbeat_every: Duration,
    /// When to send `reauth`.
    reauth_at: Instant,
    /// Whether `reauth` was sent.
    reauth_sent: bool,
    /// When the token expires and the stream closes.
    expires_at: Instant,
    /// Token expiry, seconds since the epoch (for the `reauth` payload).
    expires_at_secs: i64,
    /// Progress frames numbered at or below it were superseded by a coalesced snapshot.
    progress_floor: u64,
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
        let next_heartbeat = now + heartbeat_every;
        let first_wakeup = next_heartbeat.min(reauth_at).min(expires_at);
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
            timer: Box::pin(tokio::time::sleep_until(first_wakeup)),
            stopped: Box::pin(app.stop.clone().cancelled_owned()),
            next_heartbeat,
            heartbeat_every,
            reauth_at,
            reauth_sent: false,
            expires_at,
            expires_at_secs: start.expires_at,
            progress_floor: 0,
            done: false,
            _gauge: ConnectionGauge::open(&app.metrics.connections),
            app,
        }
    }

    /// The body of the response.
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
        futures::stream::unfold(self, |mut session| async move {
            let next = session.next_frame().await?;
            Some((Ok(next), session))
        })
    }

    /// The next block to write; `None` ends the stream.
    pub async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(bytes) = self.pending.pop_front() {
                return Some(bytes);
            }
            if self.done || Instant::now() >= self.expires_at {
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
                match CatchUp::start(
                    &self.app.kafka,
                    self.subscription.catchup_permits(),
                    self.app.catchups.clone(),
                    range,
                    timeout,
                )
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
        tokio::select! {
            biased;
            () = self.stopped.as_mut() => {
                self.done = true;
                None
            }
            () = self.timer.as_mut() => self.on_timer(),
            received = self.subscription.lifecycle.recv() => match received {
                Ok(frame) => self.deliver_lifecycle(&frame),
                Err(RecvError::Lagged(_)) => Some(self.reset()),
                Err(RecvError::Closed) => {
                    self.done = true;
                    None
                }
            },
            received = self.subscription.progress.recv() => match received {
                Ok(frame) if frame.seq > self.progress_floor && frame.is_for(self.upload.as_deref()) => {
                    self.app.metrics.observe_latency(&frame);
                    Some(frame.bytes.clone())
                }
                Ok(_) => None,
                Err(RecvError::Lagged(missed)) => {
                    // Coalesce: skip what is left of the ring and send each upload's latest
                    // progress instead (newer frames then follow from the ring's tail).
                    self.app.metrics.progress_dropped.increment(missed);
                    self.subscription.progress = self.subscription.progress.resubscribe();
                    let snapshot = self.app.hub.latest_progress(&self.tenant, self.upload.as_deref());
                    // Frames the fresh receiver holds up to the snapshot are older than it.
                    self.progress_floor = snapshot.seq;
                    for frame in snapshot.frames {
                        self.pending.push_back(frame.bytes.clone());
                    }
                    None
                }
                Err(RecvError::Closed) => {
                    self.done = true;
                    None
                }
            },
        }
    }

    /// The timer fired: close at expiry, else send what is due and re-arm.
    fn on_timer(&mut self) -> Option<Bytes> {
        let now = Instant::now();
        if now >= self.expires_at {
            self.done = true;
            return None;
        }
        let due = if !self.reauth_sent && now >= self.reauth_at {
            self.reauth_sent = true;
            Some(frame::reauth(self.expires_at_secs))
        } else if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.heartbeat_every;
            Some(frame::heartbeat())
        } else {
            None
        };
        let mut wakeup = self.next_heartbeat.min(self.expires_at);
        if !self.reauth_sent {
            wakeup = wakeup.min(self.reauth_at);
        }
        self.timer.as_mut().reset(wakeup);
        due
    }

    fn deliver_lifecycle(&mut self, frame: &Frame) -> Option<Bytes> {
        let offset = frame.offset?;
        // At or below `last`: already sent by the catch-up (the seam) or before a reset.
        if offset <= self.last || !frame.is_for(self.upload.as_deref()) {
            return None;
        }
        self.last = offset;
        self.app.metrics.observe_latency(frame);
        Some(frame.bytes.clone())
    }

    /// The subscriber fell further behind than its tenant's ring holds: tell it where it is,
    /// take fresh receivers and plan a catch-up from the log up to where they start.
    fn reset(&mut self) -> Bytes {
        self.app.metrics.resets.increment(1);
        let fresh = self.app.hub.subscribe(&self.tenant);
        // The old receivers go only after the new ones exist, so the tenant's rings (and
        // their position) survive the swap.
        self.subscription = fresh;
        let live_from = self.app.hub.position(self.partition);
        self.planned = Some((self.last + 1, live_from));
        frame::reset(self.last)
    }
}
