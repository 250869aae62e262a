//! Direct fan-out: live frames written to idle subscribers' sockets by a few writer threads,
//! without waking each subscriber's task.
//!
//! A lean HTTP/1.1 stream ([`crate::h1`]) that has nothing to write and nothing to wait for
//! but the next live frame *parks* its session in a [`Slot`] registered with its tenant's
//! rings (one shard of them). When the reader publishes a frame, it signals the tenant's
//! shards; each shard's writer thread then takes, for every parked session of the shard, the
//! new frames from the session's own ring receivers (so the receivers stay the one cursor of
//! what was taken, whoever took it) and writes each frame the session wants straight to its
//! socket as one HTTP chunk (one `writev`). One thread pass per event and shard replaces one
//! task wake-up, poll and re-registration per subscriber.
//!
//! Whatever is not the common case goes back to the session's task (the slot is *demoted*
//! and the task kicked): a write that would block or was partial (the unwritten rest goes
//! first), a ring overrun (`reset` and a catch-up from the log), coalesced progress, a write
//! error (the client is gone). Heartbeats, `reauth` and the close at expiry are the task's
//! too: it waits on the session's timer while parked and takes the session back to write
//! them. Parking re-checks the rings under the slot's lock, and a writer looks at a slot only
//! under that lock after the frame was sent to the ring, so a frame is taken either by the
//! task before it parks or by the writer after: never by both, never by neither.

use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::session::Session;

/// A stream's place in the direct fan-out: its socket, and its session while parked.
pub struct Slot {
    /// The connection; written by the writer thread while the session is parked, by the
    /// stream's task otherwise (never both: the session is in one place at a time).
    pub socket: TcpStream,
    /// The parked session and what the writer left for the task.
    inner: Mutex<Parked>,
    /// Wakes the stream's task when the writer hands the session back.
    kick: Notify,
    /// Position in its shard's list (for removal).
    index: AtomicUsize,
}

/// What a slot holds.
#[derive(Default)]
struct Parked {
    /// The session, while the writer may deliver to it.
    session: Option<Box<Session>>,
    /// The writer handed the session back: the task must take it.
    demoted: bool,
    /// The unwritten end of a chunk the writer could not write in full: written first.
    remainder: Option<Bytes>,
    /// A write failed: the client is gone.
    dead: bool,
}

/// What the task finds when it takes its session back.
pub struct Unparked {
    /// The session.
    pub session: Box<Session>,
    /// Bytes to write before anything else.
    pub remainder: Option<Bytes>,
    /// The client is gone.
    pub dead: bool,
}

