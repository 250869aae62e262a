//! One SSE connection: the catch-up from the log, then live frames from the tenant's rings,
//! with heartbeats, `reauth` before the token expires, the close at expiry, and `reset` plus
//! a new catch-up when the subscriber falls behind.
//!
//! The seam between log and live: the session subscribes to the rings first and then reads
//! the reader's position `p` in the tenant's partition. Every lifecycle frame below `p` is in
//! the log, every frame at or above `p` arrives on the ring; the catch-up reads
//! `(last delivered, p)` and live frames at or below the last delivered offset are skipped.
//! So the stream has neither a gap nor a duplicate.
//!
//! A catch-up whose start is inside the resume window ([`crate::window`]) is read from memory
//! instead, with the same argument: the session subscribes first, then snapshots the window
//! under its partition's lock; the snapshot holds the tenant's records below its `end`, the
//! receivers deliver those at or above it, and after the snapshot's records the last
//! delivered offset is `end - 1`, so live frames below `end` are skipped.
//!
//! A `Last-Event-ID` older than what the log retains ([`Start::history_expired`]) starts the
//! stream with `event: reset` (reason `history_expired`) at the reader's position and
//! continues live: the gap is announced, never skipped silently.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::AppState;
use crate::frame::{self, Frame, ResetReason};
use crate::hub::Subscription;
use crate::log::{CatchUp, CatchUpRange};
use crate::window::{Payload, Replayed};

/// The bridge's metric handles, resolved once: a registry lookup per delivered frame would
/// cost more than the delivery at 10,000 subscribers.
#[derive(Clone)]
pub struct Metrics {
    /// `tributary_bridge_connections`.
    connections: metrics::Gauge,
    /// `tributary_bridge_resets_total{reason="lagged"}`.
    resets: metrics::Counter,
    /// `tributary_bridge_resets_total{reason="history_expired"}`.
    resets_expired: metrics::Counter,
    /// `tributary_bridge_resumes_total{source="memory"}`: catch-ups served by the window.
    resumes_memory: metrics::Counter,
    /// `tributary_bridge_resumes_total{source="log"}`: catch-ups that read Kafka.
    resumes_log: metrics::Counter,
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
            resets: metrics::counter!("tributary_bridge_resets_total", "reason" => "lagged"),
            resets_expired: metrics::counter!(
                "tributary_bridge_resets_total",
                "reason" => "history_expired"
            ),
            resumes_memory: metrics::counter!("tributary_bridge_resumes_total", "source" => "memory"),
            resumes_log: metrics::counter!("tributary_bridge_resumes_total", "source" => "log"),
            progress_dropped: metrics::counter!("tributary_bridge_progress_dropped_total"),
            fanout_latency: metrics::histogram!("tributary_bridge_fanout_latency_seconds"),
        };
        // Increments by zero: other bridges in the same process (tests) share the recorder.
        this.connections.increment(0.0);
        this.resets.increment(0);
        this.resets_expired.increment(0);
        this.resumes_memory.increment(0);
        this.resumes_log.increment(0);
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
    /// `after` is older than what the log retains (below the partition's low watermark): the
    /// stream starts with `reset` (reason `history_expired`) and continues live.
    pub history_expired: bool,
    /// Token expiry, seconds since the epoch.
    pub expires_at: i64,
    /// Now, seconds since the epoch (the token was checked against it).
    pub now: i64,
}

/// What [`Session::advance`] has next.
pub enum Step {
    /// A block to write.
    Block(Bytes),
    /// Nothing until a live frame or the timer (only when not waiting).
    Idle,
    /// The stream ended.
    End,
}

