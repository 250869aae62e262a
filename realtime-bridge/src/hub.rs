//! The per-tenant fan-out: one bounded broadcast ring of lifecycle frames and one of progress
//! frames per tenant with subscribers, plus how far the Kafka reader has got in each
//! lifecycle partition (the seam between catch-up from the log and live frames).
//!
//! Tenant isolation is structural: a subscriber holds receivers of its own tenant's rings
//! only, so no filter can forget to exclude another tenant's frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{Semaphore, broadcast};

use crate::fanout::{TenantFanout, Writers};
use crate::frame::Frame;
use crate::window::ResumeWindow;

/// A tenant's rings.
struct Channels {
    /// Lifecycle frames: never lost; a lagging receiver resumes from the log.
    lifecycle: broadcast::Sender<Arc<Frame>>,
    /// Progress frames: a lagging receiver loses the oldest.
    progress: broadcast::Sender<Arc<Frame>>,
    /// The latest progress frame of each upload in flight: what a lagging receiver gets
    /// instead of the frames it lost (progress is coalesced per upload, latest wins).
    latest_progress: Mutex<LatestProgress>,
    /// Bounds the tenant's concurrent catch-ups, so one tenant cannot hold every permit of
    /// the process-wide bound.
    catchups: Arc<Semaphore>,
    /// Parked lean HTTP/1.1 streams the writer threads deliver to directly.
    fanout: Arc<TenantFanout>,
}

/// The latest progress of a tenant's uploads, and the last sequence number given out.
#[derive(Default)]
struct LatestProgress {
    /// Sequence number of the tenant's last progress frame.
    seq: u64,
    /// Latest frame per upload.
    frames: HashMap<String, Arc<Frame>>,
}

/// Each upload's latest progress frame at one moment, and the sequence number of that moment:
/// ring frames at or below it are older than (or equal to) what the snapshot holds.
pub struct ProgressSnapshot {
    /// The frames.
    pub frames: Vec<Arc<Frame>>,
    /// Sequence number of the tenant's last progress frame when the snapshot was taken.
    pub seq: u64,
}

/// Uploads whose latest progress a tenant's rings remember at most; beyond it (a tenant with
/// that many uploads in flight at once) new uploads are simply not coalesced.
const MAX_LATEST_PROGRESS: usize = 1024;

/// Every tenant's rings and the reader's positions.
pub struct Hub {
    /// Rings of tenants that have at least one subscriber.
    tenants: RwLock<HashMap<String, Channels>>,
    /// Per lifecycle partition: the next offset the reader will publish. Everything below it
    /// has been handed to the rings (or had no subscriber when it was read).
    positions: Vec<AtomicI64>,
    /// Recent lifecycle records of every partition, for resumes without a Kafka read.
    window: ResumeWindow,
    /// Capacity of a lifecycle ring.
    lifecycle_capacity: usize,
    /// Capacity of a progress ring.
    progress_capacity: usize,
    /// Concurrent catch-ups per tenant.
    catchups_per_tenant: usize,
    /// The direct fan-out's writer threads.
    writers: Writers,
}

/// A subscriber's receivers; dropping it removes the tenant's rings when it was the last.
pub struct Subscription {
    /// Lifecycle frames of the tenant.
    pub lifecycle: broadcast::Receiver<Arc<Frame>>,
    /// Progress frames of the tenant.
    pub progress: broadcast::Receiver<Arc<Frame>>,
    /// The hub, for clean-up.
    hub: Arc<Hub>,
    /// The tenant subscribed to.
    tenant: String,
    /// The tenant's catch-up bound.
    catchups: Arc<Semaphore>,
    /// The tenant's direct fan-out.
    fanout: Arc<TenantFanout>,
}

impl Subscription {
    /// The tenant's catch-up bound.
    pub fn catchup_permits(&self) -> Arc<Semaphore> {
        self.catchups.clone()
    }

    /// The tenant's direct fan-out.
    pub fn fanout(&self) -> Arc<TenantFanout> {
        self.fanout.clone()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Ok(mut tenants) = self.hub.tenants.write() else {
            return;
        };
        // Subscribing happens under the read lock, so under the write lock the counts are
        // exact; our own receivers are still alive here, hence 1.
        if let Some(channels) = tenants.get(&self.tenant)
            && channels.lifecycle.receiver_count() <= 1
            && channels.progress.receiver_count() <= 1
        {
            tenants.remove(&self.tenant);
        }
    }
}