impl Slot {
    /// A slot for `socket`.
    pub fn new(socket: TcpStream) -> Self {
        Self {
            socket,
            inner: Mutex::new(Parked::default()),
            kick: Notify::new(),
            index: AtomicUsize::new(usize::MAX),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Parked> {
        match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Parks `session` unless a frame is already waiting on its rings (checked under the
    /// lock the writer takes, see the module docs); `Err` gives it back.
    pub fn park(&self, session: Box<Session>) -> Result<(), Box<Session>> {
        let mut inner = self.lock();
        if !session.is_idle() {
            return Err(session);
        }
        inner.session = Some(session);
        inner.demoted = false;
        Ok(())
    }

    /// Waits until the writer hands the session back (or returns at once if it did).
    pub async fn kicked(&self) {
        self.kick.notified().await;
    }

    /// Takes the session back (after a kick, a timer or shutdown).
    pub fn unpark(&self) -> Option<Unparked> {
        let mut inner = self.lock();
        let session = inner.session.take()?;
        inner.demoted = false;
        Some(Unparked {
            session,
            remainder: inner.remainder.take(),
            dead: std::mem::take(&mut inner.dead),
        })
    }

    /// Writes the frames the parked session has not taken yet, up to the ring positions
    /// `lifecycle` (offset) and `progress` (sequence number).
    fn deliver(&self, lifecycle: i64, progress: u64) {
        let mut inner = self.lock();
        if inner.demoted {
            return;
        }
        let Some(session) = inner.session.as_mut() else {
            return;
        };
        let outcome = deliver_to(session, &self.socket, lifecycle, progress);
        match outcome {
            Outcome::Parked => {}
            Outcome::Demoted { remainder, dead } => {
                inner.demoted = true;
                inner.remainder = remainder;
                inner.dead = dead;
                drop(inner);
                self.kick.notify_one();
            }
        }
    }
}

/// Where a delivery pass left a session.
enum Outcome {
    /// Still parked: everything was written.
    Parked,
    /// Its task must take over.
    Demoted {
        /// Unwritten bytes of the last chunk.
        remainder: Option<Bytes>,
        /// The socket failed.
        dead: bool,
    },
}

fn deliver_to(session: &mut Session, socket: &TcpStream, lifecycle: i64, progress: u64) -> Outcome {
    while session.lifecycle_cursor() < lifecycle {
        let Some(received) = session.try_lifecycle() else {
            break;
        };
        let block = session.on_lifecycle(received);
        if let Some(outcome) = write_or_demote(session, socket, block) {
            return outcome;
        }
    }
    while session.progress_cursor() < progress {
        let Some(received) = session.try_progress() else {
            break;
        };
        let block = session.on_progress(received);
        if let Some(outcome) = write_or_demote(session, socket, block) {
            return outcome;
        }
    }
    Outcome::Parked
}

/// Writes `block` (if any) as one chunk; `Some` when the session must go back to its task.
fn write_or_demote(
    session: &mut Session,
    socket: &TcpStream,
    block: Option<Bytes>,
) -> Option<Outcome> {
    if let Some(block) = block {
        let mut size = [0u8; 18];
        let head = chunk_head(block.len(), &mut size);
        let parts = [
            IoSlice::new(head),
            IoSlice::new(&block),
            IoSlice::new(b"\r\n"),
        ];
        let total = head.len() + block.len() + 2;
        match socket.try_write_vectored(&parts) {
            Ok(n) if n == total => {}
            Ok(n) => {
                return Some(Outcome::Demoted {
                    remainder: Some(chunk_rest(head, &block, n)),
                    dead: false,
                });
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                return Some(Outcome::Demoted {
                    remainder: Some(chunk_rest(head, &block, 0)),
                    dead: false,
                });
            }
            Err(_) => {
                return Some(Outcome::Demoted {
                    remainder: None,
                    dead: true,
                });
            }
        }
    }
    // Whatever the frame made the session plan (a reset and catch-up, coalesced progress,
    // the end) is its task's to do.
    (!session.is_live()).then_some(Outcome::Demoted {
        remainder: None,
        dead: false,
    })
}

/// The chunk-size line of a `len`-byte chunk (`{len:x}\r\n`), in `buf`.
pub fn chunk_head(len: usize, buf: &mut [u8; 18]) -> &[u8] {
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, digit) in buf.iter_mut().take(digits).enumerate() {
        let nibble = (len >> (4 * (digits - 1 - i))) & 0xf;
        *digit = b"0123456789abcdef"[nibble];
    }
    buf[digits] = b'\r';
    buf[digits + 1] = b'\n';
    &buf[..digits + 2]
}

/// The bytes of the chunk `head`+`block`+CRLF from `written` on.
fn chunk_rest(head: &[u8], block: &[u8], written: usize) -> Bytes {
    let mut whole = Vec::with_capacity(head.len() + block.len() + 2);
    whole.extend_from_slice(head);
    whole.extend_from_slice(block);
    whole.extend_from_slice(b"\r\n");
    Bytes::from(whole).slice(written..)
}

/// One writer's share of a tenant's parked streams.
#[derive(Default)]
pub struct Shard {
    /// The slots.
    slots: Mutex<Vec<Arc<Slot>>>,
    /// Number of slots (read without the lock by the publisher).
    len: AtomicUsize,
    /// A pass for this shard is queued and has not started yet.
    scheduled: AtomicBool,
}

/// The direct fan-out of one tenant: its shards and how far its rings were published.
pub struct TenantFanout {
    /// One shard per writer thread.
    shards: Box<[Shard]>,
    /// Offset of the last lifecycle frame sent to the tenant's ring.
    published_lifecycle: AtomicI64,
    /// Sequence number of the last progress frame sent to the tenant's ring.
    published_progress: AtomicU64,
    /// Round-robin of new slots over the shards.
    next_shard: AtomicUsize,
}

impl TenantFanout {
    /// A tenant's fan-out over `shards` writers.
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Shard::default()).collect(),
            published_lifecycle: AtomicI64::new(-1),
            published_progress: AtomicU64::new(0),
            next_shard: AtomicUsize::new(0),
        }
    }

    /// Records that the lifecycle frame at `offset` was sent to the ring.
    pub fn published_lifecycle(&self, offset: i64) {
        self.published_lifecycle.fetch_max(offset, Ordering::SeqCst);
    }

    /// Hands every parked session back to its task (shutdown: the tasks see the stop).
    pub fn kick_all(&self) {
        for shard in &self.shards {
            let slots = match shard.slots.lock() {
                Ok(slots) => slots,
                Err(poisoned) => poisoned.into_inner(),
            };
            for slot in slots.iter() {
                slot.kick.notify_one();
            }
        }
    }