/// A catch-up from the resume window: the snapshot's records not yet turned into blocks.
struct Replay {
    /// The tenant's records, in offset order.
    records: VecDeque<Replayed>,
    /// The snapshot's end: every offset below it is covered once the records are written.
    end: i64,
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
    /// A catch-up from the log not yet started: `[from, end)`.
    planned: Option<(i64, i64)>,
    /// A catch-up from the resume window not yet written.
    replay: Option<Replay>,
    /// The catch-up being read.
    catchup: Option<CatchUp>,
    /// When the timer is due: the earliest of heartbeat, reauth and expiry.
    wakeup: Instant,
    /// The session's one timer, armed for `wakeup`: one timer entry per connection, not
    /// re-registered per frame. Made on first wait (a lean stream that parks never waits
    /// here, so it costs nothing there).
    timer: Option<Pin<Box<Sleep>>>,
    /// Ends the stream on shutdown; kept across polls so the token's waiter list is not
    /// touched per frame.
    stopped: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
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
    /// Offset of the last frame taken from the lifecycle receiver (lower after a new
    /// receiver: a hint that lets the direct fan-out skip receivers with nothing new).
    lifecycle_cursor: i64,
    /// Number of the last frame taken from the progress receiver (the same kind of hint).
    progress_cursor: u64,
    /// Whether the stream has ended.
    done: bool,
    /// Keeps the connection gauge right however the session ends.
    _gauge: ConnectionGauge,
}

impl Session {
    /// Subscribes and plans the catch-up; the log is read lazily, once the response started.
    pub fn new(app: AppState, start: Start) -> Self {
        let partition =
            tributary_runtime::kafka::partition_for(start.tenant.as_bytes(), app.hub.partitions());
        // Subscribe before reading the position or the window (see the module docs).
        let subscription = app.hub.subscribe(&start.tenant);
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
        let mut session = Self {
            tenant: start.tenant,
            upload: start.upload,
            partition,
            subscription,
            last: -1,
            pending,
            planned: None,
            replay: None,
            catchup: None,
            wakeup: first_wakeup,
            timer: None,
            stopped: None,
            next_heartbeat,
            heartbeat_every,
            reauth_at,
            reauth_sent: false,
            expires_at,
            expires_at_secs: start.expires_at,
            progress_floor: 0,
            lifecycle_cursor: -1,
            progress_cursor: 0,
            done: false,
            _gauge: ConnectionGauge::open(&app.metrics.connections),
            app,
        };
        match start.after {
            Some(_) if start.history_expired => {
                // Announce the gap and jump to the live position: a catch-up from the low
                // watermark would replay what the page refetches anyway, possibly days of it.
                session.app.metrics.resets_expired.increment(1);
                tracing::info!(tenant = %session.tenant, partition, after = ?start.after,
                    "last-event-id older than the log retains; sending reset");
                session.last = session.app.hub.position(partition) - 1;
                let reset = frame::reset(session.last, ResetReason::HistoryExpired);
                session.pending.push_back(reset);
            }
            Some(after) => session.plan_catchup(after),
            None => session.last = session.app.hub.position(partition) - 1,
        }
        session
    }

    /// Plans the catch-up after `after` up to where the receivers (subscribed just before)
    /// take over: from the resume window when it holds everything after `after`, from the
    /// log otherwise.
    fn plan_catchup(&mut self, after: i64) {
        self.last = after;
        match self
            .app
            .hub
            .window()
            .snapshot(self.partition, &self.tenant, after)
        {
            Some(snapshot) => {
                self.app.metrics.resumes_memory.increment(1);
                self.replay = Some(Replay {
                    records: snapshot.records.into(),
                    end: snapshot.end,
                });
            }
            None => {
                self.app.metrics.resumes_log.increment(1);
                let live_from = self.app.hub.position(self.partition);
                self.planned = Some((after.saturating_add(1), live_from));
            }
        }
    }