impl Hub {
    /// A hub for a lifecycle topic of `partitions` partitions whose reader starts at
    /// `starts` (one offset per partition), with `fanout_writers` writer threads and a resume
    /// window of `window_bytes`.
    pub fn new(
        starts: &[i64],
        lifecycle_capacity: usize,
        progress_capacity: usize,
        catchups_per_tenant: usize,
        fanout_writers: usize,
        window_bytes: usize,
    ) -> Self {
        Self {
            tenants: RwLock::new(HashMap::new()),
            positions: starts.iter().map(|&o| AtomicI64::new(o)).collect(),
            window: ResumeWindow::new(starts, window_bytes),
            lifecycle_capacity,
            progress_capacity,
            catchups_per_tenant,
            writers: Writers::start(fanout_writers),
        }
    }

    /// Number of lifecycle partitions.
    pub fn partitions(&self) -> i32 {
        i32::try_from(self.positions.len()).unwrap_or(i32::MAX)
    }

    /// Subscribes to `tenant`'s rings. Subscribe *before* reading [`Hub::position`]: every
    /// frame below the position read afterwards is in the log, every frame at or above it
    /// arrives on the receivers.
    pub fn subscribe(self: &Arc<Self>, tenant: &str) -> Subscription {
        let existing = self.tenants.read().ok().and_then(|tenants| {
            tenants.get(tenant).map(|c| {
                (
                    c.lifecycle.subscribe(),
                    c.progress.subscribe(),
                    c.catchups.clone(),
                    c.fanout.clone(),
                )
            })
        });
        let (lifecycle, progress, catchups, fanout) = match existing {
            Some(receivers) => receivers,
            None => {
                let mut tenants = match self.tenants.write() {
                    Ok(tenants) => tenants,
                    Err(poisoned) => poisoned.into_inner(),
                };
                let channels = tenants
                    .entry(tenant.to_string())
                    .or_insert_with(|| Channels {
                        lifecycle: broadcast::channel(self.lifecycle_capacity).0,
                        progress: broadcast::channel(self.progress_capacity).0,
                        latest_progress: Mutex::new(LatestProgress::default()),
                        catchups: Arc::new(Semaphore::new(self.catchups_per_tenant)),
                        fanout: Arc::new(TenantFanout::new(self.writers.count())),
                    });
                (
                    channels.lifecycle.subscribe(),
                    channels.progress.subscribe(),
                    channels.catchups.clone(),
                    channels.fanout.clone(),
                )
            }
        };
        Subscription {
            lifecycle,
            progress,
            hub: self.clone(),
            tenant: tenant.to_string(),
            catchups,
            fanout,
        }
    }

    /// Hands every parked stream back to its task (on shutdown, so each sees the stop).
    pub fn kick_all(&self) {
        let fanouts: Vec<Arc<TenantFanout>> = self
            .tenants
            .read()
            .map(|t| t.values().map(|c| c.fanout.clone()).collect())
            .unwrap_or_default();
        for fanout in fanouts {
            fanout.kick_all();
        }
    }

    /// Whether `tenant` has a subscriber (the reader decodes nothing for tenants without).
    pub fn has_subscribers(&self, tenant: &str) -> bool {
        self.tenants
            .read()
            .map(|t| t.contains_key(tenant))
            .unwrap_or(true)
    }

    /// Number of tenants with subscribers.
    pub fn tenants(&self) -> usize {
        self.tenants.read().map(|t| t.len()).unwrap_or(0)
    }

    /// The recent lifecycle records of every partition.
    pub fn window(&self) -> &ResumeWindow {
        &self.window
    }