    /// Records that the progress frame numbered `seq` was sent to the ring.
    pub fn published_progress(&self, seq: u64) {
        self.published_progress.fetch_max(seq, Ordering::SeqCst);
    }
}

/// A slot's registration; dropping it removes the slot from its shard.
pub struct Attachment {
    /// The tenant's fan-out.
    fanout: Arc<TenantFanout>,
    /// Shard index.
    shard: usize,
    /// The slot.
    slot: Arc<Slot>,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let shard = &self.fanout.shards[self.shard];
        let mut slots = match shard.slots.lock() {
            Ok(slots) => slots,
            Err(poisoned) => poisoned.into_inner(),
        };
        let index = self.slot.index.load(Ordering::SeqCst);
        if index < slots.len() && Arc::ptr_eq(&slots[index], &self.slot) {
            slots.swap_remove(index);
            if let Some(moved) = slots.get(index) {
                moved.index.store(index, Ordering::SeqCst);
            }
            shard.len.store(slots.len(), Ordering::SeqCst);
        }
    }
}

/// Registers `slot` with a shard of `fanout`.
pub fn attach(fanout: &Arc<TenantFanout>, slot: &Arc<Slot>) -> Attachment {
    let shard = fanout.next_shard.fetch_add(1, Ordering::Relaxed) % fanout.shards.len();
    let mut slots = match fanout.shards[shard].slots.lock() {
        Ok(slots) => slots,
        Err(poisoned) => poisoned.into_inner(),
    };
    slot.index.store(slots.len(), Ordering::SeqCst);
    slots.push(slot.clone());
    fanout.shards[shard]
        .len
        .store(slots.len(), Ordering::SeqCst);
    Attachment {
        fanout: fanout.clone(),
        shard,
        slot: slot.clone(),
    }
}

/// The writer threads: one per shard; each delivers passes of its shard of a tenant.
pub struct Writers {
    /// Queues of the writer threads.
    queues: Vec<mpsc::Sender<Arc<TenantFanout>>>,
}

impl Writers {
    /// Starts `count` writer threads (at least one); they end when this is dropped.
    pub fn start(count: usize) -> Self {
        let mut queues = Vec::new();
        for index in 0..count.max(1) {
            let (queue, passes) = mpsc::channel::<Arc<TenantFanout>>();
            let spawned = std::thread::Builder::new()
                .name(format!("bridge-fanout-{index}"))
                .spawn(move || {
                    while let Ok(fanout) = passes.recv() {
                        pass(&fanout, index);
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a fan-out writer");
                continue;
            }
            queues.push(queue);
        }
        Self { queues }
    }

    /// Number of writer threads (shards per tenant).
    pub fn count(&self) -> usize {
        self.queues.len().max(1)
    }

    /// Queues a pass over every non-empty shard of `fanout` not already queued.
    pub fn signal(&self, fanout: &Arc<TenantFanout>) {
        for (index, shard) in fanout.shards.iter().enumerate() {
            if shard.len.load(Ordering::SeqCst) == 0 {
                continue;
            }
            if !shard.scheduled.swap(true, Ordering::SeqCst)
                && let Some(queue) = self.queues.get(index % self.queues.len().max(1))
            {
                let _ = queue.send(fanout.clone());
            }
        }
    }
}

/// One writer's pass over its shard of a tenant: everything published so far.
fn pass(fanout: &TenantFanout, index: usize) {
    let Some(shard) = fanout.shards.get(index) else {
        return;
    };
    // Cleared before the positions are read: a frame published after this is signalled
    // again, so none waits for a later event.
    shard.scheduled.store(false, Ordering::SeqCst);
    let lifecycle = fanout.published_lifecycle.load(Ordering::SeqCst);
    let progress = fanout.published_progress.load(Ordering::SeqCst);
    let slots = match shard.slots.lock() {
        Ok(slots) => slots,
        Err(poisoned) => poisoned.into_inner(),
    };
    for slot in slots.iter() {
        slot.deliver(lifecycle, progress);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_heads_are_hex_lengths() {
        let mut buf = [0u8; 18];
        assert_eq!(chunk_head(0, &mut buf), b"0\r\n");
        assert_eq!(chunk_head(10, &mut buf), b"a\r\n");
        assert_eq!(chunk_head(0x1f3, &mut buf), b"1f3\r\n");
        assert_eq!(chunk_head(4096, &mut buf), b"1000\r\n");
        assert_eq!(&chunk_rest(b"3\r\n", b"abc", 4)[..], b"bc\r\n");
    }
}
