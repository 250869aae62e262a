//! The resume window: per lifecycle partition, the most recent records the live reader saw,
//! so that a catch-up (a `Last-Event-ID` resume, the catch-up after a `reset`, an upload's
//! history replay) that starts inside it is served from memory instead of a Kafka read.
//!
//! Per partition, not per tenant: the memory is bounded by one setting whatever the number of
//! tenants, and the window is complete for *every* tenant of the partition, including tenants
//! that had no subscriber while their records went by. That is the common resume: a page's
//! only stream drops, its tenant's rings go away with it, and it reconnects seconds later.
//!
//! An entry holds the record's Avro payload (copied when read, before anything is decoded),
//! upgraded to the encoded frame once the reader has built one for a subscribed tenant. So the
//! reader still decodes nothing for tenants without subscribers; a resume decodes the
//! payloads of its own tenant's entries only, and shares the frames of the others.
//!
//! Completeness: a partition's window holds every record at an offset in
//! `[complete_from, end)`. `complete_from` starts at the reader's start position and moves to
//! the offset after each entry evicted (oldest first) to stay within the byte budget; `end`
//! is the offset after the last record remembered.
//!
//! The seam (same argument as the catch-up from the log, see [`crate::session`]): the reader
//! remembers each record, moving `end` under the partition's lock, *before* it decides whether
//! the record's tenant has subscribers and publishes it. A session subscribes first, then takes
//! its snapshot under the same lock: a record below the snapshot's `end` is in the snapshot; a
//! record at or above it is remembered after the snapshot, so its tenant's subscriber check and
//! publication come after the subscription and it arrives on the receivers. A record in both
//! is skipped by offset.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::frame::Frame;

/// Bookkeeping bytes counted per entry on top of its tenant id and payload: the entry's slot
/// in the queue, the tenant's allocation and the reference counts, rounded up.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + 48;

/// What a resume gets of one record.
#[derive(Debug, Clone)]
pub enum Payload {
    /// The record's Avro payload (Confluent framing), not decoded yet.
    Record(Bytes),
    /// The frame the reader built and published.
    Frame(Arc<Frame>),
}

/// One record of a resume's snapshot.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// Offset in the lifecycle partition.
    pub offset: i64,
    /// The record.
    pub payload: Payload,
}

/// What a window holds after a resume's position, for one tenant.
#[derive(Debug)]
pub struct Snapshot {
    /// The tenant's records after the position, in offset order. Entries still in payload form
    /// may turn out (once decoded) to be another tenant's, when their header lied or was
    /// missing: the reader of the snapshot checks the decoded tenant, as the log catch-up does.
    pub records: Vec<Replayed>,
    /// Every record below it was remembered before the snapshot; the receivers subscribed
    /// before it deliver the records at or above it.
    pub end: i64,
}

/// A remembered record.
#[derive(Debug)]
struct Entry {
    /// Offset in the partition.
    offset: i64,
    /// The tenant (header, or decoded once the frame is built); `None` when the record had no
    /// tenant header and was not decoded, so every resume of the partition must decode it.
    tenant: Option<Box<str>>,
    /// The record.
    payload: Payload,
    /// Bytes counted against the budget.
    size: usize,
}

fn entry_size(tenant: Option<&str>, payload: &Payload) -> usize {
    let body = match payload {
        Payload::Record(bytes) => bytes.len(),
        Payload::Frame(frame) => {
            std::mem::size_of::<Frame>()
                + frame.bytes.len()
                + frame.upload_id.as_ref().map_or(0, String::len)
        }
    };
    ENTRY_OVERHEAD + tenant.map_or(0, str::len) + body
}

/// One partition's window.
#[derive(Debug)]
struct PartitionWindow {
    /// The entries, oldest first, offsets increasing.
    entries: VecDeque<Entry>,
    /// Sum of the entries' sizes.
    bytes: usize,
    /// Every record at or after it (below `end`) is in `entries`.
    complete_from: i64,
    /// The offset after the last record remembered.
    end: i64,
}

impl PartitionWindow {
    /// Evicts the oldest entries until the window fits `budget`.
    fn fit(&mut self, budget: usize) {
        while self.bytes > budget {
            let Some(evicted) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= evicted.size;
            self.complete_from = evicted.offset + 1;
        }
    }
}

/// The windows of every lifecycle partition.
#[derive(Debug)]
pub struct ResumeWindow {
    /// One window per partition, each behind its own lock (the reader and the resumes of one
    /// partition contend; other partitions do not).
    partitions: Vec<Mutex<PartitionWindow>>,
    /// Byte budget of one partition's window.
    budget: usize,
}

impl ResumeWindow {
    /// Windows for partitions whose reader starts at `starts`, holding at most `total_bytes`
    /// together.
    pub fn new(starts: &[i64], total_bytes: usize) -> Self {
        Self {
            partitions: starts
                .iter()
                .map(|&start| {
                    Mutex::new(PartitionWindow {
                        entries: VecDeque::new(),
                        bytes: 0,
                        complete_from: start,
                        end: start,
                    })
                })
                .collect(),
            budget: total_bytes / starts.len().max(1),
        }
    }