    /// The next offset the reader will publish in lifecycle `partition`.
    pub fn position(&self, partition: i32) -> i64 {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.positions.get(p))
            .map_or(0, |p| p.load(Ordering::SeqCst))
    }

    /// Records that the reader got past `offset` of `partition`. Called *before* the frame
    /// at `offset` is published, so a subscriber that reads the new position either gets the
    /// frame live or finds it in the log (a duplicate it skips), never neither.
    pub fn advance(&self, partition: i32, offset: i64) {
        if let Some(position) = usize::try_from(partition)
            .ok()
            .and_then(|p| self.positions.get(p))
        {
            position.fetch_max(offset + 1, Ordering::SeqCst);
        }
    }

    /// Hands a lifecycle frame to `tenant`'s subscribers; `ends_upload` (a final state) also
    /// forgets the upload's latest progress.
    pub fn publish_lifecycle(&self, tenant: &str, frame: Arc<Frame>, ends_upload: bool) {
        if let Ok(tenants) = self.tenants.read()
            && let Some(channels) = tenants.get(tenant)
        {
            if ends_upload
                && let Some(upload) = &frame.upload_id
                && let Ok(mut latest) = channels.latest_progress.lock()
            {
                latest.frames.remove(upload);
            }
            let offset = frame.offset;
            // An error only means every receiver left meanwhile.
            let _ = channels.lifecycle.send(frame);
            if let Some(offset) = offset {
                channels.fanout.published_lifecycle(offset);
            }
            self.writers.signal(&channels.fanout);
        }
    }

    /// Numbers a progress frame, remembers it as its upload's latest and hands it to
    /// `tenant`'s subscribers (under one lock, so ring order and numbers agree).
    pub fn publish_progress(&self, tenant: &str, mut frame: Frame) {
        let Ok(tenants) = self.tenants.read() else {
            return;
        };
        let Some(channels) = tenants.get(tenant) else {
            return;
        };
        let mut latest = match channels.latest_progress.lock() {
            Ok(latest) => latest,
            Err(poisoned) => poisoned.into_inner(),
        };
        latest.seq += 1;
        frame.seq = latest.seq;
        let frame = Arc::new(frame);
        if let Some(upload) = &frame.upload_id
            && (latest.frames.len() < MAX_LATEST_PROGRESS || latest.frames.contains_key(upload))
        {
            latest.frames.insert(upload.clone(), frame.clone());
        }
        let seq = frame.seq;
        let _ = channels.progress.send(frame);
        drop(latest);
        channels.fanout.published_progress(seq);
        self.writers.signal(&channels.fanout);
    }

    /// The latest progress frame of each of `tenant`'s uploads (only `upload`'s if given).
    pub fn latest_progress(&self, tenant: &str, upload: Option<&str>) -> ProgressSnapshot {
        let empty = ProgressSnapshot {
            frames: Vec::new(),
            seq: 0,
        };
        let Ok(tenants) = self.tenants.read() else {
            return empty;
        };
        let Some(latest) = tenants
            .get(tenant)
            .and_then(|c| c.latest_progress.lock().ok())
        else {
            return empty;
        };
        let frames = match upload {
            Some(upload) => latest.frames.get(upload).cloned().into_iter().collect(),
            None => latest.frames.values().cloned().collect(),
        };
        ProgressSnapshot {
            frames,
            seq: latest.seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(offset: i64) -> Arc<Frame> {
        Arc::new(Frame {
            upload_id: None,
            offset: Some(offset),
            seq: 0,
            appended_ms: None,
            bytes: Bytes::new(),
        })
    }

    #[tokio::test]
    async fn frames_reach_only_their_tenant_and_rings_go_away() {
        let hub = Arc::new(Hub::new(&[0, 0], 4, 4, 1, 1, 0));
        let mut a = hub.subscribe("a");
        let mut b = hub.subscribe("b");
        hub.publish_lifecycle("a", frame(1), false);
        assert_eq!(a.lifecycle.recv().await.expect("frame").offset, Some(1));
        assert!(b.lifecycle.try_recv().is_err());
        drop(a);
        assert!(!hub.has_subscribers("a"));
        assert!(hub.has_subscribers("b"));
        drop(b);
        assert_eq!(hub.tenants(), 0);
    }

    #[tokio::test]
    async fn a_second_subscriber_keeps_the_rings() {
        let hub = Arc::new(Hub::new(&[0], 4, 4, 1, 1, 0));
        let first = hub.subscribe("a");
        let _second = hub.subscribe("a");
        drop(first);
        assert!(hub.has_subscribers("a"));
    }

    #[test]
    fn the_latest_progress_of_each_upload_is_kept_until_it_ends() {
        let hub = Arc::new(Hub::new(&[0], 4, 4, 1, 1, 0));
        let _subscriber = hub.subscribe("a");
        let progress = |upload: &str, n: u8| Frame {
            upload_id: Some(upload.to_string()),
            offset: None,
            seq: 0,
            appended_ms: None,
            bytes: Bytes::from(vec![n]),
        };
        hub.publish_progress("a", progress("u1", 1));
        hub.publish_progress("a", progress("u1", 2));
        hub.publish_progress("a", progress("u2", 3));
        let latest = hub.latest_progress("a", Some("u1"));
        assert_eq!(latest.frames.len(), 1);
        assert_eq!(&latest.frames[0].bytes[..], &[2]);
        assert_eq!((latest.frames[0].seq, latest.seq), (2, 3));
        assert_eq!(hub.latest_progress("a", None).frames.len(), 2);
        let ready = Arc::new(Frame {
            upload_id: Some("u1".into()),
            offset: Some(1),
            seq: 0,
            appended_ms: None,
            bytes: Bytes::new(),
        });
        hub.publish_lifecycle("a", ready, true);
        assert!(hub.latest_progress("a", Some("u1")).frames.is_empty());
        assert!(hub.latest_progress("b", None).frames.is_empty());
    }

    #[test]
    fn positions_only_move_forward() {
        let hub = Hub::new(&[10, 20], 1, 1, 1, 1, 0);
        hub.advance(0, 14);
        hub.advance(0, 12);
        assert_eq!(hub.position(0), 15);
        assert_eq!(hub.position(1), 20);
        assert_eq!(hub.partitions(), 2);
    }
}