    /// Turns up to `max` records of the window's snapshot into blocks; once all are, every
    /// offset below the snapshot's end counts as delivered (offsets not kept belong to other
    /// uploads or tenants).
    async fn replay_batch(&mut self, mut replay: Replay, max: usize) {
        let mut turned = 0;
        while turned < max {
            let Some(Replayed { offset, payload }) = replay.records.pop_front() else {
                break;
            };
            turned += 1;
            if offset <= self.last {
                continue;
            }
            let frame = match payload {
                Payload::Frame(frame) => frame,
                Payload::Record(bytes) => {
                    let topic = &self.app.settings.bridge.lifecycle_topic;
                    let Some(event) = crate::log::decode_payload(
                        &self.app.catalog,
                        &bytes,
                        topic,
                        self.partition,
                        offset,
                    )
                    .await
                    else {
                        continue;
                    };
                    // The header may have been missing: the envelope decides, as in the log.
                    if event.meta.tenant_id != self.tenant {
                        continue;
                    }
                    match Frame::lifecycle(offset, &event, None) {
                        Ok(frame) => Arc::new(frame),
                        Err(error) => {
                            tracing::warn!(%error, offset, "event not encodable as json");
                            continue;
                        }
                    }
                }
            };
            if frame.is_for(self.upload.as_deref()) {
                self.last = offset;
                self.pending.push_back(frame.bytes.clone());
            }
        }
        if replay.records.is_empty() {
            self.last = self.last.max(replay.end - 1);
        } else {
            self.replay = Some(replay);
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
            match self.advance(true).await {
                Step::Block(bytes) => return Some(bytes),
                Step::End => return None,
                Step::Idle => {}
            }
        }
    }

    /// The next block to write, the end, or (unless `wait`) [`Step::Idle`] when only live
    /// frames or the timer can bring the next one.
    pub async fn advance(&mut self, wait: bool) -> Step {
        loop {
            if let Some(bytes) = self.pending.pop_front() {
                return Step::Block(bytes);
            }
            if self.done || Instant::now() >= self.expires_at || self.app.stop.is_cancelled() {
                return Step::End;
            }
            if let Some(replay) = self.replay.take() {
                let batch = self.app.settings.bridge.catchup_batch;
                self.replay_batch(replay, batch).await;
                continue;
            }
            if let Some((from, end)) = self.planned.take() {
                let range = CatchUpRange {
                    topic: self.app.settings.bridge.lifecycle_topic.clone(),
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
                    Err(error) => {
                        self.fail(&error);
                        continue;
                    }
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
                    Err(error) => self.fail(&error),
                }
                continue;
            }
            let next = if wait {
                self.live().await
            } else {
                match self.live_now() {
                    Some(next) => next,
                    None => return Step::Idle,
                }
            };
            if let Some(bytes) = next {
                return Step::Block(bytes);
            }
        }
    }

    /// Ends the stream after a failed catch-up: the browser reconnects with its
    /// `Last-Event-ID` and resumes exactly, so closing loses nothing.
    fn fail(&mut self, error: &crate::BridgeError) {
        tracing::warn!(%error, tenant = %self.tenant, "catch-up failed; closing the stream");
        self.done = true;
    }

    /// What [`Session::live`] would do without waiting: `None` when nothing is due.
    fn live_now(&mut self) -> Option<Option<Bytes>> {
        if Instant::now() >= self.wakeup {
            return Some(self.on_timer());
        }
        if let Some(received) = self.try_lifecycle() {
            return Some(self.on_lifecycle(received));
        }
        if let Some(received) = self.try_progress() {
            return Some(self.on_progress(received));
        }
        None
    }

    /// When the session's timer (heartbeat, `reauth`, expiry) fires next.
    pub fn next_wakeup(&self) -> Instant {
        self.wakeup
    }

    /// Nothing to write, no catch-up to run, not ended: only live frames can come next.
    pub fn is_live(&self) -> bool {
        self.pending.is_empty()
            && self.planned.is_none()
            && self.replay.is_none()
            && self.catchup.is_none()
            && !self.done
    }

    /// [`Session::is_live`] and no frame waiting on either ring.
    pub fn is_idle(&self) -> bool {
        self.is_live()
            && self.subscription.lifecycle.is_empty()
            && self.subscription.progress.is_empty()
    }

    /// Offset of the last frame taken from the lifecycle ring (see the field).
    pub fn lifecycle_cursor(&self) -> i64 {
        self.lifecycle_cursor
    }