    fn partition(&self, partition: i32) -> Option<MutexGuard<'_, PartitionWindow>> {
        let window = self.partitions.get(usize::try_from(partition).ok()?)?;
        // A panic while holding the lock cannot leave an entry half-written that matters:
        // the worst is a size miscounted, which only evicts early.
        Some(
            window
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Remembers the record at `offset` of `partition` with its Avro `payload` and header
    /// `tenant`. Called by the reader before the record's tenant is looked up for publishing
    /// (see the module docs).
    pub fn remember(&self, partition: i32, offset: i64, tenant: Option<&str>, payload: Bytes) {
        let Some(mut window) = self.partition(partition) else {
            return;
        };
        // One reader per process reads each partition in order; an offset seen again (it
        // never is) would break the order the snapshots rely on.
        if offset < window.end {
            return;
        }
        window.end = offset + 1;
        let payload = Payload::Record(payload);
        let size = entry_size(tenant, &payload);
        window.bytes += size;
        window.entries.push_back(Entry {
            offset,
            tenant: tenant.map(Into::into),
            payload,
            size,
        });
        window.fit(self.budget);
    }

    /// Replaces the remembered payload at `offset` by the frame the reader built from it, so
    /// resumes share it instead of decoding the payload again.
    pub fn upgrade(&self, partition: i32, offset: i64, tenant: &str, frame: Arc<Frame>) {
        let Some(mut window) = self.partition(partition) else {
            return;
        };
        let window = &mut *window;
        // Almost always the newest entry: the reader upgrades right after remembering.
        let Some(entry) = window.entries.iter_mut().rev().find(|e| e.offset <= offset) else {
            return;
        };
        if entry.offset != offset {
            return;
        }
        let payload = Payload::Frame(frame);
        let size = entry_size(Some(tenant), &payload);
        window.bytes = window.bytes - entry.size + size;
        entry.size = size;
        entry.tenant = Some(tenant.into());
        entry.payload = payload;
        window.fit(self.budget);
    }

    /// Whether the window of `partition` holds everything after `after`: the next offset is at
    /// or after where it is complete and not beyond what the reader has seen.
    pub fn covers(&self, partition: i32, after: i64) -> bool {
        let next = after.saturating_add(1);
        self.partition(partition)
            .is_some_and(|w| w.complete_from <= next && next <= w.end)
    }

    /// `tenant`'s records of `partition` after `after`, or `None` when the window does not
    /// reach back to `after + 1` (the caller reads the log instead). A position beyond the
    /// window's end (a client ahead of this instance's reader) gives no records.
    pub fn snapshot(&self, partition: i32, tenant: &str, after: i64) -> Option<Snapshot> {
        let window = self.partition(partition)?;
        let next = after.saturating_add(1);
        if next < window.complete_from {
            return None;
        }
        let first = window.entries.partition_point(|e| e.offset < next);
        let records = window
            .entries
            .range(first..)
            .filter(|e| e.tenant.as_deref().is_none_or(|t| t == tenant))
            .map(|e| Replayed {
                offset: e.offset,
                payload: e.payload.clone(),
            })
            .collect();
        Some(Snapshot {
            records,
            end: window.end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(snapshot: &Snapshot) -> Vec<i64> {
        snapshot.records.iter().map(|r| r.offset).collect()
    }

    #[test]
    fn snapshots_hold_the_tenants_records_after_the_position() {
        let window = ResumeWindow::new(&[10, 0], 1 << 20);
        for offset in 10..16 {
            let tenant = if offset % 2 == 0 { "a" } else { "b" };
            window.remember(0, offset, Some(tenant), Bytes::from_static(b"x"));
        }
        window.remember(0, 16, None, Bytes::from_static(b"x"));
        let a = window.snapshot(0, "a", 9).expect("complete from 10");
        assert_eq!(offsets(&a), [10, 12, 14, 16]);
        assert_eq!(a.end, 17);
        assert_eq!(
            offsets(&window.snapshot(0, "b", 12).expect("inside")),
            [13, 15, 16]
        );
        assert!(
            window.snapshot(0, "a", 8).is_none(),
            "before the reader's start"
        );
        let ahead = window.snapshot(0, "a", 40).expect("ahead of the reader");
        assert!(ahead.records.is_empty());
        assert!(window.covers(0, 9) && window.covers(0, 16));
        assert!(!window.covers(0, 8) && !window.covers(0, 17) && !window.covers(0, i64::MAX));
        assert!(
            window.covers(1, -1),
            "an empty partition read from its start"
        );
        assert!(window.snapshot(7, "a", 0).is_none(), "no such partition");
    }

    #[test]
    fn eviction_moves_where_the_window_is_complete() {
        let one = entry_size(
            Some("a"),
            &Payload::Record(Bytes::from_static(b"0123456789")),
        );
        let window = ResumeWindow::new(&[0], 3 * one);
        for offset in 0..5 {
            window.remember(0, offset, Some("a"), Bytes::from_static(b"0123456789"));
        }
        assert!(window.snapshot(0, "a", 0).is_none(), "offset 1 was evicted");
        assert_eq!(
            offsets(&window.snapshot(0, "a", 1).expect("complete")),
            [2, 3, 4]
        );
        let empty = ResumeWindow::new(&[0], 0);
        empty.remember(0, 0, Some("a"), Bytes::from_static(b"x"));
        assert!(!empty.covers(0, -1));
        assert!(empty.covers(0, 0), "at the end, nothing is missing");
    }

    #[test]
    fn upgraded_entries_carry_the_frame() {
        let window = ResumeWindow::new(&[0], 1 << 20);
        window.remember(0, 0, None, Bytes::from_static(b"avro"));
        let frame = Arc::new(Frame {
            upload_id: None,
            offset: Some(0),
            seq: 0,
            appended_ms: None,
            bytes: Bytes::from_static(b"id: 0\n\n"),
        });
        window.upgrade(0, 0, "a", frame);
        let a = window.snapshot(0, "a", -1).expect("complete");
        assert!(matches!(a.records[0].payload, Payload::Frame(_)));
        assert!(
            window
                .snapshot(0, "b", -1)
                .expect("complete")
                .records
                .is_empty(),
            "the decoded tenant replaces the missing header"
        );
    }
}