    /// Number of the last frame taken from the progress ring.
    pub fn progress_cursor(&self) -> u64 {
        self.progress_cursor
    }

    /// The tenant's direct fan-out (for [`crate::fanout::attach`]).
    pub fn fanout(&self) -> std::sync::Arc<crate::fanout::TenantFanout> {
        self.subscription.fanout()
    }

    /// The next lifecycle frame if one is there (`None` when the ring has nothing new).
    pub fn try_lifecycle(&mut self) -> Option<Result<Arc<Frame>, RecvError>> {
        match self.subscription.lifecycle.try_recv() {
            Ok(frame) => Some(Ok(frame)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Lagged(missed)) => Some(Err(RecvError::Lagged(missed))),
            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
        }
    }

    /// The next progress frame if one is there.
    pub fn try_progress(&mut self) -> Option<Result<Arc<Frame>, RecvError>> {
        match self.subscription.progress.try_recv() {
            Ok(frame) => Some(Ok(frame)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Lagged(missed)) => Some(Err(RecvError::Lagged(missed))),
            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
        }
    }

    /// Handles what the lifecycle ring gave: the block to write, if any (a lag plans a
    /// `reset` and a catch-up, left in `pending`/`planned`).
    pub fn on_lifecycle(&mut self, received: Result<Arc<Frame>, RecvError>) -> Option<Bytes> {
        match received {
            Ok(frame) => {
                if let Some(offset) = frame.offset {
                    self.lifecycle_cursor = offset;
                }
                self.deliver_lifecycle(&frame)
            }
            Err(RecvError::Lagged(_)) => Some(self.reset()),
            Err(RecvError::Closed) => {
                self.done = true;
                None
            }
        }
    }

    /// Handles what the progress ring gave: the block to write, if any (a lag queues each
    /// upload's latest progress in `pending`).
    pub fn on_progress(&mut self, received: Result<Arc<Frame>, RecvError>) -> Option<Bytes> {
        match received {
            Ok(frame) => {
                self.progress_cursor = frame.seq;
                if frame.seq > self.progress_floor && frame.is_for(self.upload.as_deref()) {
                    self.app.metrics.observe_latency(&frame);
                    Some(frame.bytes.clone())
                } else {
                    None
                }
            }
            Err(RecvError::Lagged(missed)) => {
                // Coalesce: skip what is left of the ring and send each upload's latest
                // progress instead (newer frames then follow from the ring's tail).
                self.app.metrics.progress_dropped.increment(missed);
                self.subscription.progress = self.subscription.progress.resubscribe();
                let snapshot = self
                    .app
                    .hub
                    .latest_progress(&self.tenant, self.upload.as_deref());
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
        }
    }

    /// Waits for the next live event; `None` when the caller should loop (a frame skipped, a
    /// catch-up planned, the stream ended).
    async fn live(&mut self) -> Option<Bytes> {
        let wakeup = self.wakeup;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wakeup)));
        if timer.deadline() != wakeup {
            timer.as_mut().reset(wakeup);
        }
        let app = &self.app;
        let stopped = self
            .stopped
            .get_or_insert_with(|| Box::pin(app.stop.clone().cancelled_owned()));
        tokio::select! {
            biased;
            () = stopped.as_mut() => {
                self.done = true;
                None
            }
            () = timer.as_mut() => self.on_timer(),
            received = self.subscription.lifecycle.recv() => self.on_lifecycle(received),
            received = self.subscription.progress.recv() => self.on_progress(received),
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
        self.wakeup = wakeup;
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
    /// take fresh receivers and plan a catch-up (window or log) up to where they start.
    fn reset(&mut self) -> Bytes {
        self.app.metrics.resets.increment(1);
        let fresh = self.app.hub.subscribe(&self.tenant);
        // The old receivers go only after the new ones exist, so the tenant's rings (and
        // their position) survive the swap.
        self.subscription = fresh;
        let reset = frame::reset(self.last, ResetReason::Lagged);
        self.plan_catchup(self.last);
        reset
    }
}
